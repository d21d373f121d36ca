// Conformance runner in C#: plays tests/conformance/vectors through the C# bindings.
//
// Steps run through the idiomatic layer (Model, Adapters, RunOptions, Tensor ...); steps marked
// "level": "raw" (NULL handles, explicit buffer capacities, invalid UTF-8) run through the generated
// NativeMethods with the objects' handles, since the idiomatic layer deliberately cannot express them.
// A released variable is a disposed object: the idiomatic layer reports MLORA_STATUS_INVALID_HANDLE for it.
//
// Usage: mono conformance_csharp.exe VECTORS_DIR FIXTURES_DIR    prints exactly "N passed, N failed" last.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Multilora.Native;

namespace Multilora.Conformance
{
    internal sealed class Var
    {
        public object Value;
        public bool Released;
        public bool IsHandle = true;
    }

    internal sealed class TensorSpec
    {
        public int DType;
        public long[] Shape;
        public byte[] Data;
    }

    internal sealed class Result
    {
        public string StatusName = "MLORA_STATUS_OK";
        public string Message = "";
        public readonly Dictionary<string, object> Values = new Dictionary<string, object>();
        public object Handle;
        public readonly Dictionary<string, Tensor> Outputs = new Dictionary<string, Tensor>();
        public readonly List<string> Problems = new List<string>();
    }

    internal sealed class Skip : Exception
    {
        public Skip(string why) : base(why) { }
    }

    public static class Runner
    {
        private static string _fixtures;
        private static JObj _reference;
        private static readonly Dictionary<string, Var> Vars = new Dictionary<string, Var>();
        private static readonly List<string> Order = new List<string>();
        private static int _passed, _failed;

        private static readonly Dictionary<string, int> DTypes = new Dictionary<string, int>
        {
            {"float32", 1}, {"uint8", 2}, {"int8", 3}, {"int32", 6}, {"int64", 7}, {"bool", 9}, {"float16", 10},
            {"float64", 11},
        };

        private static int ElemSize(int dtype)
        {
            switch (dtype)
            {
                case 1: case 6: return 4;
                case 7: case 11: return 8;
                case 10: return 2;
                default: return 1;
            }
        }

        public static int Main(string[] args)
        {
            if (args.Length != 2)
            {
                Console.Error.WriteLine("usage: conformance_csharp.exe VECTORS_DIR FIXTURES_DIR");
                return 2;
            }
            _fixtures = args[1];
            _reference = (JObj)Json.Parse(File.ReadAllText(Path.Combine(_fixtures, "reference.json")));
            Console.WriteLine("conformance (C# on Mono, CLR {0} — library {1}, ABI {2})", Environment.Version,
                              Library.Version, Library.AbiVersion);
            var files = Directory.GetFiles(args[0], "*.json");
            Array.Sort(files, StringComparer.Ordinal);
            foreach (var f in files) RunScenario(f);
            Console.WriteLine("{0} passed, {1} failed", _passed, _failed);
            return _failed == 0 ? 0 : 1;
        }

        private static void RunScenario(string path)
        {
            var doc = (JObj)Json.Parse(File.ReadAllText(path));
            string name = (string)doc.Get("name");
            var tol = doc.Get("tolerance") as JObj;
            int p0 = _passed, f0 = _failed;
            foreach (JObj step in (List<object>)doc.Get("steps"))
            {
                string id = name + "/" + step.Get("id");
                string call = (string)step.Get("call");
                string err;
                try
                {
                    bool raw = "raw".Equals(step.Get("level"));
                    var args = new Dictionary<string, object>();
                    var a = step.Get("args") as JObj;
                    if (a != null)
                        foreach (var kv in a) args[kv.Key] = Resolve(kv.Value, kv.Key);
                    var r = new Result();
                    try
                    {
                        if (raw) ExecuteRaw(call, args, r);
                        else Execute(call, args, r);
                    }
                    catch (MultiloraException e)
                    {
                        r.StatusName = e.StatusName;
                        r.Message = e.Message;
                    }
                    err = Check(step, r, tol);
                    Bind(step, r);
                    if (call.EndsWith("_release"))
                        foreach (var v in args.Values)
                            if (v is Var) ((Var)v).Released = true;
                }
                catch (Exception e)
                {
                    err = e.GetType().Name + ": " + e.Message;
                }
                if (err != null)
                {
                    _failed++;
                    Console.WriteLine("FAIL {0}: {1}", id, err);
                }
                else
                {
                    _passed++;
                }
            }
            for (int i = Order.Count - 1; i >= 0; i--)
            {
                var v = Vars[Order[i]];
                if (v.IsHandle && !v.Released) ((IDisposable)v.Value).Dispose();
            }
            Vars.Clear();
            Order.Clear();
            Console.WriteLine("{0,-10} {1} passed, {2} failed", name, _passed - p0, _failed - f0);
        }

        // ---- arguments ---------------------------------------------------------------------------------------

        private static object Resolve(object v, string key)
        {
            var s = v as string;
            if (s != null)
            {
                if (s.StartsWith("@fixtures/")) return Path.Combine(_fixtures, s.Substring(10));
                if (s.StartsWith("$"))
                {
                    Var var;
                    if (!Vars.TryGetValue(s.Substring(1), out var)) throw new Exception("unbound variable " + s);
                    return var;
                }
                return s;
            }
            var o = v as JObj;
            if (o != null)
            {
                if (o.Has("utf8_hex")) return FromHex((string)o.Get("utf8_hex"));
                if (o.Has("value_ref")) return ValueRef(o);
                if (o.Has("dtype") || o.Has("ref")) return Spec(o);
                var r = new JObj();
                foreach (var kv in o) r.Add(new KeyValuePair<string, object>(kv.Key, Resolve(kv.Value, kv.Key)));
                return r;
            }
            var l = v as List<object>;
            if (l != null)
            {
                if (key == "flags")
                {
                    int flags = 0;
                    foreach (string f in l)
                    {
                        if (f == "MLORA_LOAD_REPLACE") flags |= NativeMethods.MLORA_LOAD_REPLACE;
                        if (f == "MLORA_LOAD_IGNORE_MODEL_VERSION") flags |= NativeMethods.MLORA_LOAD_IGNORE_MODEL_VERSION;
                        if (f == "MLORA_LOAD_COPY") flags |= NativeMethods.MLORA_LOAD_COPY;
                    }
                    return flags;
                }
                var r = new List<object>();
                foreach (var x in l) r.Add(Resolve(x, ""));
                return r;
            }
            return v;
        }

        // {"value_ref": name} -> reference.json's values[name]; anything else as it is.
        private static object ValueRef(object v)
        {
            var o = v as JObj;
            if (o == null || !o.Has("value_ref")) return v;
            var values = _reference.Get("values") as JObj;
            string name = (string)o.Get("value_ref");
            if (values == null || !values.Has(name)) throw new Exception("value_ref " + name + " not in reference.json");
            return values.Get(name);
        }

        private static double Dbl(Dictionary<string, object> a, string key)
        {
            object v;
            if (!a.TryGetValue(key, out v) || v == null) return 0.0;
            if (v is bool) return (bool)v ? 1.0 : 0.0;
            return ((JNum)v).D;
        }

        private static int[] Ints(Dictionary<string, object> a, string key)
        {
            var l = (List<object>)a[key];
            var r = new int[l.Count];
            for (int i = 0; i < l.Count; i++) r[i] = (int)((JNum)l[i]).L;
            return r;
        }

        private static List<object> TokenList(int[] tokens, int count)
        {
            var l = new List<object>();
            for (int i = 0; i < count && i < tokens.Length; i++) l.Add((long)tokens[i]);
            return l;
        }

        private static byte[] FromHex(string hex)
        {
            var b = new byte[hex.Length / 2];
            for (int i = 0; i < b.Length; i++) b[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return b;
        }

        private static TensorSpec Spec(JObj o)
        {
            if (o.Has("ref")) o = (JObj)((JObj)_reference.Get("tensors")).Get((string)o.Get("ref"));
            var spec = new TensorSpec();
            object dt = o.Get("dtype");
            spec.DType = dt is string ? DTypes[(string)dt] : (int)((JNum)dt).L;
            var shape = (List<object>)o.Get("shape");
            spec.Shape = new long[shape.Count];
            long count = 1;
            for (int i = 0; i < shape.Count; i++)
            {
                spec.Shape[i] = ((JNum)shape[i]).L;
                count *= Math.Max(spec.Shape[i], 0);
            }
            if (o.Has("data_hex"))
            {
                spec.Data = FromHex((string)o.Get("data_hex"));
                return spec;
            }
            var data = o.Get("data") as List<object>;
            int n = data != null ? data.Count : (int)count;
            int es = ElemSize(spec.DType);
            spec.Data = new byte[n * es];
            for (int i = 0; i < n; i++)
            {
                var x = (JNum)(data != null ? data[i] : o.Get("fill"));
                byte[] e;
                switch (spec.DType)
                {
                    case 1: e = BitConverter.GetBytes((float)x.D); break;
                    case 11: e = BitConverter.GetBytes(x.D); break;
                    case 7: e = BitConverter.GetBytes(x.IsInt ? x.L : (long)x.D); break;
                    case 6: e = BitConverter.GetBytes(x.IsInt ? (int)x.L : (int)x.D); break;
                    default: e = new[] { (byte)x.L }; break;
                }
                Buffer.BlockCopy(e, 0, spec.Data, i * es, es);
            }
            return spec;
        }

        private static T Obj<T>(Dictionary<string, object> a, string key) where T : class
        {
            object v;
            if (!a.TryGetValue(key, out v) || v == null) return null;
            var var = v as Var;
            if (var == null) throw new Exception(key + " must be a variable");
            var t = var.Value as T;
            if (t == null) throw new Exception(key + " holds " + var.Value.GetType().Name + ", not " + typeof(T).Name);
            return t;
        }

        private static string Str(Dictionary<string, object> a, string key)
        {
            object v;
            a.TryGetValue(key, out v);
            if (v is byte[]) throw new Skip("raw bytes need the raw layer");
            return (string)v;
        }

        private static long Num(Dictionary<string, object> a, string key, long dflt)
        {
            object v;
            if (!a.TryGetValue(key, out v) || v == null) return dflt;
            return ((JNum)v).L;
        }

        private static string[] Strings(Dictionary<string, object> a, string key)
        {
            object v;
            if (!a.TryGetValue(key, out v) || v == null) return new string[0];
            var l = (List<object>)v;
            var r = new string[l.Count];
            for (int i = 0; i < l.Count; i++) r[i] = (string)l[i];
            return r;
        }

        private static float[] Weights(Dictionary<string, object> a)
        {
            object v;
            if (!a.TryGetValue("weights", out v) || v == null) return null;
            var l = (List<object>)v;
            var r = new float[l.Count];
            for (int i = 0; i < l.Count; i++) r[i] = (float)((JNum)l[i]).D;
            return r;
        }

        // "rows" of a *_set_active_adapters_per_row step: one list of adapter names per row.
        private static string[][] Rows(Dictionary<string, object> a)
        {
            object v;
            var rows = a.TryGetValue("rows", out v) && v != null ? (List<object>)v : new List<object>();
            var names = new string[rows.Count][];
            for (int i = 0; i < rows.Count; i++)
            {
                var row = (List<object>)rows[i];
                names[i] = new string[row.Count];
                for (int j = 0; j < row.Count; j++) names[i][j] = (string)row[j];
            }
            return names;
        }

        // "weights" of a *_set_active_adapters_per_row step: one list per row, or null for all 1.0.
        private static float[][] RowWeights(Dictionary<string, object> a)
        {
            object v;
            if (!a.TryGetValue("weights", out v) || v == null) return null;
            var wl = (List<object>)v;
            var weights = new float[wl.Count][];
            for (int i = 0; i < wl.Count; i++)
            {
                var row = (List<object>)wl[i];
                weights[i] = new float[row.Count];
                for (int j = 0; j < row.Count; j++) weights[i][j] = (float)((JNum)row[j]).D;
            }
            return weights;
        }

        private static Tensor MakeTensor(TensorSpec s)
        {
            return Tensor.Create(s.DType, s.Shape, s.Data);
        }

        // ---- idiomatic calls ----------------------------------------------------------------------------------

        private static void Execute(string call, Dictionary<string, object> a, Result r)
        {
            switch (call)
            {
                case "check_binding_abi":
                    Library.CheckAbiVersion((int)Num(a, "expected", NativeMethods.GeneratedAbiVersion));
                    return;
                case "version_string":
                    r.Values["value"] = Library.Version;
                    return;
                case "status_name":
                    r.Values["value"] = Library.StatusName((int)Num(a, "status", 0));
                    return;
                case "dtype_name":
                    r.Values["value"] = Library.DTypeName((int)Num(a, "dtype", 0));
                    return;
                case "dtype_size":
                    r.Values["value"] = (double)Library.DTypeSize((int)Num(a, "dtype", 0));
                    return;
                case "model_create":
                    r.Handle = new Model(Str(a, "path"), Obj<ModelOptions>(a, "options"));
                    return;
                case "model_options_create":
                    r.Handle = new ModelOptions();
                    return;
                case "model_options_set_batch_slots":
                    Obj<ModelOptions>(a, "options").BatchSlots = (int)Num(a, "slots", -1);
                    return;
                case "model_batch_slots":
                {
                    var b = Obj<Model>(a, "model").BatchSlots;
                    r.Values["slots"] = (long)b.Slots;
                    r.Values["resident"] = (long)b.Resident;
                    return;
                }
                case "model_options_release":
                case "model_release":
                case "adapters_release":
                case "adapter_release":
                case "run_options_release":
                case "tensor_release":
                case "generator_params_release":
                case "generator_release":
                case "engine_options_release":
                case "engine_release":
                case "request_release":
                    foreach (var v in a.Values)
                        if (v is Var) ((IDisposable)((Var)v).Value).Dispose();
                    return;
                case "model_input_count":
                    r.Values["count"] = (long)Obj<Model>(a, "model").InputCount;
                    return;
                case "model_output_count":
                    r.Values["count"] = (long)Obj<Model>(a, "model").OutputCount;
                    return;
                case "model_lora_count":
                    r.Values["count"] = (long)Obj<Model>(a, "model").LoraCount;
                    return;
                case "model_input_name":
                    r.Values["name"] = Obj<Model>(a, "model").InputName((int)Num(a, "index", 0));
                    return;
                case "model_output_name":
                    r.Values["name"] = Obj<Model>(a, "model").OutputName((int)Num(a, "index", 0));
                    return;
                case "model_lora_name":
                    r.Values["name"] = Obj<Model>(a, "model").LoraName((int)Num(a, "index", 0));
                    return;
                case "model_run":
                    Run(a, r);
                    return;
                case "tensor_create":
                    r.Handle = MakeTensor((TensorSpec)a["tensor"]);
                    return;
                case "tensor_dtype":
                    r.Values["dtype"] = (long)Obj<Tensor>(a, "tensor").DType;
                    return;
                case "tensor_shape":
                {
                    var s = Obj<Tensor>(a, "tensor").Shape;
                    r.Values["shape"] = Longs(s);
                    r.Values["ndim"] = (long)s.Length;
                    return;
                }
                case "tensor_data":
                {
                    var t = Obj<Tensor>(a, "tensor");
                    var data = new List<object>();
                    if (t.DType == DType.Float32)
                        foreach (var f in t.ToFloats()) data.Add((double)f);
                    else if (t.DType == DType.Int64)
                        foreach (var l in t.ToLongs()) data.Add(l);
                    r.Values["data"] = data;
                    r.Values["bytes"] = t.ByteCount;
                    return;
                }
                case "adapters_create":
                    r.Handle = new Adapters(Obj<Model>(a, "model"));
                    return;
                case "adapters_load":
                    Obj<Adapters>(a, "adapters").Load(Str(a, "path"), Str(a, "name"), (LoadFlags)Flags(a));
                    return;
                case "adapters_load_from_memory":
                    Obj<Adapters>(a, "adapters").LoadFromMemory(File.ReadAllBytes(Str(a, "data")), Str(a, "name"),
                                                                (LoadFlags)Flags(a));
                    return;
                case "adapters_unload":
                    Obj<Adapters>(a, "adapters").Unload(Str(a, "name"));
                    return;
                case "adapters_names":
                {
                    var names = Obj<Adapters>(a, "adapters").Names;
                    r.Values["names"] = new List<object>(names);
                    r.Values["count"] = (long)names.Length;
                    return;
                }
                case "adapters_get":
                    r.Handle = Obj<Adapters>(a, "adapters").Get(Str(a, "name"));
                    return;
                case "adapter_open":
                    r.Handle = Adapter.Open(Str(a, "path"));
                    return;
                case "adapter_rank":
                    r.Values["rank"] = Obj<Adapter>(a, "adapter").Rank;
                    return;
                case "adapter_param_count":
                    r.Values["count"] = (long)Obj<Adapter>(a, "adapter").ParameterCount;
                    return;
                case "adapter_versions":
                {
                    var ad = Obj<Adapter>(a, "adapter");
                    r.Values["format_version"] = (long)ad.FormatVersion;
                    r.Values["adapter_version"] = (long)ad.AdapterVersion;
                    r.Values["model_version"] = (long)ad.ModelVersion;
                    return;
                }
                case "run_options_create":
                    r.Handle = new RunOptions();
                    return;
                case "run_options_set_active_adapters":
                    Obj<RunOptions>(a, "options").SetActiveAdapters(Obj<Adapters>(a, "adapters"), Strings(a, "names"),
                                                                    Weights(a));
                    return;
                case "run_options_set_active_adapters_per_row":
                    Obj<RunOptions>(a, "options").SetActiveAdaptersPerRow(Obj<Adapters>(a, "adapters"), Rows(a),
                                                                          RowWeights(a));
                    return;
                case "run_options_active_count":
                    r.Values["count"] = (long)Obj<RunOptions>(a, "options").ActiveCount;
                    return;
                case "generator_params_create":
                    r.Handle = new GeneratorParams(Obj<Model>(a, "model"));
                    return;
                case "generator_params_set_search_number":
                    Obj<GeneratorParams>(a, "params").SetSearchOption(Str(a, "name"), Dbl(a, "value"));
                    return;
                case "generator_params_set_search_bool":
                    Obj<GeneratorParams>(a, "params").SetSearchOption(Str(a, "name"), Dbl(a, "value") != 0.0);
                    return;
                case "generator_params_get_search_number":
                    r.Values["value"] = Obj<GeneratorParams>(a, "params").GetSearchNumber(Str(a, "name"));
                    return;
                case "generator_params_set_active_adapters":
                    Obj<GeneratorParams>(a, "params").SetActiveAdapters(Obj<Adapters>(a, "adapters"),
                                                                        Strings(a, "names"), Weights(a));
                    return;
                case "generator_params_set_active_adapters_per_row":
                    Obj<GeneratorParams>(a, "params").SetActiveAdaptersPerRow(Obj<Adapters>(a, "adapters"), Rows(a),
                                                                              RowWeights(a));
                    return;
                case "generator_set_active_adapters_per_row":
                    Obj<Generator>(a, "generator").SetActiveAdaptersPerRow(Obj<Adapters>(a, "adapters"), Rows(a),
                                                                           RowWeights(a));
                    return;
                case "generator_create":
                    r.Handle = new Generator(Obj<Model>(a, "model"), Obj<GeneratorParams>(a, "params"));
                    return;
                case "generator_append_tokens":
                    Obj<Generator>(a, "generator").AppendTokens(Ints(a, "tokens"));
                    return;
                case "generator_append_token_sequences":
                {
                    var seqs = (List<object>)a["sequences"];
                    var prompts = new int[seqs.Count][];
                    for (int i = 0; i < seqs.Count; i++)
                    {
                        var seq = (List<object>)seqs[i];
                        prompts[i] = new int[seq.Count];
                        for (int j = 0; j < seq.Count; j++) prompts[i][j] = (int)((JNum)seq[j]).L;
                    }
                    Obj<Generator>(a, "generator").AppendTokenSequences(prompts);
                    return;
                }
                case "generator_generate_next_token":
                    Obj<Generator>(a, "generator").GenerateNextToken();
                    return;
                case "generate_until_done":
                {
                    var g = Obj<Generator>(a, "generator");
                    long steps = 0, max = Num(a, "max_steps", 4096);
                    while (!g.IsDone)
                    {
                        if (steps == max)
                        {
                            r.Problems.Add("not done after max_steps steps");
                            return;
                        }
                        g.GenerateNextToken();
                        steps++;
                    }
                    r.Values["steps"] = steps;
                    return;
                }
                case "generator_is_done":
                    r.Values["done"] = Obj<Generator>(a, "generator").IsDone ? 1L : 0L;
                    return;
                case "generator_get_sequence":
                {
                    int[] seq = Obj<Generator>(a, "generator").GetSequence((int)Num(a, "index", 0));
                    r.Values["tokens"] = TokenList(seq, seq.Length);
                    r.Values["len"] = (long)seq.Length;
                    return;
                }
                case "generator_get_next_tokens":
                {
                    int[] next = Obj<Generator>(a, "generator").GetNextTokens();
                    r.Values["tokens"] = TokenList(next, next.Length);
                    r.Values["len"] = (long)next.Length;
                    return;
                }
                case "engine_options_create":
                    r.Handle = new EngineOptions();
                    return;
                case "engine_options_set_max_batch_size":
                    Obj<EngineOptions>(a, "options").SetMaxBatchSize(Num(a, "max_batch_size", 0));
                    return;
                case "engine_options_set_max_tokens_per_step":
                    Obj<EngineOptions>(a, "options").SetMaxTokensPerStep(Num(a, "max_tokens", 0));
                    return;
                case "engine_options_set_max_queue":
                    Obj<EngineOptions>(a, "options").SetMaxQueue(Num(a, "max_queue", 0));
                    return;
                case "engine_options_set_worker":
                {
                    long enable = Num(a, "enable", 1);
                    if (enable != 0 && enable != 1)
                    {
                        // the idiomatic setter takes a bool; other values go through the raw layer
                        var h = Obj<EngineOptions>(a, "options").Handle;
                        Took(r, NativeMethods.mlora_engine_options_set_worker(h.DangerousGetHandle(), (int)enable));
                        GC.KeepAlive(h);
                        return;
                    }
                    Obj<EngineOptions>(a, "options").SetWorker(enable == 1);
                    return;
                }
                case "engine_create":
                    r.Handle = new Engine(Obj<Model>(a, "model"), Obj<EngineOptions>(a, "options"));
                    return;
                case "engine_close":
                    Obj<Engine>(a, "engine").Close();
                    return;
                case "engine_step":
                    r.Values["has_work"] = Obj<Engine>(a, "engine").Step() ? 1L : 0L;
                    return;
                case "engine_submit":
                    r.Handle = Obj<Engine>(a, "engine").Submit(Obj<GeneratorParams>(a, "params"), Ints(a, "tokens"));
                    return;
                case "engine_run_until_done":
                {
                    var e = Obj<Engine>(a, "engine");
                    long steps = 0, max = Num(a, "max_steps", 4096);
                    while (true)
                    {
                        if (steps == max)
                        {
                            r.Problems.Add("work left after max_steps steps");
                            return;
                        }
                        steps++;
                        if (!e.Step()) break;
                    }
                    r.Values["steps"] = steps;
                    return;
                }
                case "request_read":
                {
                    var tokens = new List<int>();
                    bool more = Obj<Request>(a, "request").Read(tokens, (int)Num(a, "timeout_ms", 0),
                                                                 (int)Num(a, "capacity", 256));
                    r.Values["tokens"] = TokenList(tokens.ToArray(), tokens.Count);
                    r.Values["count"] = (long)tokens.Count;
                    r.Values["done"] = more ? 0L : 1L;
                    return;
                }
                case "request_read_all":
                {
                    int[] all = Obj<Request>(a, "request").ReadAll();
                    r.Values["tokens"] = TokenList(all, all.Length);
                    r.Values["count"] = (long)all.Length;
                    r.Values["done"] = 1L;
                    return;
                }
                case "request_cancel":
                    r.Values["cancelled"] = Obj<Request>(a, "request").Cancel() ? 1L : 0L;
                    return;
                case "request_finish_reason":
                    r.Values["reason"] = (long)(int)Obj<Request>(a, "request").FinishReason;
                    return;
                case "request_usage":
                {
                    var u = Obj<Request>(a, "request").Usage;
                    r.Values["prompt_tokens"] = u.PromptTokens;
                    r.Values["generated_tokens"] = u.GeneratedTokens;
                    return;
                }
                default:
                    throw new Exception("runner does not know call " + call);
            }
        }

        private static int Flags(Dictionary<string, object> a)
        {
            object v;
            return a.TryGetValue("flags", out v) && v is int ? (int)v : 0;
        }

        private static List<object> Longs(long[] s)
        {
            var l = new List<object>();
            foreach (var x in s) l.Add(x);
            return l;
        }

        private static void Run(Dictionary<string, object> a, Result r)
        {
            var model = Obj<Model>(a, "model");
            var options = Obj<RunOptions>(a, "options");
            var inputs = (JObj)a["inputs"];
            var names = new List<string>();
            var tensors = new List<Tensor>();
            var temps = new List<Tensor>();
            try
            {
                foreach (var kv in inputs)
                {
                    names.Add(kv.Key);
                    var v = kv.Value as Var;
                    if (v != null)
                    {
                        tensors.Add((Tensor)v.Value);
                    }
                    else
                    {
                        var t = MakeTensor((TensorSpec)kv.Value);
                        temps.Add(t);
                        tensors.Add(t);
                    }
                }
                var outNames = Strings(a, "output_names");
                var outs = model.Run(options, names.ToArray(), tensors.ToArray(), outNames);
                string[] resultNames = outNames.Length > 0 ? outNames : model.OutputNames;
                for (int i = 0; i < outs.Length; i++) r.Outputs[resultNames[i]] = outs[i];
            }
            finally
            {
                foreach (var t in temps) t.Dispose();
            }
        }

        // ---- raw calls (generated NativeMethods) --------------------------------------------------------------

        private static IntPtr Ptr(Dictionary<string, object> a, string key)
        {
            object v;
            if (!a.TryGetValue(key, out v) || v == null) return IntPtr.Zero;
            var obj = ((Var)v).Value;
            var h = (SafeHandle)obj.GetType().GetProperty("Handle").GetValue(obj, null);
            return h.DangerousGetHandle();
        }

        private static byte[] RawStr(object v)
        {
            if (v == null) return null;
            byte[] body = v is byte[] ? (byte[])v : Encoding.UTF8.GetBytes((string)v);
            var z = new byte[body.Length + 1];
            Buffer.BlockCopy(body, 0, z, 0, body.Length);
            return z;
        }

        private static void Took(Result r, int st)
        {
            r.StatusName = Library.StatusName(st);
            if (st != 0)
            {
                IntPtr m = NativeMethods.mlora_last_error_message();
                int n = 0;
                while (Marshal.ReadByte(m, n) != 0) n++;
                var b = new byte[n];
                Marshal.Copy(m, b, 0, n);
                r.Message = Encoding.UTF8.GetString(b);
                if (NativeMethods.mlora_last_error_status() != st)
                    r.Problems.Add("mlora_last_error_status() differs from the returned status");
            }
        }

        private static void ExecuteRaw(string call, Dictionary<string, object> a, Result r)
        {
            object tmp;
            switch (call)
            {
                case "engine_submit":
                {
                    IntPtr q;
                    int[] ids = Ints(a, "tokens");
                    Took(r, NativeMethods.mlora_engine_submit(Ptr(a, "engine"), Ptr(a, "params"), ids,
                                                              (UIntPtr)(uint)ids.Length, out q));
                    if (q != IntPtr.Zero) NativeMethods.mlora_request_release(q);
                    return;
                }
                case "model_create":
                {
                    IntPtr m;
                    a.TryGetValue("path", out tmp);
                    Took(r, NativeMethods.mlora_model_create(RawStr(tmp), IntPtr.Zero, out m));
                    if (m != IntPtr.Zero) NativeMethods.mlora_model_release(m);
                    return;
                }
                case "model_input_count":
                {
                    UIntPtr n;
                    Took(r, NativeMethods.mlora_model_input_count(Ptr(a, "model"), out n));
                    if (r.StatusName == "MLORA_STATUS_OK") r.Values["count"] = (long)n.ToUInt64();
                    return;
                }
                case "model_input_name":
                {
                    long cap = Num(a, "capacity", 256);
                    var buf = cap > 0 ? new byte[cap] : null;
                    UIntPtr len;
                    int st = NativeMethods.mlora_model_input_name(Ptr(a, "model"), (UIntPtr)(ulong)Num(a, "index", 0),
                                                                  buf, (UIntPtr)(ulong)cap, out len);
                    Took(r, st);
                    if (st == 0) r.Values["name"] = Encoding.UTF8.GetString(buf, 0, (int)len.ToUInt64() - 1);
                    if (st == 0 || st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL) r.Values["len"] = (long)len.ToUInt64();
                    return;
                }
                case "adapters_create":
                {
                    IntPtr p;
                    Took(r, NativeMethods.mlora_adapters_create(Ptr(a, "model"), out p));
                    if (p != IntPtr.Zero) NativeMethods.mlora_adapters_release(p);
                    return;
                }
                case "adapters_load":
                    a.TryGetValue("path", out tmp);
                    object name;
                    a.TryGetValue("name", out name);
                    Took(r, NativeMethods.mlora_adapters_load(Ptr(a, "adapters"), RawStr(tmp), RawStr(name), Flags(a)));
                    return;
                case "adapters_names":
                {
                    long cap = Num(a, "capacity", 4096);
                    var buf = cap > 0 ? new byte[cap] : null;
                    UIntPtr len, count;
                    int st = NativeMethods.mlora_adapters_names(Ptr(a, "adapters"), buf, (UIntPtr)(ulong)cap, out len,
                                                                out count);
                    Took(r, st);
                    if (st == 0)
                    {
                        var names = new List<object>();
                        int start = 0;
                        for (int i = 0; i < (int)len.ToUInt64(); i++)
                        {
                            if (buf[i] != 0) continue;
                            names.Add(Encoding.UTF8.GetString(buf, start, i - start));
                            start = i + 1;
                        }
                        r.Values["names"] = names;
                        r.Values["count"] = (long)count.ToUInt64();
                    }
                    if (st == 0 || st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL) r.Values["len"] = (long)len.ToUInt64();
                    return;
                }
                case "run_options_set_active_adapters":
                {
                    a.TryGetValue("names", out tmp);
                    var l = (List<object>)tmp ?? new List<object>();
                    var raw = new byte[l.Count][];
                    for (int i = 0; i < l.Count; i++)
                        raw[i] = l[i] is byte[] ? (byte[])l[i] : Encoding.UTF8.GetBytes((string)l[i]);
                    using (var arr = new Utf8StringArray(raw))
                        Took(r, NativeMethods.mlora_run_options_set_active_adapters(
                            Ptr(a, "options"), Ptr(a, "adapters"), arr.Pointers, Weights(a), (UIntPtr)(uint)l.Count));
                    return;
                }
                case "model_run":
                {
                    var inputs = (JObj)a["inputs"];
                    var names = new List<string>();
                    var temps = new List<Tensor>();
                    var ptrs = new List<IntPtr>();
                    foreach (var kv in inputs)
                    {
                        names.Add(kv.Key);
                        var t = MakeTensor((TensorSpec)kv.Value);
                        temps.Add(t);
                        ptrs.Add(t.Handle.DangerousGetHandle());
                    }
                    var outNames = Strings(a, "output_names");
                    var slots = new IntPtr[Math.Max(outNames.Length, 1)];
                    using (var n = new Utf8StringArray(names.ToArray(), "input"))
                    using (var o = new Utf8StringArray(outNames, "output"))
                        Took(r, NativeMethods.mlora_model_run(Ptr(a, "model"), Ptr(a, "options"), n.Pointers,
                                                              ptrs.ToArray(), (UIntPtr)(uint)ptrs.Count, o.Pointers,
                                                              (UIntPtr)(uint)outNames.Length, slots));
                    foreach (var s in slots)
                        if (s != IntPtr.Zero) NativeMethods.mlora_tensor_release(s);
                    foreach (var t in temps) t.Dispose();
                    return;
                }
                case "tensor_shape":
                {
                    long cap = Num(a, "capacity", 8);
                    var buf = new long[Math.Max(cap, 1)];
                    UIntPtr nd;
                    int st = NativeMethods.mlora_tensor_shape(Ptr(a, "tensor"), buf, (UIntPtr)(ulong)cap, out nd);
                    Took(r, st);
                    if (st == 0 || st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL) r.Values["ndim"] = (long)nd.ToUInt64();
                    return;
                }
                case "tensor_dtype":
                {
                    int d;
                    Took(r, NativeMethods.mlora_tensor_dtype(Ptr(a, "tensor"), out d));
                    if (r.StatusName == "MLORA_STATUS_OK") r.Values["dtype"] = (long)d;
                    return;
                }
                case "generator_is_done":
                {
                    int done;
                    Took(r, NativeMethods.mlora_generator_is_done(Ptr(a, "generator"), out done));
                    if (r.StatusName == "MLORA_STATUS_OK") r.Values["done"] = (long)done;
                    return;
                }
                case "generator_get_sequence":
                case "generator_get_next_tokens":
                {
                    long cap = Num(a, "capacity", 4096);
                    var buf = cap > 0 ? new int[cap] : null;
                    UIntPtr len;
                    int st = call == "generator_get_sequence"
                        ? NativeMethods.mlora_generator_get_sequence(Ptr(a, "generator"), (UIntPtr)(ulong)Num(a, "index", 0),
                                                                     buf, (UIntPtr)(ulong)cap, out len)
                        : NativeMethods.mlora_generator_get_next_tokens(Ptr(a, "generator"), buf, (UIntPtr)(ulong)cap,
                                                                        out len);
                    Took(r, st);
                    if (st == 0) r.Values["tokens"] = TokenList(buf ?? new int[0], (int)len.ToUInt64());
                    if (st == 0 || st == NativeMethods.MLORA_STATUS_BUFFER_TOO_SMALL) r.Values["len"] = (long)len.ToUInt64();
                    return;
                }
                default:
                    throw new Exception("runner has no raw form of call " + call);
            }
        }

        // ---- checking -----------------------------------------------------------------------------------------

        private static string Check(JObj step, Result r, JObj tol)
        {
            var expect = step.Get("expect") as JObj ?? new JObj();
            string want = (string)expect.Get("status") ?? "MLORA_STATUS_OK";
            if (r.StatusName != want)
                return string.Format("status {0}, expected {1} (message: {2})", r.StatusName, want, r.Message);
            if (r.Problems.Count > 0) return string.Join("; ", r.Problems);
            if (want != "MLORA_STATUS_OK" && string.IsNullOrEmpty(r.Message)) return "failed with an empty message";
            var msg = expect.Get("message");
            var subs = msg is string ? new List<object> { msg } : (msg as List<object> ?? new List<object>());
            foreach (string s in subs)
                if (!r.Message.Contains(s)) return string.Format("message \"{0}\" lacks \"{1}\"", r.Message, s);
            var values = expect.Get("values") as JObj;
            if (values != null)
                foreach (var kv in values)
                {
                    object got, wantValue = ValueRef(kv.Value);
                    if (!r.Values.TryGetValue(kv.Key, out got)) return "value " + kv.Key + " missing";
                    if (!Same(got, wantValue))
                        return string.Format("value {0} is {1}, expected {2}", kv.Key, Json.Dump(got),
                                             Json.Dump(wantValue));
                }
            var outs = expect.Get("outputs") as JObj;
            if (outs != null)
                foreach (var kv in outs)
                {
                    Tensor t;
                    if (!r.Outputs.TryGetValue(kv.Key, out t)) return "output " + kv.Key + " missing";
                    var spec = (JObj)kv.Value;
                    var refT = (JObj)((JObj)_reference.Get("tensors")).Get((string)spec.Get("ref"));
                    double atol = Tol(spec, tol, "atol"), rtol = Tol(spec, tol, "rtol");
                    var shape = t.Shape;
                    var refShape = (List<object>)refT.Get("shape");
                    if (shape.Length != refShape.Count) return "output " + kv.Key + " has the wrong rank";
                    for (int i = 0; i < shape.Length; i++)
                        if (shape[i] != ((JNum)refShape[i]).L) return "output " + kv.Key + " has the wrong shape";
                    if (t.DType != DType.Float32) return "output " + kv.Key + " is not float32";
                    var got = t.ToFloats();
                    var exp = (List<object>)refT.Get("data");
                    if (got.Length != exp.Count) return "output " + kv.Key + " has the wrong size";
                    for (int i = 0; i < got.Length; i++)
                    {
                        double e = ((JNum)exp[i]).D;
                        if (!(Math.Abs(got[i] - e) <= atol + rtol * Math.Abs(e)))
                            return string.Format(CultureInfo.InvariantCulture,
                                                 "output {0} element {1} is {2:R}, expected {3:R}", kv.Key, i, got[i], e);
                    }
                }
            return null;
        }

        private static double Tol(JObj spec, JObj tol, string key)
        {
            if (spec.Has(key)) return ((JNum)spec.Get(key)).D;
            if (tol != null && tol.Has(key)) return ((JNum)tol.Get(key)).D;
            return 1e-5;
        }

        private static bool Same(object got, object want)
        {
            var wl = want as List<object>;
            if (wl != null)
            {
                var gl = got as List<object>;
                if (gl == null || gl.Count != wl.Count) return false;
                for (int i = 0; i < wl.Count; i++)
                    if (!Same(gl[i], wl[i])) return false;
                return true;
            }
            var wn = want as JNum;
            if (wn != null)
            {
                if (got is long) return wn.IsInt ? (long)got == wn.L : (long)got == wn.D;
                if (got is double) return (double)got == wn.D;
                return false;
            }
            return Equals(got, want);
        }

        private static void Bind(JObj step, Result r)
        {
            var o = step.Get("out");
            if (o is string && r.StatusName == "MLORA_STATUS_OK" && r.Handle != null)
            {
                Set((string)o, r.Handle, true);
                r.Handle = null;
            }
            var map = o as JObj;
            if (map != null)
                foreach (var kv in map)
                {
                    Tensor t;
                    object v;
                    if (r.Outputs.TryGetValue(kv.Key, out t))
                    {
                        Set((string)kv.Value, t, true);
                        r.Outputs.Remove(kv.Key);
                    }
                    else if (r.Values.TryGetValue(kv.Key, out v))
                    {
                        Set((string)kv.Value, v, false);
                    }
                }
            if (r.Handle is IDisposable) ((IDisposable)r.Handle).Dispose();
            foreach (var t in r.Outputs.Values) t.Dispose();
        }

        private static void Set(string name, object value, bool isHandle)
        {
            Vars[name] = new Var { Value = value, IsHandle = isHandle };
            Order.Add(name);
        }
    }
}
