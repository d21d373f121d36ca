// Idiomatic C# layer: LoraInputInfo. See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>A LoRA input of the model: element type, its two dims and which axis is the rank.</summary>
    public sealed class LoraInputInfo
    {
        public string Name { get; internal set; }
        public int DType { get; internal set; }
        public long Dim0 { get; internal set; }
        public long Dim1 { get; internal set; }
        public int RankAxis { get; internal set; }
    }
}
