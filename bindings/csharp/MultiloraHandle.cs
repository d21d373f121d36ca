// Idiomatic C# layer: MultiloraHandle. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;

namespace Multilora
{
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
}
