// Idiomatic C# layer: Use. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;
using Multilora.Native;

namespace Multilora
{
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
}
