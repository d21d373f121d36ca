// Idiomatic C# layer of multilora, hand-written over the generated NativeMethods.g.cs.
// Library-wide pieces: the exception, the ABI check, UTF-8 marshalling helpers and the SafeHandle types.
// The object classes live beside this file (Model.cs, Adapters.cs, Tensor.cs, RunOptions.cs, Generator.cs).
//
// Rules every wrapper follows (STYLE.md section 4):
//  * every native call's status is checked at once; on failure the thread's last error message is read
//    immediately, on the same thread, and thrown as MultiloraException(Status, StatusName, Message);
//  * the first use of the library compares mlora_abi_version() with NativeMethods.GeneratedAbiVersion and
//    refuses a mismatch with a message naming both numbers;
//  * using an object after Dispose throws MultiloraException with MLORA_STATUS_INVALID_HANDLE (the status the
//    C ABI gives for a released handle), so every language reports the same status for that misuse;
//  * handles are SafeHandles: the finalizer is only a safety net, Dispose releases at once, and a handle is
//    kept alive (DangerousAddRef) for the duration of each call that uses it.

using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A failed multilora call: the C status, its symbolic name and the library's message.</summary>
    public class MultiloraException : Exception
    {
        /// <summary>The mlora_status_t value (see NativeMethods.MLORA_STATUS_*).</summary>
        public int Status { get; private set; }

        /// <summary>The status's symbolic name, e.g. "MLORA_STATUS_NOT_FOUND".</summary>
        public string StatusName { get; private set; }

        public MultiloraException(int status, string statusName, string message) : base(message)
        {
            Status = status;
            StatusName = statusName;
        }

        public override string ToString()
        {
            return StatusName + ": " + Message;
        }
    }

    /// <summary>Element types, numbered as ONNX TensorProto.DataType (the C MLORA_DTYPE_* values).</summary>
    public static class DType
    {
        public const int Float32 = NativeMethods.MLORA_DTYPE_FLOAT32;
        public const int UInt8 = NativeMethods.MLORA_DTYPE_UINT8;
        public const int Int8 = NativeMethods.MLORA_DTYPE_INT8;
        public const int Int32 = NativeMethods.MLORA_DTYPE_INT32;
        public const int Int64 = NativeMethods.MLORA_DTYPE_INT64;
        public const int Bool = NativeMethods.MLORA_DTYPE_BOOL;
        public const int Float16 = NativeMethods.MLORA_DTYPE_FLOAT16;
        public const int Float64 = NativeMethods.MLORA_DTYPE_FLOAT64;
        public const int BFloat16 = NativeMethods.MLORA_DTYPE_BFLOAT16;
    }

    /// <summary>Flags of Adapters.Load (bitwise OR).</summary>
    [Flags]
    public enum LoadFlags
    {
        None = NativeMethods.MLORA_LOAD_DEFAULT,
        Replace = NativeMethods.MLORA_LOAD_REPLACE,
        IgnoreModelVersion = NativeMethods.MLORA_LOAD_IGNORE_MODEL_VERSION,
    }

    /// <summary>Library-wide calls and the helpers the wrappers share.</summary>
    public static class Library
    {
        private static readonly object Gate = new object();
        private static volatile bool _checked;
        private static MultiloraException _abiError;
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>The native library's version, e.g. "0.1.0".</summary>
        public static string Version
        {
            get
            {
                EnsureCompatible();
                return FromUtf8(NativeMethods.mlora_version_string());
            }
        }

        /// <summary>The ABI version of the loaded native library.</summary>
        public static int AbiVersion
        {
            get { return NativeMethods.mlora_abi_version(); }
        }

        /// <summary>Symbolic name of a status value.</summary>
        public static string StatusName(int status)
        {
            return FromUtf8(NativeMethods.mlora_status_name(status));
        }

        /// <summary>
        /// Compares the library's ABI version with <paramref name="expected"/>; throws a MultiloraException
        /// (MLORA_STATUS_VERSION_MISMATCH) naming both numbers when they differ. The wrappers call it once with
        /// the version these bindings were generated from.
        /// </summary>
        public static void CheckAbiVersion(int expected)
        {
            int actual = NativeMethods.mlora_abi_version();
            if (actual != expected)
            {
                int st = NativeMethods.MLORA_STATUS_VERSION_MISMATCH;
                throw new MultiloraException(st, StatusName(st), string.Format(
                    "multilora ABI mismatch: the native library has ABI version {0}, these C# bindings were " +
                    "generated for ABI version {1}", actual, expected));
            }
        }

        /// <summary>Checks the ABI version once per process; every wrapper entry point calls it.</summary>
        public static void EnsureCompatible()
        {
            if (_checked)
            {
                if (_abiError != null) throw _abiError;
                return;
            }
            lock (Gate)
            {
                if (!_checked)
                {
                    try
                    {
                        CheckAbiVersion(NativeMethods.GeneratedAbiVersion);
                    }
                    catch (MultiloraException e)
                    {
                        _abiError = e;
                    }
                    _checked = true;
                }
            }
            if (_abiError != null) throw _abiError;
        }

        /// <summary>Sets the libonnxruntime to load; only before the first model is created.</summary>
        public static void SetOrtLibraryPath(string path)
        {
            EnsureCompatible();
            Check(NativeMethods.mlora_set_ort_library_path(Utf8(path, "path")));
        }

        /// <summary>Path of the loaded libonnxruntime (loading it if needed).</summary>
        public static string OrtLibraryPath
        {
            get
            {
                string path, version;
                OrtInfo(out path, out version);
                return path;
            }
        }

        /// <summary>Version string of the loaded libonnxruntime (loading it if needed).</summary>
        public static string OrtVersion
        {
            get
            {
                string path, version;
                OrtInfo(out path, out version);
                return version;
            }
        }

        private static void OrtInfo(out string path, out string version)
        {
            EnsureCompatible();
            byte[] p = new byte[512], v = new byte[64];
            while (true)
            {
                UIntPtr plen, vlen;
                int st = NativeMethods.mlora_ort_info(p, (UIntPtr)(uint)p.Length, out plen, v, (UIntPtr)(uint)v.Length,
                                                      out vlen);
                if (st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL)
                {
                    p = new byte[Math.Max(p.Length, (int)plen.ToUInt64())];
                    v = new byte[Math.Max(v.Length, (int)vlen.ToUInt64())];
                    continue;
                }
                Check(st);
                path = DecodeNul(p, (int)plen.ToUInt64());
                version = DecodeNul(v, (int)vlen.ToUInt64());
                return;
            }
        }

        // ---- helpers shared by the wrappers ----------------------------------------------------------------

        /// <summary>Throws for a non-OK status, reading the last error at once on this thread.</summary>
        internal static void Check(int status)
        {
            if (status == NativeMethods.MLORA_STATUS_OK) return;
            string message = FromUtf8(NativeMethods.mlora_last_error_message());
            throw new MultiloraException(status, StatusName(status), message);
        }

        internal static MultiloraException Disposed(string what)
        {
            int st = NativeMethods.MLORA_STATUS_INVALID_HANDLE;
            return new MultiloraException(st, StatusName(st), what + " has been disposed (its handle is released)");
        }

        /// <summary>UTF-8 bytes of s plus a terminating NUL. A string that is not valid UTF-16 (lone surrogate)
        /// gives MLORA_STATUS_INVALID_ARGUMENT, as invalid UTF-8 would in C.</summary>
        internal static byte[] Utf8(string s, string what)
        {
            if (s == null) throw new ArgumentNullException(what);
            byte[] body;
            try
            {
                body = StrictUtf8.GetBytes(s);
            }
            catch (EncoderFallbackException e)
            {
                int st = NativeMethods.MLORA_STATUS_INVALID_ARGUMENT;
                throw new MultiloraException(st, StatusName(st), what + " is not valid Unicode: " + e.Message);
            }
            byte[] z = new byte[body.Length + 1];
            Buffer.BlockCopy(body, 0, z, 0, body.Length);
            return z;
        }

        /// <summary>Decodes a borrowed NUL-terminated UTF-8 string.</summary>
        internal static string FromUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            byte[] b = new byte[n];
            Marshal.Copy(p, b, 0, n);
            return Encoding.UTF8.GetString(b);
        }

        /// <summary>Decodes len bytes of buf, dropping the terminating NUL.</summary>
        internal static string DecodeNul(byte[] buf, int len)
        {
            if (len > 0 && buf[len - 1] == 0) len--;
            return Encoding.UTF8.GetString(buf, 0, len);
        }

        internal delegate int BufferCall(byte[] buf, UIntPtr capacity, out UIntPtr outLen);

        /// <summary>Calls a (buf, capacity, out_len) function, growing the buffer on BUFFER_TOO_SMALL.
        /// Returns the bytes written (out_len of them, NULs included).</summary>
        internal static byte[] ReadBuffer(BufferCall call)
        {
            byte[] buf = new byte[64];
            while (true)
            {
                UIntPtr len;
                int st = call(buf, (UIntPtr)(uint)buf.Length, out len);
                ulong need = len.ToUInt64();
                if (st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL && need > (ulong)buf.Length)
                {
                    buf = new byte[need];
                    continue;
                }
                Check(st);
                byte[] result = new byte[need];
                Buffer.BlockCopy(buf, 0, result, 0, (int)need);
                return result;
            }
        }

        internal static string ReadString(BufferCall call)
        {
            byte[] b = ReadBuffer(call);
            return DecodeNul(b, b.Length);
        }

        internal static UIntPtr Size(long n)
        {
            return new UIntPtr((ulong)n);
        }
    }

    /// <summary>
    /// An array of NUL-terminated UTF-8 strings for a <c>const char* const*</c> parameter: all strings live in one
    /// pinned byte[]; <see cref="Pointers"/> holds their addresses. Dispose unpins.
    /// </summary>
    public sealed class Utf8StringArray : IDisposable
    {
        private GCHandle _pin;
        private readonly byte[] _blob;

        /// <summary>One pointer per string (an empty array for no strings).</summary>
        public IntPtr[] Pointers { get; private set; }

        public Utf8StringArray(string[] strings, string what)
        {
            strings = strings ?? new string[0];
            var parts = new byte[strings.Length][];
            int total = 0;
            for (int i = 0; i < strings.Length; i++)
            {
                parts[i] = Library.Utf8(strings[i], what);
                total += parts[i].Length;
            }
            _blob = new byte[Math.Max(total, 1)];
            _pin = GCHandle.Alloc(_blob, GCHandleType.Pinned);
            IntPtr basePtr = _pin.AddrOfPinnedObject();
            Pointers = new IntPtr[strings.Length];
            int off = 0;
            for (int i = 0; i < parts.Length; i++)
            {
                Buffer.BlockCopy(parts[i], 0, _blob, off, parts[i].Length);
                Pointers[i] = IntPtr.Add(basePtr, off);
                off += parts[i].Length;
            }
        }

        /// <summary>The same from raw byte strings (each gets a NUL appended; no UTF-8 check: raw use only).</summary>
        public Utf8StringArray(byte[][] raw)
        {
            int total = 0;
            foreach (var r in raw) total += r.Length + 1;
            _blob = new byte[Math.Max(total, 1)];
            _pin = GCHandle.Alloc(_blob, GCHandleType.Pinned);
            IntPtr basePtr = _pin.AddrOfPinnedObject();
            Pointers = new IntPtr[raw.Length];
            int off = 0;
            for (int i = 0; i < raw.Length; i++)
            {
                Buffer.BlockCopy(raw[i], 0, _blob, off, raw[i].Length);
                Pointers[i] = IntPtr.Add(basePtr, off);
                off += raw[i].Length + 1;
            }
        }

        public void Dispose()
        {
            if (_pin.IsAllocated) _pin.Free();
        }
    }

    /// <summary>Base of the SafeHandles: zero is invalid; ReleaseHandle calls the matching mlora_*_release.</summary>
    public abstract class MultiloraHandle : SafeHandle
    {
        protected MultiloraHandle() : base(IntPtr.Zero, true)
        {
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        internal void Set(IntPtr p)
        {
            SetHandle(p);
        }
    }

    public sealed class ModelHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_model_release(handle); return true; }
    }

    public sealed class ModelOptionsHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_model_options_release(handle); return true; }
    }

    public sealed class AdaptersHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_adapters_release(handle); return true; }
    }

    public sealed class AdapterHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_adapter_release(handle); return true; }
    }

    public sealed class RunOptionsHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_run_options_release(handle); return true; }
    }

    public sealed class TensorHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_tensor_release(handle); return true; }
    }

    public sealed class GeneratorParamsHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_generator_params_release(handle); return true; }
    }

    public sealed class GeneratorHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_generator_release(handle); return true; }
    }

    public sealed class EngineHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_engine_release(handle); return true; }
    }

    public sealed class EngineOptionsHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_engine_options_release(handle); return true; }
    }

    public sealed class RequestHandle : MultiloraHandle
    {
        protected override bool ReleaseHandle() { NativeMethods.mlora_request_release(handle); return true; }
    }

    /// <summary>
    /// Keeps a SafeHandle alive for one native call and gives its pointer; throws INVALID_HANDLE for a disposed
    /// object. <c>using (var u = new Use(h, "Model")) Library.Check(NativeMethods.f(u.Ptr));</c>
    /// </summary>
    internal struct Use : IDisposable
    {
        private readonly SafeHandle _h;
        private bool _added;
        public readonly IntPtr Ptr;

        public Use(SafeHandle h, string what)
        {
            _h = h;
            _added = false;
            Ptr = IntPtr.Zero;
            if (h == null) return; // optional argument: NULL
            if (h.IsClosed || h.IsInvalid) throw Library.Disposed(what);
            h.DangerousAddRef(ref _added);
            Ptr = h.DangerousGetHandle();
        }

        public void Dispose()
        {
            if (_added) _h.DangerousRelease();
            _added = false;
        }
    }

    /// <summary>Base of the wrapper classes: owns one SafeHandle; Dispose releases it (twice is harmless).</summary>
    public abstract class NativeObject<THandle> : IDisposable where THandle : MultiloraHandle, new()
    {
        private readonly THandle _handle;
        private readonly string _what;

        protected NativeObject(string what)
        {
            Library.EnsureCompatible();
            _handle = new THandle();
            _what = what;
        }

        /// <summary>The SafeHandle, for use with the raw NativeMethods layer.</summary>
        public THandle Handle
        {
            get { return _handle; }
        }

        /// <summary>Whether Dispose has been called.</summary>
        public bool IsDisposed
        {
            get { return _handle.IsClosed; }
        }

        internal Use Use()
        {
            return new Use(_handle, _what);
        }

        /// <summary>Takes ownership of a pointer an out-parameter received.</summary>
        protected void Adopt(IntPtr p)
        {
            _handle.Set(p);
        }

        public void Dispose()
        {
            _handle.Dispose();
            GC.SuppressFinalize(this);
        }

        internal static SafeHandle HandleOf(NativeObject<THandle> o)
        {
            return o == null ? null : o._handle;
        }
    }
}
