// Idiomatic C# layer: Adapters. See Library.cs for the rules every wrapper follows.

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
}
