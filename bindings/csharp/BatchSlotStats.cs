// Idiomatic C# layer: BatchSlotStats. See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>Counters of a model's slot table since the model was created (all 0 when it is not prepared).</summary>
    public struct BatchSlotStats
    {
        /// <summary>A batch's adapter set was resident.</summary>
        public ulong Hits;

        /// <summary>A batch's adapter set was written into a slot.</summary>
        public ulong Misses;

        /// <summary>... into a slot that held another set (the least recently used one no run pins).</summary>
        public ulong Evictions;
    }
}
