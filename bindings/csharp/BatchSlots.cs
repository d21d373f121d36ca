// Idiomatic C# layer: BatchSlots. See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>A model's slot table for per-row adapters (adapter-aware batching).</summary>
    public struct BatchSlots
    {
        /// <summary>Its size S (slot 0 is the base model); 0 when the model is not prepared for batching.</summary>
        public int Slots;

        /// <summary>Adapter sets resident now (0..S-1); may change as soon as it is read.</summary>
        public int Resident;
    }
}
