// Idiomatic C# layer: RunOptions. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>Per-run settings: the active adapter set (empty = base model).</summary>
    public sealed class RunOptions : NativeObject<RunOptionsHandle>
    {
        public RunOptions() : base("RunOptions")
        {
            IntPtr p;
            Library.Check(NativeMethods.mlora_run_options_create(out p));
            Adopt(p);
        }

        /// <summary>
        /// Activates adapters of a registry by name with optional weights (null = all 1.0); several apply their
        /// weighted sum exactly. An empty list means the base model. On failure the options are unchanged.
        /// </summary>
        public void SetActiveAdapters(Adapters adapters, string[] names, float[] weights = null)
        {
            using (var o = Use())
                AdapterSets.Set(o.Ptr, adapters, names, weights, NativeMethods.mlora_run_options_set_active_adapters);
        }

        /// <summary>Back to the base model.</summary>
        public void ClearActiveAdapters()
        {
            SetActiveAdapters(null, new string[0]);
        }

        /// <summary>
        /// One adapter set per batch row (an empty row = the base model), served by one Run, on a model prepared
        /// with <c>multilora prepare-batching</c>. weights (null = all 1.0) has one array per row matching its
        /// names. Every run with these options must have rows.Length rows. On failure the options are unchanged.
        /// </summary>
        public void SetActiveAdaptersPerRow(Adapters adapters, string[][] rows, float[][] weights = null)
        {
            using (var o = Use())
                AdapterSets.SetPerRow(o.Ptr, adapters, rows, weights,
                                   NativeMethods.mlora_run_options_set_active_adapters_per_row);
        }

        /// <summary>Number of adapters in the active set.</summary>
        public int ActiveCount
        {
            get
            {
                using (var u = Use())
                {
                    UIntPtr n;
                    Library.Check(NativeMethods.mlora_run_options_active_count(u.Ptr, out n));
                    return (int)n.ToUInt64();
                }
            }
        }
    }
}
