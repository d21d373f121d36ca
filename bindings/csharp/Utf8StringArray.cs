// Idiomatic C# layer: Utf8StringArray. See Library.cs for the rules every wrapper follows.

using System;
using System.Runtime.InteropServices;

namespace Multilora
{
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
}
