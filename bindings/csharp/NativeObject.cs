// Idiomatic C# layer: NativeObject. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;
using Multilora.Native;

namespace Multilora
{
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
