// Idiomatic C# layer: Tensor. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A tensor: element type, shape and a contiguous row-major buffer owned by the library.</summary>
    public sealed class Tensor : NativeObject<TensorHandle>
    {
        /// <summary>Takes ownership of a tensor handle the library returned (e.g. a run output).</summary>
        internal Tensor(IntPtr owned) : base("Tensor")
        {
            Adopt(owned);
        }

        private Tensor() : base("Tensor")
        {
        }

        /// <summary>Creates a tensor holding a copy of <paramref name="data"/> (raw bytes of the element type).</summary>
        public static Tensor Create(int dtype, long[] shape, byte[] data)
        {
            return CreatePinned(dtype, shape, data, data == null ? 0 : data.Length);
        }

        public static Tensor FromFloats(float[] data, params long[] shape)
        {
            return CreatePinned(Multilora.DType.Float32, shape, data, data.Length * 4L);
        }

        public static Tensor FromDoubles(double[] data, params long[] shape)
        {
            return CreatePinned(Multilora.DType.Float64, shape, data, data.Length * 8L);
        }

        public static Tensor FromLongs(long[] data, params long[] shape)
        {
            return CreatePinned(Multilora.DType.Int64, shape, data, data.Length * 8L);
        }

        public static Tensor FromInts(int[] data, params long[] shape)
        {
            return CreatePinned(Multilora.DType.Int32, shape, data, data.Length * 4L);
        }

        private static Tensor CreatePinned(int dtype, long[] shape, Array data, long bytes)
        {
            if (shape == null) throw new ArgumentNullException("shape");
            var t = new Tensor();
            GCHandle pin = data != null ? GCHandle.Alloc(data, GCHandleType.Pinned) : default(GCHandle);
            try
            {
                IntPtr p = data != null ? pin.AddrOfPinnedObject() : IntPtr.Zero;
                IntPtr h;
                Library.Check(NativeMethods.mlora_tensor_create(dtype, shape, Library.Size(shape.Length), p,
                                                                Library.Size(bytes), out h));
                t.Adopt(h);
                return t;
            }
            finally
            {
                if (pin.IsAllocated) pin.Free();
            }
        }

        /// <summary>Element type (see <see cref="Multilora.DType"/>).</summary>
        public int DType
        {
            get
            {
                using (var u = Use())
                {
                    int d;
                    Library.Check(NativeMethods.mlora_tensor_dtype(u.Ptr, out d));
                    return d;
                }
            }
        }

        public long[] Shape
        {
            get
            {
                using (var u = Use())
                {
                    long[] buf = new long[8];
                    while (true)
                    {
                        UIntPtr nd;
                        int st = NativeMethods.mlora_tensor_shape(u.Ptr, buf, Library.Size(buf.Length), out nd);
                        int rank = (int)nd.ToUInt64();
                        if (st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL && rank > buf.Length)
                        {
                            buf = new long[rank];
                            continue;
                        }
                        Library.Check(st);
                        var s = new long[rank];
                        Array.Copy(buf, s, rank);
                        return s;
                    }
                }
            }
        }

        /// <summary>Size of the contents in bytes.</summary>
        public long ByteCount
        {
            get
            {
                using (var u = Use())
                {
                    IntPtr p;
                    UIntPtr n;
                    Library.Check(NativeMethods.mlora_tensor_data(u.Ptr, out p, out n));
                    return (long)n.ToUInt64();
                }
            }
        }

        /// <summary>A copy of the contents as bytes.</summary>
        public byte[] ToBytes()
        {
            using (var u = Use())
            {
                IntPtr p;
                UIntPtr n;
                Library.Check(NativeMethods.mlora_tensor_data(u.Ptr, out p, out n));
                var r = new byte[(long)n.ToUInt64()];
                if (r.Length > 0) Marshal.Copy(p, r, 0, r.Length);
                return r;
            }
        }

        public float[] ToFloats()
        {
            Expect(Multilora.DType.Float32, "float32");
            byte[] b = ToBytes();
            var r = new float[b.Length / 4];
            Buffer.BlockCopy(b, 0, r, 0, r.Length * 4);
            return r;
        }

        public long[] ToLongs()
        {
            Expect(Multilora.DType.Int64, "int64");
            byte[] b = ToBytes();
            var r = new long[b.Length / 8];
            Buffer.BlockCopy(b, 0, r, 0, r.Length * 8);
            return r;
        }

        public int[] ToInts()
        {
            Expect(Multilora.DType.Int32, "int32");
            byte[] b = ToBytes();
            var r = new int[b.Length / 4];
            Buffer.BlockCopy(b, 0, r, 0, r.Length * 4);
            return r;
        }

        private void Expect(int dtype, string name)
        {
            int d = DType;
            if (d != dtype)
            {
                int st = NativeMethods.MLORA_STATUS_TYPE_MISMATCH;
                throw new MultiloraException(st, Library.StatusName(st),
                                             "tensor holds dtype " + d + ", not " + name);
            }
        }

        public override string ToString()
        {
            if (IsDisposed) return "Tensor(disposed)";
            return "Tensor(dtype " + DType + ", shape [" + string.Join(", ", Shape) + "])";
        }
    }
}
