// Idiomatic C# layer: Adapter. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;
using Multilora.Native;

namespace Multilora
{
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
}
