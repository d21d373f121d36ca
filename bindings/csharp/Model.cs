// Idiomatic C# layer: Model. See Library.cs for the rules every wrapper follows.

using System;
using System.Collections.Generic;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A loaded LoRA-enabled base model (an .onnx file or a GenAI model folder).</summary>
    public sealed class Model : NativeObject<ModelHandle>
    {
        private readonly string _path;

        public Model(string path, ModelOptions options = null) : base("Model")
        {
            _path = path;
            byte[] p = Library.Utf8(path, "path");
            using (var o = new Use(HandleOf(options), "ModelOptions"))
            {
                IntPtr m;
                Library.Check(NativeMethods.mlora_model_create(p, o.Ptr, out m));
                Adopt(m);
            }
        }

        private static System.Runtime.InteropServices.SafeHandle HandleOf(ModelOptions o)
        {
            return o == null ? null : o.Handle;
        }

        public override string ToString()
        {
            return "Model(" + _path + (IsDisposed ? ", disposed)" : ")");
        }

        private delegate int CountFn(IntPtr model, out UIntPtr count);

        private int Count(CountFn fn)
        {
            using (var u = Use())
            {
                UIntPtr n;
                Library.Check(fn(u.Ptr, out n));
                return (int)n.ToUInt64();
            }
        }

        public int InputCount { get { return Count(NativeMethods.mlora_model_input_count); } }
        public int OutputCount { get { return Count(NativeMethods.mlora_model_output_count); } }
        public int LoraCount { get { return Count(NativeMethods.mlora_model_lora_count); } }

        public string InputName(int index)
        {
            using (var u = Use())
            {
                IntPtr p = u.Ptr;
                return Library.ReadString((byte[] b, UIntPtr c, out UIntPtr l) =>
                    NativeMethods.mlora_model_input_name(p, Library.Size(index), b, c, out l));
            }
        }

        public string OutputName(int index)
        {
            using (var u = Use())
            {
                IntPtr p = u.Ptr;
                return Library.ReadString((byte[] b, UIntPtr c, out UIntPtr l) =>
                    NativeMethods.mlora_model_output_name(p, Library.Size(index), b, c, out l));
            }
        }

        public string LoraName(int index)
        {
            using (var u = Use())
            {
                IntPtr p = u.Ptr;
                return Library.ReadString((byte[] b, UIntPtr c, out UIntPtr l) =>
                    NativeMethods.mlora_model_lora_name(p, Library.Size(index), b, c, out l));
            }
        }

        /// <summary>
        /// The model's version as adapters record it: a stable, non-zero fingerprint of its LoRA input signature.
        /// Adapters with a non-zero model_version must carry it (see LoadFlags.IgnoreModelVersion).
        /// </summary>
        public int Version
        {
            get
            {
                using (var u = Use())
                {
                    int v;
                    Library.Check(NativeMethods.mlora_model_version(u.Ptr, out v));
                    return v;
                }
            }
        }

        /// <summary>The slot table for per-row adapters (Slots 0 when the model is not prepared for batching).</summary>
        public BatchSlots BatchSlots
        {
            get
            {
                using (var u = Use())
                {
                    UIntPtr slots, resident;
                    Library.Check(NativeMethods.mlora_model_batch_slots(u.Ptr, out slots, out resident));
                    return new BatchSlots { Slots = (int)slots.ToUInt64(), Resident = (int)resident.ToUInt64() };
                }
            }
        }

        /// <summary>Hits, misses and evictions of the slot table since the model was created.</summary>
        public BatchSlotStats BatchSlotStats
        {
            get
            {
                using (var u = Use())
                {
                    ulong hits, misses, evictions;
                    Library.Check(NativeMethods.mlora_model_batch_slot_stats(u.Ptr, out hits, out misses, out evictions));
                    return new BatchSlotStats { Hits = hits, Misses = misses, Evictions = evictions };
                }
            }
        }

        /// <summary>Runs on the LoRA graph's session and on the base graph's since the model was created.</summary>
        public SessionRuns SessionRuns
        {
            get
            {
                using (var u = Use())
                {
                    ulong lora, baseRuns;
                    Library.Check(NativeMethods.mlora_model_session_runs(u.Ptr, out lora, out baseRuns));
                    return new SessionRuns { Lora = lora, Base = baseRuns };
                }
            }
        }

        public string[] InputNames { get { return Names(InputCount, InputName); } }
        public string[] OutputNames { get { return Names(OutputCount, OutputName); } }
        public string[] LoraNames { get { return Names(LoraCount, LoraName); } }

        private static string[] Names(int n, Func<int, string> f)
        {
            var r = new string[n];
            for (int i = 0; i < n; i++) r[i] = f(i);
            return r;
        }

        private delegate int InfoFn(IntPtr m, UIntPtr i, out int dt, long[] shape, UIntPtr cap, out UIntPtr nd);

        private TensorInfo Info(InfoFn fn, int index, string name)
        {
            using (var u = Use())
            {
                long[] shape = new long[8];
                while (true)
                {
                    int dt;
                    UIntPtr nd;
                    int st = fn(u.Ptr, Library.Size(index), out dt, shape, Library.Size(shape.Length), out nd);
                    int rank = (int)nd.ToUInt64();
                    if (st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL && rank > shape.Length)
                    {
                        shape = new long[rank];
                        continue;
                    }
                    Library.Check(st);
                    long[] s = new long[rank];
                    Array.Copy(shape, s, rank);
                    return new TensorInfo { Name = name, DType = dt, Shape = s };
                }
            }
        }

        public TensorInfo InputInfo(int index)
        {
            return Info(NativeMethods.mlora_model_input_info, index, InputName(index));
        }

        public TensorInfo OutputInfo(int index)
        {
            return Info(NativeMethods.mlora_model_output_info, index, OutputName(index));
        }

        public LoraInputInfo LoraInfo(int index)
        {
            string name = LoraName(index);
            using (var u = Use())
            {
                int dt, axis;
                long d0, d1;
                Library.Check(NativeMethods.mlora_model_lora_info(u.Ptr, Library.Size(index), out dt, out d0, out d1,
                                                                  out axis));
                return new LoraInputInfo { Name = name, DType = dt, Dim0 = d0, Dim1 = d1, RankAxis = axis };
            }
        }

        /// <summary>
        /// Runs the model once. <paramref name="options"/> may be null (base model). With no output names every
        /// output is returned, in model order. The caller owns (and should dispose) the returned tensors.
        /// </summary>
        public Tensor[] Run(RunOptions options, IDictionary<string, Tensor> inputs, params string[] outputNames)
        {
            var names = new string[inputs.Count];
            var tensors = new Tensor[inputs.Count];
            int i = 0;
            foreach (var kv in inputs)
            {
                names[i] = kv.Key;
                tensors[i] = kv.Value;
                i++;
            }
            return Run(options, names, tensors, outputNames);
        }

        /// <summary>Runs the model once with parallel arrays of input names and tensors.</summary>
        public Tensor[] Run(RunOptions options, string[] inputNames, Tensor[] inputs, string[] outputNames)
        {
            if (inputNames == null) throw new ArgumentNullException("inputNames");
            if (inputs == null) throw new ArgumentNullException("inputs");
            if (inputNames.Length != inputs.Length) throw new ArgumentException("one tensor per input name");
            outputNames = outputNames ?? new string[0];
            var uses = new Use[inputs.Length];
            try
            {
                using (var m = Use())
                using (var o = new Use(options == null ? null : options.Handle, "RunOptions"))
                using (var inNames = new Utf8StringArray(inputNames, "input name"))
                using (var outNames = new Utf8StringArray(outputNames, "output name"))
                {
                    var ptrs = new IntPtr[inputs.Length];
                    for (int k = 0; k < inputs.Length; k++)
                    {
                        if (inputs[k] == null) throw new ArgumentNullException("inputs[" + k + "]");
                        uses[k] = inputs[k].Use();
                        ptrs[k] = uses[k].Ptr;
                    }
                    int slots = outputNames.Length > 0 ? outputNames.Length : OutputCount;
                    var outs = new IntPtr[slots];
                    Library.Check(NativeMethods.mlora_model_run(m.Ptr, o.Ptr, inNames.Pointers, ptrs,
                                                                Library.Size(inputs.Length), outNames.Pointers,
                                                                Library.Size(outputNames.Length), outs));
                    var result = new Tensor[slots];
                    for (int k = 0; k < slots; k++) result[k] = new Tensor(outs[k]);
                    return result;
                }
            }
            finally
            {
                for (int k = 0; k < uses.Length; k++) uses[k].Dispose();
            }
        }
    }
}
