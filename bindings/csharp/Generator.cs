// Idiomatic C# layer: Generator. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A generation in progress. Used by one thread at a time.</summary>
    public sealed class Generator : NativeObject<GeneratorHandle>
    {
        public Generator(Model model, GeneratorParams parameters) : base("Generator")
        {
            if (model == null) throw new ArgumentNullException("model");
            if (parameters == null) throw new ArgumentNullException("parameters");
            using (var m = model.Use())
            using (var p = parameters.Use())
            {
                IntPtr g;
                Library.Check(NativeMethods.mlora_generator_create(m.Ptr, p.Ptr, out g));
                Adopt(g);
            }
        }

        /// <summary>Appends prompt tokens (batch size 1) and runs the prompt pass.</summary>
        public void AppendTokens(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException("tokens");
            using (var u = Use())
                Library.Check(NativeMethods.mlora_generator_append_tokens(u.Ptr, tokens, Library.Size(tokens.Length)));
        }

        /// <summary>Appends one prompt per sequence of the batch.</summary>
        public void AppendTokenSequences(int[][] prompts)
        {
            if (prompts == null) throw new ArgumentNullException("prompts");
            int total = 0;
            foreach (var p in prompts) total += p.Length;
            var flat = new int[total];
            var lengths = new UIntPtr[prompts.Length];
            int off = 0;
            for (int i = 0; i < prompts.Length; i++)
            {
                Array.Copy(prompts[i], 0, flat, off, prompts[i].Length);
                off += prompts[i].Length;
                lengths[i] = Library.Size(prompts[i].Length);
            }
            using (var u = Use())
                Library.Check(NativeMethods.mlora_generator_append_token_sequences(u.Ptr, flat, lengths,
                                                                                   Library.Size(prompts.Length)));
        }

        public void GenerateNextToken()
        {
            using (var u = Use()) Library.Check(NativeMethods.mlora_generator_generate_next_token(u.Ptr));
        }

        public bool IsDone
        {
            get
            {
                using (var u = Use())
                {
                    int d;
                    Library.Check(NativeMethods.mlora_generator_is_done(u.Ptr, out d));
                    return d != 0;
                }
            }
        }

        public int BatchSize
        {
            get
            {
                using (var u = Use())
                {
                    UIntPtr n;
                    Library.Check(NativeMethods.mlora_generator_batch_size(u.Ptr, out n));
                    return (int)n.ToUInt64();
                }
            }
        }

        private delegate int TokensFn(IntPtr g, int[] buf, UIntPtr cap, out UIntPtr len);

        private int[] ReadTokens(TokensFn fn)
        {
            using (var u = Use())
            {
                int[] buf = new int[64];
                while (true)
                {
                    UIntPtr len;
                    int st = fn(u.Ptr, buf, Library.Size(buf.Length), out len);
                    int n = (int)len.ToUInt64();
                    if (st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL && n > buf.Length)
                    {
                        buf = new int[n];
                        continue;
                    }
                    Library.Check(st);
                    var r = new int[n];
                    Array.Copy(buf, r, n);
                    return r;
                }
            }
        }

        /// <summary>Tokens of one sequence (prompt then generated).</summary>
        public int[] GetSequence(int index)
        {
            return ReadTokens((IntPtr g, int[] b, UIntPtr c, out UIntPtr l) =>
                NativeMethods.mlora_generator_get_sequence(g, Library.Size(index), b, c, out l));
        }

        /// <summary>The token each sequence got in the last step.</summary>
        public int[] GetNextTokens()
        {
            return ReadTokens(NativeMethods.mlora_generator_get_next_tokens);
        }

        /// <summary>Logits of the last position of every sequence, float32 [batch, vocab] (a copy).</summary>
        public Tensor GetLogits()
        {
            using (var u = Use())
            {
                IntPtr t;
                Library.Check(NativeMethods.mlora_generator_get_logits(u.Ptr, out t));
                return new Tensor(t);
            }
        }

        /// <summary>Switches the active adapter set between steps (empty = base model).</summary>
        public void SetActiveAdapters(Adapters adapters, string[] names, float[] weights = null)
        {
            using (var o = Use())
                AdapterSets.Set(o.Ptr, adapters, names, weights, NativeMethods.mlora_generator_set_active_adapters);
        }

        /// <summary>Continues with the base model.</summary>
        public void ClearActiveAdapters()
        {
            SetActiveAdapters(null, new string[0]);
        }

        /// <summary>
        /// Switches to one adapter set per sequence between steps (see GeneratorParams.SetActiveAdaptersPerRow);
        /// rows.Length must equal BatchSize. Tokens already processed keep the KV cache computed with the previous
        /// sets.
        /// </summary>
        public void SetActiveAdaptersPerRow(Adapters adapters, string[][] rows, float[][] weights = null)
        {
            using (var o = Use())
                AdapterSets.SetPerRow(o.Ptr, adapters, rows, weights,
                                   NativeMethods.mlora_generator_set_active_adapters_per_row);
        }
    }
}
