// Marshalling check of the generated C# raw layer (docs/conventions.md §4): reflects over NativeMethods and asserts,
// for every function of the header, the DllImport settings and the .NET type of each parameter and return
// value. The expected types are restated here independently of scripts/gen_bindings.py, from the C types
// the header declares (`python3 scripts/gen_bindings.py --signatures` lists them).
//
// Usage: mono raw_layer_check.exe SIGNATURES_FILE   (prints "N passed, N failed"; exit 1 on a failure)

using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Multilora.Native;

public static class RawLayerCheck
{
    private static readonly Dictionary<string, string> Scalars = new Dictionary<string, string>
    {
        {"int32_t", "Int32"}, {"uint32_t", "UInt32"}, {"int64_t", "Int64"}, {"uint64_t", "UInt64"},
        {"float", "Single"}, {"double", "Double"}, {"size_t", "UIntPtr"},
    };

    // The .NET type a C parameter must have; "&" marks an out parameter.
    private static string Expected(string name, string ctype)
    {
        bool array = ctype.EndsWith(" [array]");
        if (array) ctype = ctype.Substring(0, ctype.Length - 8);
        string s;
        if (Scalars.TryGetValue(ctype, out s)) return s;
        switch (ctype)
        {
            case "const char*": case "char*": return "Byte[]";
            case "const char* const*": return "IntPtr[]";
            case "const void*": return "IntPtr";
            case "const void**": return "IntPtr&";
            case "void": return "Void";
        }
        if (Regex.IsMatch(ctype, @"^(const )?mlora_\w+_t\*$")) return "IntPtr";
        if (Regex.IsMatch(ctype, @"^mlora_\w+_t\*\*$")) return array ? "IntPtr[]" : "IntPtr&";
        if (Regex.IsMatch(ctype, @"^const mlora_\w+_t\* const\*$")) return "IntPtr[]";
        var m = Regex.Match(ctype, @"^(const )?(\w+)\*$");
        if (m.Success && Scalars.TryGetValue(m.Groups[2].Value, out s))
            return m.Groups[1].Success ? s + "[]" : (name.StartsWith("out_") ? s + "&" : s + "[]");
        return "?" + ctype;
    }

    private static string ExpectedReturn(string ctype)
    {
        if (ctype == "const char*") return "IntPtr";
        return Expected("", ctype);
    }

    public static int Main(string[] args)
    {
        int passed = 0, failed = 0;
        Action<bool, string> check = (ok, what) =>
        {
            if (ok) passed++;
            else { failed++; Console.WriteLine("FAIL " + what); }
        };
        var methods = new Dictionary<string, MethodInfo>();
        foreach (var m in typeof(NativeMethods).GetMethods(BindingFlags.Public | BindingFlags.Static))
            if ((m.Attributes & MethodAttributes.PinvokeImpl) != 0) methods[m.Name] = m;
        var seen = new HashSet<string>();
        foreach (var line in File.ReadAllLines(args[0]))
        {
            if (line.Trim().Length == 0) continue;
            var cols = line.Split('\t');
            string fn = cols[0], ret = cols[1];
            seen.Add(fn);
            MethodInfo mi;
            if (!methods.TryGetValue(fn, out mi))
            {
                check(false, fn + ": not in NativeMethods");
                continue;
            }
            var dll = (DllImportAttribute)Attribute.GetCustomAttribute(mi, typeof(DllImportAttribute));
            check(dll != null && dll.Value == "multilora" && dll.CallingConvention == CallingConvention.Cdecl &&
                  (dll.EntryPoint == null || dll.EntryPoint == fn) && dll.ExactSpelling,
                  fn + ": DllImport(\"multilora\", Cdecl, ExactSpelling) expected");
            check(mi.ReturnType.Name == ExpectedReturn(ret),
                  fn + ": returns " + mi.ReturnType.Name + ", C " + ret + " wants " + ExpectedReturn(ret));
            var cparams = cols.Length > 2 && cols[2].Length > 0 ? cols[2].Split(',') : new string[0];
            var ps = mi.GetParameters();
            if (ps.Length != cparams.Length)
            {
                check(false, fn + ": " + ps.Length + " parameters, the header has " + cparams.Length);
                continue;
            }
            for (int i = 0; i < ps.Length; i++)
            {
                string pname = cparams[i].Substring(0, cparams[i].IndexOf('='));
                string ctype = cparams[i].Substring(cparams[i].IndexOf('=') + 1);
                string want = Expected(pname, ctype);
                string got = ps[i].ParameterType.Name;
                check(ps[i].Name == pname, fn + ": parameter " + i + " is named " + ps[i].Name + ", C says " + pname);
                check(got == want, fn + "(" + pname + "): " + got + ", C " + ctype + " wants " + want);
                if (want.EndsWith("&")) check(ps[i].IsOut, fn + "(" + pname + "): must be an out parameter");
                check(got != "Boolean" && got != "String" && got != "Char" && got != "StringBuilder",
                      fn + "(" + pname + "): no bool/string/char across the ABI (docs/conventions.md §1)");
            }
        }
        foreach (var name in methods.Keys)
            check(seen.Contains(name), name + ": in NativeMethods but not in the header");
        check(NativeMethods.GeneratedAbiVersion == NativeMethods.MLORA_ABI_VERSION,
              "GeneratedAbiVersion equals MLORA_ABI_VERSION");
        Console.WriteLine("C# raw layer: {0} functions checked", seen.Count);
        Console.WriteLine("{0} passed, {1} failed", passed, failed);
        return failed == 0 ? 0 : 1;
    }
}
