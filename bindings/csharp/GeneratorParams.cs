// Idiomatic C# layer: GeneratorParams. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>Search options and active adapters for generation. Generators keep their params alive.</summary>
    public sealed class GeneratorParams : NativeObject<GeneratorParamsHandle>
    {
        public GeneratorParams(Model model) : base("GeneratorParams")
        {
            if (model == null) throw new ArgumentNullException("model");
            using (var m = model.Use())
            {
                IntPtr p;
                Library.Check(NativeMethods.mlora_generator_params_create(m.Ptr, out p));
                Adopt(p);
            }
        }

        /// <summary>Sets a numeric search option ("max_length", "top_k", "top_p", "temperature", ...).</summary>
        public void SetSearchOption(string name, double value)
        {
            byte[] n = Library.Utf8(name, "name");
            using (var u = Use()) Library.Check(NativeMethods.mlora_generator_params_set_search_number(u.Ptr, n, value));
        }

        /// <summary>Sets a boolean search option ("do_sample").</summary>
        public void SetSearchOption(string name, bool value)
        {
            byte[] n = Library.Utf8(name, "name");
            using (var u = Use())
                Library.Check(NativeMethods.mlora_generator_params_set_search_bool(u.Ptr, n, value ? 1 : 0));
        }

        /// <summary>Reads a search option (booleans read as 0.0/1.0).</summary>
        public double GetSearchNumber(string name)
        {
            byte[] n = Library.Utf8(name, "name");
            using (var u = Use())
            {
                double v;
                Library.Check(NativeMethods.mlora_generator_params_get_search_number(u.Ptr, n, out v));
                return v;
            }
        }

        /// <summary>The adapters generators created from these params start with (empty = base model).</summary>
        public void SetActiveAdapters(Adapters adapters, string[] names, float[] weights = null)
        {
            using (var o = Use())
                AdapterSets.Set(o.Ptr, adapters, names, weights,
                                NativeMethods.mlora_generator_params_set_active_adapters);
        }

        /// <summary>Token ids that end a sequence (kept in it, like eos); an empty array clears them.</summary>
        public void SetStopTokens(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            using (var u = Use())
                Library.Check(NativeMethods.mlora_generator_params_set_stop_tokens(u.Ptr, tokens,
                                                                                   Library.Size(tokens.Length)));
        }

        /// <summary>Generators created from these params start with the base model.</summary>
        public void ClearActiveAdapters()
        {
            SetActiveAdapters(null, new string[0]);
        }

        /// <summary>
        /// One adapter set per sequence (an empty row = the base model), generated in one batch, on a model folder
        /// prepared with <c>multilora prepare-batching</c>. weights (null = all 1.0) has one array per row matching
        /// its names. rows.Length must equal the "batch_size" search option when a Generator is created.
        /// Replaces any set given by SetActiveAdapters. On failure the params are unchanged.
        /// </summary>
        public void SetActiveAdaptersPerRow(Adapters adapters, string[][] rows, float[][] weights = null)
        {
            using (var o = Use())
                AdapterSets.SetPerRow(o.Ptr, adapters, rows, weights,
                                   NativeMethods.mlora_generator_params_set_active_adapters_per_row);
        }
    }
}
