// A small JSON reader for the C# conformance runner (Mono's base libraries have none).
// Values: null, bool, JNum (keeps integers exact), string, List<object>, JObj (ordered members).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Multilora.Conformance
{
    public sealed class JNum
    {
        public double D;
        public long L;
        public bool IsInt;

        public override string ToString()
        {
            return IsInt ? L.ToString(CultureInfo.InvariantCulture) : D.ToString("R", CultureInfo.InvariantCulture);
        }
    }

    public sealed class JObj : List<KeyValuePair<string, object>>
    {
        public bool Has(string key)
        {
            foreach (var kv in this)
                if (kv.Key == key) return true;
            return false;
        }

        public object Get(string key)
        {
            foreach (var kv in this)
                if (kv.Key == key) return kv.Value;
            return null;
        }
    }

    public static class Json
    {
        public static object Parse(string text)
        {
            int i = 0;
            object v = Value(text, ref i);
            Ws(text, ref i);
            if (i != text.Length) throw new FormatException("trailing characters at " + i);
            return v;
        }

        private static void Ws(string s, ref int i)
        {
            while (i < s.Length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        }

        private static object Value(string s, ref int i)
        {
            Ws(s, ref i);
            if (i >= s.Length) throw new FormatException("unexpected end");
            char c = s[i];
            if (c == '{')
            {
                var o = new JObj();
                i++;
                Ws(s, ref i);
                if (s[i] == '}') { i++; return o; }
                while (true)
                {
                    Ws(s, ref i);
                    string k = Str(s, ref i);
                    Ws(s, ref i);
                    if (s[i] != ':') throw new FormatException("expected ':' at " + i);
                    i++;
                    o.Add(new KeyValuePair<string, object>(k, Value(s, ref i)));
                    Ws(s, ref i);
                    if (s[i] == ',') { i++; continue; }
                    if (s[i] == '}') { i++; return o; }
                    throw new FormatException("expected ',' or '}' at " + i);
                }
            }
            if (c == '[')
            {
                var a = new List<object>();
                i++;
                Ws(s, ref i);
                if (s[i] == ']') { i++; return a; }
                while (true)
                {
                    a.Add(Value(s, ref i));
                    Ws(s, ref i);
                    if (s[i] == ',') { i++; continue; }
                    if (s[i] == ']') { i++; return a; }
                    throw new FormatException("expected ',' or ']' at " + i);
                }
            }
            if (c == '"') return Str(s, ref i);
            if (s.Substring(i).StartsWith("true")) { i += 4; return true; }
            if (s.Substring(i).StartsWith("false")) { i += 5; return false; }
            if (s.Substring(i).StartsWith("null")) { i += 4; return null; }
            int start = i;
            bool isInt = true;
            while (i < s.Length && "+-0123456789.eE".IndexOf(s[i]) >= 0)
            {
                if (s[i] == '.' || s[i] == 'e' || s[i] == 'E') isInt = false;
                i++;
            }
            if (start == i) throw new FormatException("unexpected character at " + i);
            string t = s.Substring(start, i - start);
            var n = new JNum { D = double.Parse(t, CultureInfo.InvariantCulture) };
            long l;
            if (isInt && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l))
            {
                n.L = l;
                n.IsInt = true;
            }
            return n;
        }

        private static string Str(string s, ref int i)
        {
            if (s[i] != '"') throw new FormatException("expected a string at " + i);
            i++;
            var sb = new StringBuilder();
            while (true)
            {
                char c = s[i++];
                if (c == '"') return sb.ToString();
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = s[i++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        sb.Append((char)Convert.ToInt32(s.Substring(i, 4), 16));
                        i += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
        }

        public static string Dump(object v)
        {
            if (v == null) return "null";
            if (v is bool) return (bool)v ? "true" : "false";
            if (v is string) return "\"" + v + "\"";
            var list = v as System.Collections.IList;
            if (list != null)
            {
                var parts = new List<string>();
                foreach (var x in list) parts.Add(Dump(x));
                return "[" + string.Join(", ", parts) + "]";
            }
            if (v is double) return ((double)v).ToString("R", CultureInfo.InvariantCulture);
            return Convert.ToString(v, CultureInfo.InvariantCulture);
        }
    }
}
