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
    }
}
