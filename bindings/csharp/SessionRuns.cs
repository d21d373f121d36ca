// Idiomatic C# layer: SessionRuns. See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>Runs a model made on each of its sessions since it was created.</summary>
    public struct SessionRuns
    {
        /// <summary>Runs on the LoRA graph's session.</summary>
        public ulong Lora;

        /// <summary>Runs on the base graph's session (0 when the model has none): no row had an adapter.</summary>
        public ulong Base;
    }
}
