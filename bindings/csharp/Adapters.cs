// Idiomatic C# layer: Adapters (the registry), Adapter (one adapter file) and RunOptions.
// See Multilora.cs for the rules every wrapper follows.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A registry of named adapters validated against one model. It keeps the model alive.</summary>
    public sealed class Adapters : NativeObject<AdaptersHandle>
    {
        public Adapters(Model model) : base("Adapters")
        {
            if (model == null) throw new ArgumentNullException("model");
            using (var m = model.Use())
            {
                IntPtr p;
                Library.Check(NativeMethods.mlora_adapters_create(m.Ptr, out p));
                Adopt(p);
            }
        }

        /// <summary>Loads an .onnx_adapter file under a name (ALREADY_EXISTS unless flags has Replace).</summary>
        public void Load(string path, string name, LoadFlags flags = LoadFlags.None)
        {
            byte[] p = Library.Utf8(path, "path"), n = Library.Utf8(name, "name");
            using (var u = Use()) Library.Check(NativeMethods.mlora_adapters_load(u.Ptr, p, n, (int)flags));
        }

        /// <summary>Loads an adapter from the bytes of an .onnx_adapter file (the library copies them).</summary>
        public void LoadFromMemory(byte[] data, string name, LoadFlags flags = LoadFlags.None)
        {
            if (data == null) throw new ArgumentNullException("data");
            byte[] n = Library.Utf8(name, "name");
            GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
            try
            {
                using (var u = Use())
                    Library.Check(NativeMethods.mlora_adapters_load_from_memory(
                        u.Ptr, pin.AddrOfPinnedObject(), Library.Size(data.Length), n, (int)flags));
            }
            finally
            {
                pin.Free();
            }
        }

        /// <summary>Removes a name; holders of the adapter keep it until they release it.</summary>
        public void Unload(string name)
        {
            byte[] n = Library.Utf8(name, "name");
            using (var u = Use()) Library.Check(NativeMethods.mlora_adapters_unload(u.Ptr, n));
        }

        /// <summary>Names of the loaded adapters, sorted.</summary>
        public string[] Names
        {
            get
            {
                using (var u = Use())
                {
                    IntPtr p = u.Ptr;
                    byte[] all = Library.ReadBuffer((byte[] b, UIntPtr c, out UIntPtr l) =>
                    {
                        UIntPtr count;
                        return NativeMethods.mlora_adapters_names(p, b, c, out l, out count);
                    });
                    var names = new List<string>();
                    int start = 0;
                    for (int i = 0; i < all.Length; i++)
                    {
                        if (all[i] != 0) continue;
                        names.Add(Encoding.UTF8.GetString(all, start, i - start));
                        start = i + 1;
                    }
                    return names.ToArray();
                }
            }
        }

        /// <summary>The adapter loaded under a name; the returned object keeps that version alive.</summary>
        public Adapter Get(string name)
        {
            byte[] n = Library.Utf8(name, "name");
            using (var u = Use())
            {
                IntPtr p;
                Library.Check(NativeMethods.mlora_adapters_get(u.Ptr, n, out p));
                return new Adapter(p);
            }
        }
    }

    /// <summary>An adapter file's contents (parameters and versions); immutable.</summary>
    public sealed class Adapter : NativeObject<AdapterHandle>
    {
        internal Adapter(IntPtr owned) : base("Adapter")
        {
            Adopt(owned);
        }

        /// <summary>Opens an .onnx_adapter file without a model (mapped, verified, not copied).</summary>
        public static Adapter Open(string path)
        {
            Library.EnsureCompatible();
            byte[] p = Library.Utf8(path, "path");
            IntPtr h;
            Library.Check(NativeMethods.mlora_adapter_open(p, out h));
            return new Adapter(h);
        }

        /// <summary>Opens an adapter from the bytes of an .onnx_adapter file (copied).</summary>
        public static Adapter OpenFromMemory(byte[] data)
        {
            Library.EnsureCompatible();
            if (data == null) throw new ArgumentNullException("data");
            GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
            try
            {
                IntPtr h;
                Library.Check(NativeMethods.mlora_adapter_open_from_memory(pin.AddrOfPinnedObject(),
                                                                           Library.Size(data.Length), out h));
                return new Adapter(h);
            }
            finally
            {
                pin.Free();
            }
        }

        /// <summary>Writes an .onnx_adapter file ONNX Runtime can load.</summary>
        public static void Write(string path, string[] names, Tensor[] tensors, int adapterVersion = 0,
                                 int modelVersion = 0)
        {
            Library.EnsureCompatible();
            if (names == null || tensors == null || names.Length != tensors.Length)
                throw new ArgumentException("one tensor per name");
            byte[] p = Library.Utf8(path, "path");
            var uses = new Use[tensors.Length];
            try
            {
                var ptrs = new IntPtr[tensors.Length];
                for (int i = 0; i < tensors.Length; i++)
                {
                    uses[i] = tensors[i].Use();
                    ptrs[i] = uses[i].Ptr;
                }
                using (var n = new Utf8StringArray(names, "name"))
                    Library.Check(NativeMethods.mlora_adapter_write(p, n.Pointers, ptrs, Library.Size(names.Length),
                                                                    adapterVersion, modelVersion));
            }
            finally
            {
                foreach (var u in uses) u.Dispose();
            }
        }

        /// <summary>LoRA rank: the largest rank among its parameters.</summary>
        public long Rank
        {
            get
            {
                using (var u = Use())
                {
                    long r;
                    Library.Check(NativeMethods.mlora_adapter_rank(u.Ptr, out r));
                    return r;
                }
            }
        }

        public int ParameterCount
        {
            get
            {
                using (var u = Use())
                {
                    UIntPtr n;
                    Library.Check(NativeMethods.mlora_adapter_param_count(u.Ptr, out n));
                    return (int)n.ToUInt64();
                }
            }
        }

        public string ParameterName(int index)
        {
            using (var u = Use())
            {
                IntPtr p = u.Ptr;
                return Library.ReadString((byte[] b, UIntPtr c, out UIntPtr l) =>
                    NativeMethods.mlora_adapter_param_name(p, Library.Size(index), b, c, out l));
            }
        }

        /// <summary>Parameter number index as a tensor view over the adapter's memory (no copy).</summary>
        public Tensor ParameterTensor(int index)
        {
            using (var u = Use())
            {
                IntPtr t;
                Library.Check(NativeMethods.mlora_adapter_param_tensor(u.Ptr, Library.Size(index), out t));
                return new Tensor(t);
            }
        }

        private void Versions(out int format, out int adapter, out int model)
        {
            using (var u = Use()) Library.Check(NativeMethods.mlora_adapter_versions(u.Ptr, out format, out adapter,
                                                                                    out model));
        }

        public int FormatVersion { get { int f, a, m; Versions(out f, out a, out m); return f; } }
        public int AdapterVersion { get { int f, a, m; Versions(out f, out a, out m); return a; } }
        public int ModelVersion { get { int f, a, m; Versions(out f, out a, out m); return m; } }

        private void Bytes(out ulong mapped, out ulong copied)
        {
            using (var u = Use()) Library.Check(NativeMethods.mlora_adapter_bytes(u.Ptr, out mapped, out copied));
        }

        /// <summary>Bytes of the file mapping (0 for a buffer).</summary>
        public ulong BytesMapped { get { ulong m, c; Bytes(out m, out c); return m; } }

        /// <summary>Bytes the library had to copy (buffers, misaligned parameters).</summary>
        public ulong BytesCopied { get { ulong m, c; Bytes(out m, out c); return c; } }
    }

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

    /// <summary>
    /// The per-row adapter argument convention shared by RunOptions, GeneratorParams and Generator: rows of names
    /// (an empty or null row = the base model) and optional weights (one array per row matching its names),
    /// flattened row by row into names, weights and one count per row.
    /// </summary>
    /// <summary>
    /// The adapter-set argument conventions shared by RunOptions, GeneratorParams and Generator: one set (names,
    /// optional weights, one per name) and one set per row (rows of names, optional weights per row).
    /// </summary>
    internal static class AdapterSets
    {
        internal delegate int SingleCall(IntPtr receiver, IntPtr adapters, IntPtr[] names, float[] weights,
                                         UIntPtr count);
        internal delegate int Call(IntPtr receiver, IntPtr adapters, IntPtr[] names, float[] weights,
                                   UIntPtr[] rowCounts, UIntPtr batchSize);

        /// <summary>One set for every row: no names (or null) = the base model; weights null = all 1.0.</summary>
        internal static void Set(IntPtr receiver, Adapters adapters, string[] names, float[] weights, SingleCall call)
        {
            names = names ?? new string[0];
            if (weights != null && weights.Length != names.Length)
                throw new ArgumentException("one weight per name (or no weights)");
            using (var a = new Use(adapters == null ? null : adapters.Handle, "Adapters"))
            using (var n = new Utf8StringArray(names, "adapter name"))
                Library.Check(call(receiver, a.Ptr, n.Pointers, weights, Library.Size(names.Length)));
        }

        internal static void SetPerRow(IntPtr receiver, Adapters adapters, string[][] rows, float[][] weights,
                                       Call call)
        {
            if (rows == null) throw new ArgumentNullException("rows");
            if (weights != null && weights.Length != rows.Length)
                throw new ArgumentException("one weight array per row (or no weights)");
            var flat = new List<string>();
            var flatWeights = new List<float>();
            var counts = new UIntPtr[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                var row = rows[i] ?? new string[0];
                if (weights != null && (weights[i] ?? new float[0]).Length != row.Length)
                    throw new ArgumentException("row " + i + ": one weight per name");
                flat.AddRange(row);
                if (weights != null) flatWeights.AddRange(weights[i] ?? new float[0]);
                counts[i] = Library.Size(row.Length);
            }
            using (var a = new Use(adapters == null ? null : adapters.Handle, "Adapters"))
            using (var n = new Utf8StringArray(flat.ToArray(), "adapter name"))
                Library.Check(call(receiver, a.Ptr, n.Pointers, weights == null ? null : flatWeights.ToArray(), counts,
                                   Library.Size(rows.Length)));
        }
    }
}
