// Idiomatic C# layer: TensorInfo. See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>Element type and declared shape of a model input or output (symbolic dims are -1).</summary>
    public sealed class TensorInfo
    {
        public string Name { get; internal set; }
        public int DType { get; internal set; }
        public long[] Shape { get; internal set; }
    }
}
