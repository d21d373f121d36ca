// Idiomatic C# layer: LoadFlags. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>Flags of Adapters.Load (bitwise OR).</summary>
    [Flags]
    public enum LoadFlags
    {
        None = NativeMethods.MLORA_LOAD_DEFAULT,
        Replace = NativeMethods.MLORA_LOAD_REPLACE,
        IgnoreModelVersion = NativeMethods.MLORA_LOAD_IGNORE_MODEL_VERSION,
        /// <summary>Read the file into private memory instead of mapping it (files that may be truncated or
        /// rewritten under a running process; a truncated mapped file raises SIGBUS).</summary>
        Copy = NativeMethods.MLORA_LOAD_COPY,
    }
}
