package ai.multilora.conformance;

import ai.multilora.Adapter;
import ai.multilora.Adapters;
import ai.multilora.BatchSlots;
import ai.multilora.DType;
import ai.multilora.Engine;
import ai.multilora.EngineOptions;
import ai.multilora.Generator;
import ai.multilora.GeneratorParams;
import ai.multilora.Model;
import ai.multilora.ModelOptions;
import ai.multilora.Multilora;
import ai.multilora.MultiloraException;
import ai.multilora.MultiloraLibrary;
import ai.multilora.NativeObject;
import ai.multilora.Request;
import ai.multilora.RequestUsage;
import ai.multilora.RunOptions;
import ai.multilora.Tensor;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.PointerByReference;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Conformance runner in Java: plays tests/conformance/vectors through the Java bindings.
 *
 * <p>Steps run through the idiomatic classes (Model, Adapters, RunOptions, Tensor ...); steps marked
 * {@code "level": "raw"} (NULL handles, explicit buffer capacities, invalid UTF-8) run through the generated
 * {@link MultiloraLibrary} with the objects' handles. A released variable is a closed object, for which the
 * idiomatic layer reports MLORA_STATUS_INVALID_HANDLE.
 *
 * <p>Usage: java -cp jna.jar:classes ai.multilora.conformance.ConformanceRunner VECTORS_DIR FIXTURES_DIR
 * — prints exactly "N passed, N failed" last.
 */
public final class ConformanceRunner {
    private static final class Var {
        Object value;
        boolean released;
        boolean isHandle = true;

        Var(Object value, boolean isHandle) {
            this.value = value;
            this.isHandle = isHandle;
        }
    }

    private static final class Spec {
        int dtype;
        long[] shape;
        byte[] data;
    }

    private static final class Result {
        String statusName = "MLORA_STATUS_OK";
        String message = "";
        final Map<String, Object> values = new HashMap<>();
        Object handle;
        final Map<String, Tensor> outputs = new LinkedHashMap<>();
        final List<String> problems = new ArrayList<>();
    }

    private static final Map<String, Integer> DTYPES = Map.of("float32", 1, "uint8", 2, "int8", 3, "int32", 6,
            "int64", 7, "bool", 9, "float16", 10, "float64", 11);

    private static String fixtures;
    private static Map<String, Object> reference;
    private static final Map<String, Var> VARS = new HashMap<>();
    private static final List<String> ORDER = new ArrayList<>();
    private static int passed;
    private static int failed;

    private ConformanceRunner() {}

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ConformanceRunner VECTORS_DIR FIXTURES_DIR");
            System.exit(2);
        }
        fixtures = args[1];
        reference = (Map<String, Object>) Json.parse(Files.readString(Paths.get(fixtures, "reference.json")));
        System.out.println("conformance (Java " + System.getProperty("java.version") + ", JNA " + Native.VERSION
                + " — library " + Multilora.version() + ", ABI " + Multilora.abiVersion() + ")");
        File[] files = new File(args[0]).listFiles((d, n) -> n.endsWith(".json"));
        Arrays.sort(files);
        for (File f : files) {
            runScenario(f.toPath());
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    @SuppressWarnings("unchecked")
    private static void runScenario(Path path) throws Exception {
        Map<String, Object> doc = (Map<String, Object>) Json.parse(Files.readString(path));
        String name = (String) doc.get("name");
        Map<String, Object> tol = (Map<String, Object>) doc.get("tolerance");
        int p0 = passed;
        int f0 = failed;
        for (Object o : (List<Object>) doc.get("steps")) {
            Map<String, Object> step = (Map<String, Object>) o;
            String id = name + "/" + step.get("id");
            String call = (String) step.get("call");
            String err;
            try {
                boolean raw = "raw".equals(step.get("level"));
                Map<String, Object> a = new LinkedHashMap<>();
                Map<String, Object> given = (Map<String, Object>) step.get("args");
                if (given != null) {
                    for (Map.Entry<String, Object> e : given.entrySet()) {
                        a.put(e.getKey(), resolve(e.getValue(), e.getKey()));
                    }
                }
                Result r = new Result();
                try {
                    if (raw) {
                        executeRaw(call, a, r);
                    } else {
                        execute(call, a, r);
                    }
                } catch (MultiloraException e) {
                    r.statusName = e.statusName();
                    r.message = e.getMessage();
                }
                err = check(step, r, tol);
                bind(step, r);
                if (call.endsWith("_release")) {
                    for (Object v : a.values()) {
                        if (v instanceof Var) {
                            ((Var) v).released = true;
                        }
                    }
                }
            } catch (Exception e) {
                err = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
            if (err != null) {
                failed++;
                System.out.println("FAIL " + id + ": " + err);
            } else {
                passed++;
            }
        }
        for (int i = ORDER.size() - 1; i >= 0; i--) {
            Var v = VARS.get(ORDER.get(i));
            if (v.isHandle && !v.released) {
                ((AutoCloseable) v.value).close();
            }
        }
        VARS.clear();
        ORDER.clear();
        System.out.println(String.format("%-10s %d passed, %d failed", name, passed - p0, failed - f0));
    }

    // ---- arguments ------------------------------------------------------------------------------------------

    @SuppressWarnings("unchecked")
    private static Object resolve(Object v, String key) {
        if (v instanceof String) {
            String s = (String) v;
            if (s.startsWith("@fixtures/")) {
                return Paths.get(fixtures, s.substring(10)).toString();
            }
            if (s.startsWith("$")) {
                Var var = VARS.get(s.substring(1));
                if (var == null) {
                    throw new IllegalStateException("unbound variable " + s);
                }
                return var;
            }
            return s;
        }
        if (v instanceof Map) {
            Map<String, Object> m = (Map<String, Object>) v;
            if (m.containsKey("utf8_hex")) {
                return fromHex((String) m.get("utf8_hex"));
            }
            if (m.containsKey("value_ref")) {
                return valueRef(m);
            }
            if (m.containsKey("dtype") || m.containsKey("ref")) {
                return spec(m);
            }
            Map<String, Object> r = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : m.entrySet()) {
                r.put(e.getKey(), resolve(e.getValue(), e.getKey()));
            }
            return r;
        }
        if (v instanceof List) {
            List<Object> l = (List<Object>) v;
            if (key.equals("flags")) {
                int flags = 0;
                for (Object f : l) {
                    if ("MLORA_LOAD_REPLACE".equals(f)) {
                        flags |= Multilora.LOAD_REPLACE;
                    }
                    if ("MLORA_LOAD_IGNORE_MODEL_VERSION".equals(f)) {
                        flags |= Multilora.LOAD_IGNORE_MODEL_VERSION;
                    }
                    if ("MLORA_LOAD_COPY".equals(f)) {
                        flags |= Multilora.LOAD_COPY;
                    }
                }
                return flags;
            }
            List<Object> r = new ArrayList<>();
            for (Object x : l) {
                r.add(resolve(x, ""));
            }
            return r;
        }
        return v;
    }

    /** {"value_ref": name} -> reference.json's values[name]; anything else as it is. */
    @SuppressWarnings("unchecked")
    private static Object valueRef(Object v) {
        if (!(v instanceof Map) || !((Map<String, Object>) v).containsKey("value_ref")) {
            return v;
        }
        String name = (String) ((Map<String, Object>) v).get("value_ref");
        Map<String, Object> values = (Map<String, Object>) reference.get("values");
        if (values == null || !values.containsKey(name)) {
            throw new IllegalStateException("value_ref " + name + " not in reference.json");
        }
        return values.get(name);
    }

    private static double dbl(Map<String, Object> a, String key) {
        Object v = a.get(key);
        if (v instanceof Boolean) {
            return (Boolean) v ? 1.0 : 0.0;
        }
        return v == null ? 0.0 : ((Number) v).doubleValue();
    }

    @SuppressWarnings("unchecked")
    private static int[] ints(Map<String, Object> a, String key) {
        List<Object> l = (List<Object>) a.get(key);
        int[] r = new int[l.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = ((Number) l.get(i)).intValue();
        }
        return r;
    }

    private static List<Object> tokenList(int[] tokens, int count) {
        List<Object> l = new ArrayList<>();
        for (int i = 0; i < count && i < tokens.length; i++) {
            l.add((long) tokens[i]);
        }
        return l;
    }

    private static byte[] fromHex(String hex) {
        byte[] b = new byte[hex.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    private static int elemSize(int dtype) {
        switch (dtype) {
            case 1: case 6: return 4;
            case 7: case 11: return 8;
            case 10: return 2;
            default: return 1;
        }
    }

    @SuppressWarnings("unchecked")
    private static Spec spec(Map<String, Object> m) {
        if (m.containsKey("ref")) {
            m = (Map<String, Object>) ((Map<String, Object>) reference.get("tensors")).get((String) m.get("ref"));
        }
        Spec s = new Spec();
        Object dt = m.get("dtype");
        s.dtype = dt instanceof String ? DTYPES.get(dt) : ((Number) dt).intValue();
        List<Object> shape = (List<Object>) m.get("shape");
        s.shape = new long[shape.size()];
        long count = 1;
        for (int i = 0; i < shape.size(); i++) {
            s.shape[i] = ((Number) shape.get(i)).longValue();
            count *= Math.max(s.shape[i], 0);
        }
        if (m.containsKey("data_hex")) {
            s.data = fromHex((String) m.get("data_hex"));
            return s;
        }
        List<Object> data = (List<Object>) m.get("data");
        int n = data != null ? data.size() : (int) count;
        int es = elemSize(s.dtype);
        ByteBuffer b = ByteBuffer.allocate(n * es).order(ByteOrder.nativeOrder());
        for (int i = 0; i < n; i++) {
            Number x = (Number) (data != null ? data.get(i) : m.get("fill"));
            switch (s.dtype) {
                case 1: b.putFloat(x.floatValue()); break;
                case 11: b.putDouble(x.doubleValue()); break;
                case 7: b.putLong(x.longValue()); break;
                case 6: b.putInt(x.intValue()); break;
                default: b.put(x.byteValue());
            }
        }
        s.data = b.array();
        return s;
    }

    private static <T> T obj(Map<String, Object> a, String key, Class<T> type) {
        Object v = a.get(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof Var)) {
            throw new IllegalArgumentException(key + " must be a variable");
        }
        return type.cast(((Var) v).value);
    }

    private static String str(Map<String, Object> a, String key) {
        Object v = a.get(key);
        if (v instanceof byte[]) {
            throw new IllegalArgumentException("raw bytes need the raw layer");
        }
        return (String) v;
    }

    private static long num(Map<String, Object> a, String key, long dflt) {
        Object v = a.get(key);
        return v == null ? dflt : ((Number) v).longValue();
    }

    @SuppressWarnings("unchecked")
    private static String[] strings(Map<String, Object> a, String key) {
        List<Object> l = (List<Object>) a.get(key);
        if (l == null) {
            return new String[0];
        }
        return l.toArray(new String[0]);
    }

    @SuppressWarnings("unchecked")
    private static List<Object> objects(Object list) {
        return (List<Object>) list;
    }

    /** "rows" of a *_set_active_adapters_per_row step: one list of adapter names per row. */
    private static String[][] rows(Map<String, Object> a) {
        List<Object> rows = a.get("rows") == null ? new ArrayList<>() : objects(a.get("rows"));
        String[][] names = new String[rows.size()][];
        for (int i = 0; i < names.length; i++) {
            names[i] = objects(rows.get(i)).toArray(new String[0]);
        }
        return names;
    }

    /** "weights" of a *_set_active_adapters_per_row step: one list per row, or null for all 1.0. */
    private static float[][] rowWeights(Map<String, Object> a) {
        if (a.get("weights") == null) {
            return null;
        }
        List<Object> wl = objects(a.get("weights"));
        float[][] w = new float[wl.size()][];
        for (int i = 0; i < w.length; i++) {
            List<Object> row = objects(wl.get(i));
            w[i] = new float[row.size()];
            for (int j = 0; j < w[i].length; j++) {
                w[i][j] = ((Number) row.get(j)).floatValue();
            }
        }
        return w;
    }

    @SuppressWarnings("unchecked")
    private static float[] weights(Map<String, Object> a) {
        List<Object> l = (List<Object>) a.get("weights");
        if (l == null) {
            return null;
        }
        float[] w = new float[l.size()];
        for (int i = 0; i < w.length; i++) {
            w[i] = ((Number) l.get(i)).floatValue();
        }
        return w;
    }

    private static int flags(Map<String, Object> a) {
        Object v = a.get("flags");
        return v instanceof Integer ? (Integer) v : 0;
    }

    private static Tensor tensor(Spec s) {
        return Tensor.create(s.dtype, s.shape, s.data);
    }

    private static List<Object> longs(long[] s) {
        List<Object> l = new ArrayList<>();
        for (long x : s) {
            l.add(x);
        }
        return l;
    }

    // ---- idiomatic calls -----------------------------------------------------------------------------------

    private static void execute(String call, Map<String, Object> a, Result r) throws Exception {
        switch (call) {
            case "check_binding_abi":
                Multilora.checkAbiVersion((int) num(a, "expected", MultiloraLibrary.GENERATED_ABI_VERSION));
                return;
            case "version_string":
                r.values.put("value", Multilora.version());
                return;
            case "status_name":
                r.values.put("value", Multilora.statusName((int) num(a, "status", 0)));
                return;
            case "dtype_name":
                r.values.put("value", Multilora.dtypeName((int) num(a, "dtype", 0)));
                return;
            case "dtype_size":
                r.values.put("value", (double) Multilora.dtypeSize((int) num(a, "dtype", 0)));
                return;
            case "model_create":
                r.handle = new Model(str(a, "path"), obj(a, "options", ModelOptions.class));
                return;
            case "model_options_create":
                r.handle = new ModelOptions();
                return;
            case "model_options_set_batch_slots":
                obj(a, "options", ModelOptions.class).setBatchSlots((int) num(a, "slots", -1));
                return;
            case "model_batch_slots": {
                BatchSlots b = obj(a, "model", Model.class).batchSlots();
                r.values.put("slots", Long.valueOf(b.slots));
                r.values.put("resident", Long.valueOf(b.resident));
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
                for (Object v : a.values()) {
                    if (v instanceof Var) {
                        ((AutoCloseable) ((Var) v).value).close();
                    }
                }
                return;
            case "model_input_count":
                r.values.put("count", (long) obj(a, "model", Model.class).inputCount());
                return;
            case "model_output_count":
                r.values.put("count", (long) obj(a, "model", Model.class).outputCount());
                return;
            case "model_lora_count":
                r.values.put("count", (long) obj(a, "model", Model.class).loraCount());
                return;
            case "model_input_name":
                r.values.put("name", obj(a, "model", Model.class).inputName((int) num(a, "index", 0)));
                return;
            case "model_output_name":
                r.values.put("name", obj(a, "model", Model.class).outputName((int) num(a, "index", 0)));
                return;
            case "model_lora_name":
                r.values.put("name", obj(a, "model", Model.class).loraName((int) num(a, "index", 0)));
                return;
            case "model_run":
                run(a, r);
                return;
            case "tensor_create":
                r.handle = tensor((Spec) a.get("tensor"));
                return;
            case "tensor_dtype":
                r.values.put("dtype", (long) obj(a, "tensor", Tensor.class).dtype());
                return;
            case "tensor_shape": {
                long[] s = obj(a, "tensor", Tensor.class).shape();
                r.values.put("shape", longs(s));
                r.values.put("ndim", (long) s.length);
                return;
            }
            case "tensor_data": {
                Tensor t = obj(a, "tensor", Tensor.class);
                List<Object> data = new ArrayList<>();
                if (t.dtype() == DType.FLOAT32) {
                    for (float f : t.toFloats()) {
                        data.add((double) f);
                    }
                } else if (t.dtype() == DType.INT64) {
                    for (long l : t.toLongs()) {
                        data.add(l);
                    }
                }
                r.values.put("data", data);
                r.values.put("bytes", t.byteCount());
                return;
            }
            case "adapters_create":
                r.handle = new Adapters(obj(a, "model", Model.class));
                return;
            case "adapters_load":
                obj(a, "adapters", Adapters.class).load(str(a, "path"), str(a, "name"), flags(a));
                return;
            case "adapters_load_from_memory":
                obj(a, "adapters", Adapters.class).loadFromMemory(Files.readAllBytes(Paths.get(str(a, "data"))),
                        str(a, "name"), flags(a));
                return;
            case "adapters_unload":
                obj(a, "adapters", Adapters.class).unload(str(a, "name"));
                return;
            case "adapters_names": {
                String[] names = obj(a, "adapters", Adapters.class).names();
                r.values.put("names", new ArrayList<Object>(Arrays.asList(names)));
                r.values.put("count", (long) names.length);
                return;
            }
            case "adapters_get":
                r.handle = obj(a, "adapters", Adapters.class).get(str(a, "name"));
                return;
            case "adapter_open":
                r.handle = Adapter.open(str(a, "path"));
                return;
            case "adapter_rank":
                r.values.put("rank", obj(a, "adapter", Adapter.class).rank());
                return;
            case "adapter_param_count":
                r.values.put("count", (long) obj(a, "adapter", Adapter.class).parameterCount());
                return;
            case "adapter_versions": {
                Adapter ad = obj(a, "adapter", Adapter.class);
                r.values.put("format_version", (long) ad.formatVersion());
                r.values.put("adapter_version", (long) ad.adapterVersion());
                r.values.put("model_version", (long) ad.modelVersion());
                return;
            }
            case "run_options_create":
                r.handle = new RunOptions();
                return;
            case "run_options_set_active_adapters":
                obj(a, "options", RunOptions.class).setActiveAdapters(obj(a, "adapters", Adapters.class),
                        strings(a, "names"), weights(a));
                return;
            case "run_options_set_active_adapters_per_row":
                obj(a, "options", RunOptions.class).setActiveAdaptersPerRow(obj(a, "adapters", Adapters.class), rows(a),
                        rowWeights(a));
                return;
            case "run_options_active_count":
                r.values.put("count", (long) obj(a, "options", RunOptions.class).activeCount());
                return;
            case "generator_params_create":
                r.handle = new GeneratorParams(obj(a, "model", Model.class));
                return;
            case "generator_params_set_search_number":
                obj(a, "params", GeneratorParams.class).setSearchOption(str(a, "name"), dbl(a, "value"));
                return;
            case "generator_params_set_search_bool":
                obj(a, "params", GeneratorParams.class).setSearchOption(str(a, "name"), dbl(a, "value") != 0.0);
                return;
            case "generator_params_get_search_number":
                r.values.put("value", obj(a, "params", GeneratorParams.class).getSearchNumber(str(a, "name")));
                return;
            case "generator_params_set_active_adapters":
                obj(a, "params", GeneratorParams.class).setActiveAdapters(obj(a, "adapters", Adapters.class),
                        strings(a, "names"), weights(a));
                return;
            case "generator_params_set_active_adapters_per_row":
                obj(a, "params", GeneratorParams.class).setActiveAdaptersPerRow(obj(a, "adapters", Adapters.class),
                        rows(a), rowWeights(a));
                return;
            case "generator_set_active_adapters_per_row":
                obj(a, "generator", Generator.class).setActiveAdaptersPerRow(obj(a, "adapters", Adapters.class),
                        rows(a), rowWeights(a));
                return;
            case "generator_create":
                r.handle = new Generator(obj(a, "model", Model.class), obj(a, "params", GeneratorParams.class));
                return;
            case "generator_append_tokens":
                obj(a, "generator", Generator.class).appendTokens(ints(a, "tokens"));
                return;
            case "generator_append_token_sequences": {
                List<Object> seqs = objects(a.get("sequences"));
                int[][] prompts = new int[seqs.size()][];
                for (int i = 0; i < prompts.length; i++) {
                    List<Object> seq = objects(seqs.get(i));
                    prompts[i] = new int[seq.size()];
                    for (int j = 0; j < prompts[i].length; j++) {
                        prompts[i][j] = ((Number) seq.get(j)).intValue();
                    }
                }
                obj(a, "generator", Generator.class).appendTokenSequences(prompts);
                return;
            }
            case "generator_generate_next_token":
                obj(a, "generator", Generator.class).generateNextToken();
                return;
            case "generate_until_done": {
                Generator g = obj(a, "generator", Generator.class);
                long steps = 0;
                long max = num(a, "max_steps", 4096);
                while (!g.isDone()) {
                    if (steps == max) {
                        r.problems.add("not done after max_steps steps");
                        return;
                    }
                    g.generateNextToken();
                    steps++;
                }
                r.values.put("steps", steps);
                return;
            }
            case "generator_is_done":
                r.values.put("done", obj(a, "generator", Generator.class).isDone() ? 1L : 0L);
                return;
            case "generator_get_sequence": {
                int[] seq = obj(a, "generator", Generator.class).getSequence((int) num(a, "index", 0));
                r.values.put("tokens", tokenList(seq, seq.length));
                r.values.put("len", (long) seq.length);
                return;
            }
            case "generator_get_next_tokens": {
                int[] next = obj(a, "generator", Generator.class).getNextTokens();
                r.values.put("tokens", tokenList(next, next.length));
                r.values.put("len", (long) next.length);
                return;
            }
            case "engine_options_create":
                r.handle = new EngineOptions();
                return;
            case "engine_options_set_max_batch_size":
                obj(a, "options", EngineOptions.class).setMaxBatchSize(num(a, "max_batch_size", 0));
                return;
            case "engine_options_set_max_tokens_per_step":
                obj(a, "options", EngineOptions.class).setMaxTokensPerStep(num(a, "max_tokens", 0));
                return;
            case "engine_options_set_max_queue":
                obj(a, "options", EngineOptions.class).setMaxQueue(num(a, "max_queue", 0));
                return;
            case "engine_options_set_worker": {
                long enable = num(a, "enable", 1);
                if (enable != 0 && enable != 1) { // the idiomatic setter takes a boolean; others go through the raw layer
                    took(r, Multilora.lib().mlora_engine_options_set_worker(ptr(a, "options"), (int) enable));
                    return;
                }
                obj(a, "options", EngineOptions.class).setWorker(enable == 1);
                return;
            }
            case "engine_create":
                r.handle = new Engine(obj(a, "model", Model.class), obj(a, "options", EngineOptions.class));
                return;
            case "engine_close":
                obj(a, "engine", Engine.class).shutdown();
                return;
            case "engine_step":
                r.values.put("has_work", obj(a, "engine", Engine.class).step() ? 1L : 0L);
                return;
            case "engine_submit":
                r.handle = obj(a, "engine", Engine.class).submit(obj(a, "params", GeneratorParams.class),
                        ints(a, "tokens"));
                return;
            case "engine_run_until_done": {
                Engine e = obj(a, "engine", Engine.class);
                long steps = 0;
                long max = num(a, "max_steps", 4096);
                while (true) {
                    if (steps == max) {
                        r.problems.add("work left after max_steps steps");
                        return;
                    }
                    steps++;
                    if (!e.step()) {
                        break;
                    }
                }
                r.values.put("steps", steps);
                return;
            }
            case "request_read": {
                List<Integer> tokens = new ArrayList<>();
                boolean more = obj(a, "request", Request.class).read(tokens, (int) num(a, "timeout_ms", 0));
                int[] t = new int[tokens.size()];
                for (int i = 0; i < t.length; i++) {
                    t[i] = tokens.get(i);
                }
                r.values.put("tokens", tokenList(t, t.length));
                r.values.put("count", (long) t.length);
                r.values.put("done", more ? 0L : 1L);
                return;
            }
            case "request_read_all": {
                int[] all = obj(a, "request", Request.class).readAll();
                r.values.put("tokens", tokenList(all, all.length));
                r.values.put("count", (long) all.length);
                r.values.put("done", 1L);
                return;
            }
            case "request_cancel":
                r.values.put("cancelled", obj(a, "request", Request.class).cancel() ? 1L : 0L);
                return;
            case "request_finish_reason":
                r.values.put("reason", (long) obj(a, "request", Request.class).finishReason().ordinal());
                return;
            case "request_usage": {
                RequestUsage u = obj(a, "request", Request.class).usage();
                r.values.put("prompt_tokens", u.promptTokens);
                r.values.put("generated_tokens", u.generatedTokens);
                return;
            }
            default:
                throw new IllegalArgumentException("runner does not know call " + call);
        }
    }

    @SuppressWarnings("unchecked")
    private static void run(Map<String, Object> a, Result r) {
        Model model = obj(a, "model", Model.class);
        RunOptions options = obj(a, "options", RunOptions.class);
        Map<String, Object> inputs = (Map<String, Object>) a.get("inputs");
        List<String> names = new ArrayList<>();
        List<Tensor> tensors = new ArrayList<>();
        List<Tensor> temps = new ArrayList<>();
        try {
            for (Map.Entry<String, Object> e : inputs.entrySet()) {
                names.add(e.getKey());
                if (e.getValue() instanceof Var) {
                    tensors.add((Tensor) ((Var) e.getValue()).value);
                } else {
                    Tensor t = tensor((Spec) e.getValue());
                    temps.add(t);
                    tensors.add(t);
                }
            }
            String[] outNames = strings(a, "output_names");
            Tensor[] outs = model.run(options, names.toArray(new String[0]), tensors.toArray(new Tensor[0]), outNames);
            String[] resultNames = outNames.length > 0 ? outNames : model.outputNames();
            for (int i = 0; i < outs.length; i++) {
                r.outputs.put(resultNames[i], outs[i]);
            }
        } finally {
            for (Tensor t : temps) {
                t.close();
            }
        }
    }

    // ---- raw calls (generated MultiloraLibrary) -----------------------------------------------------------------

    private static Pointer ptr(Map<String, Object> a, String key) {
        Object v = a.get(key);
        return v == null ? null : ((NativeObject) ((Var) v).value).nativeHandle();
    }

    private static byte[] rawStr(Object v) {
        if (v == null) {
            return null;
        }
        byte[] body = v instanceof byte[] ? (byte[]) v : ((String) v).getBytes(StandardCharsets.UTF_8);
        return Arrays.copyOf(body, body.length + 1);
    }

    private static void took(Result r, int st) {
        MultiloraLibrary l = Multilora.lib();
        r.statusName = Multilora.statusName(st);
        if (st != 0) {
            r.message = l.mlora_last_error_message().getString(0, "UTF-8");
            if (l.mlora_last_error_status() != st) {
                r.problems.add("mlora_last_error_status() differs from the returned status");
            }
        }
    }

    private static Pointer rawStrings(List<byte[]> items, List<Object> keep) {
        if (items.isEmpty()) {
            return null;
        }
        Memory ptrs = new Memory((long) Native.POINTER_SIZE * items.size());
        for (int i = 0; i < items.size(); i++) {
            byte[] z = Arrays.copyOf(items.get(i), items.get(i).length + 1);
            Memory m = new Memory(z.length);
            m.write(0, z, 0, z.length);
            keep.add(m);
            ptrs.setPointer((long) i * Native.POINTER_SIZE, m);
        }
        keep.add(ptrs);
        return ptrs;
    }

    @SuppressWarnings("unchecked")
    private static void executeRaw(String call, Map<String, Object> a, Result r) {
        MultiloraLibrary l = Multilora.lib();
        switch (call) {
            case "engine_submit": {
                int[] ids = ints(a, "tokens");
                PointerByReference out = new PointerByReference();
                took(r, l.mlora_engine_submit(ptr(a, "engine"), ptr(a, "params"), ids, new MultiloraLibrary.SizeT(ids.length), out));
                l.mlora_request_release(out.getValue());
                return;
            }
            case "model_create": {
                PointerByReference out = new PointerByReference();
                took(r, l.mlora_model_create(rawStr(a.get("path")), null, out));
                l.mlora_model_release(out.getValue());
                return;
            }
            case "model_input_count": {
                MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
                took(r, l.mlora_model_input_count(ptr(a, "model"), n));
                if (r.statusName.equals("MLORA_STATUS_OK")) {
                    r.values.put("count", n.getValue());
                }
                return;
            }
            case "model_input_name": {
                long cap = num(a, "capacity", 256);
                byte[] buf = cap > 0 ? new byte[(int) cap] : null;
                MultiloraLibrary.SizeTByReference len = new MultiloraLibrary.SizeTByReference();
                int st = l.mlora_model_input_name(ptr(a, "model"), new MultiloraLibrary.SizeT(num(a, "index", 0)), buf,
                        new MultiloraLibrary.SizeT(cap), len);
                took(r, st);
                if (st == 0) {
                    r.values.put("name", new String(buf, 0, (int) len.getValue() - 1, StandardCharsets.UTF_8));
                }
                if (st == 0 || st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL) {
                    r.values.put("len", len.getValue());
                }
                return;
            }
            case "adapters_create": {
                PointerByReference out = new PointerByReference();
                took(r, l.mlora_adapters_create(ptr(a, "model"), out));
                l.mlora_adapters_release(out.getValue());
                return;
            }
            case "adapters_load":
                took(r, l.mlora_adapters_load(ptr(a, "adapters"), rawStr(a.get("path")), rawStr(a.get("name")),
                        flags(a)));
                return;
            case "adapters_names": {
                long cap = num(a, "capacity", 4096);
                byte[] buf = cap > 0 ? new byte[(int) cap] : null;
                MultiloraLibrary.SizeTByReference len = new MultiloraLibrary.SizeTByReference();
                MultiloraLibrary.SizeTByReference count = new MultiloraLibrary.SizeTByReference();
                int st = l.mlora_adapters_names(ptr(a, "adapters"), buf, new MultiloraLibrary.SizeT(cap), len, count);
                took(r, st);
                if (st == 0) {
                    List<Object> names = new ArrayList<>();
                    int start = 0;
                    for (int i = 0; i < (int) len.getValue(); i++) {
                        if (buf[i] == 0) {
                            names.add(new String(buf, start, i - start, StandardCharsets.UTF_8));
                            start = i + 1;
                        }
                    }
                    r.values.put("names", names);
                    r.values.put("count", count.getValue());
                }
                if (st == 0 || st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL) {
                    r.values.put("len", len.getValue());
                }
                return;
            }
            case "run_options_set_active_adapters": {
                List<Object> names = (List<Object>) a.get("names");
                List<byte[]> items = new ArrayList<>();
                for (Object n : names == null ? new ArrayList<Object>() : names) {
                    items.add(n instanceof byte[] ? (byte[]) n : ((String) n).getBytes(StandardCharsets.UTF_8));
                }
                List<Object> keep = new ArrayList<>();
                took(r, l.mlora_run_options_set_active_adapters(ptr(a, "options"), ptr(a, "adapters"),
                        rawStrings(items, keep), weights(a), new MultiloraLibrary.SizeT(items.size())));
                java.lang.ref.Reference.reachabilityFence(keep);
                return;
            }
            case "model_run": {
                Map<String, Object> inputs = (Map<String, Object>) a.get("inputs");
                List<byte[]> names = new ArrayList<>();
                List<Tensor> temps = new ArrayList<>();
                Memory handles = new Memory((long) Native.POINTER_SIZE * Math.max(inputs.size(), 1));
                int i = 0;
                for (Map.Entry<String, Object> e : inputs.entrySet()) {
                    names.add(e.getKey().getBytes(StandardCharsets.UTF_8));
                    Tensor t = tensor((Spec) e.getValue());
                    temps.add(t);
                    handles.setPointer((long) i++ * Native.POINTER_SIZE, t.nativeHandle());
                }
                List<byte[]> outs = new ArrayList<>();
                for (String n : strings(a, "output_names")) {
                    outs.add(n.getBytes(StandardCharsets.UTF_8));
                }
                List<Object> keep = new ArrayList<>();
                Memory slots = new Memory((long) Native.POINTER_SIZE * Math.max(outs.size(), 1));
                slots.clear();
                took(r, l.mlora_model_run(ptr(a, "model"), ptr(a, "options"), rawStrings(names, keep), handles,
                        new MultiloraLibrary.SizeT(names.size()), rawStrings(outs, keep),
                        new MultiloraLibrary.SizeT(outs.size()), slots));
                for (int k = 0; k < Math.max(outs.size(), 1); k++) {
                    l.mlora_tensor_release(slots.getPointer((long) k * Native.POINTER_SIZE));
                }
                for (Tensor t : temps) {
                    t.close();
                }
                java.lang.ref.Reference.reachabilityFence(keep);
                return;
            }
            case "tensor_shape": {
                long cap = num(a, "capacity", 8);
                long[] buf = new long[(int) Math.max(cap, 1)];
                MultiloraLibrary.SizeTByReference nd = new MultiloraLibrary.SizeTByReference();
                int st = l.mlora_tensor_shape(ptr(a, "tensor"), buf, new MultiloraLibrary.SizeT(cap), nd);
                took(r, st);
                if (st == 0 || st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL) {
                    r.values.put("ndim", nd.getValue());
                }
                return;
            }
            case "tensor_dtype": {
                IntByReference d = new IntByReference();
                took(r, l.mlora_tensor_dtype(ptr(a, "tensor"), d));
                if (r.statusName.equals("MLORA_STATUS_OK")) {
                    r.values.put("dtype", (long) d.getValue());
                }
                return;
            }
            case "generator_is_done": {
                IntByReference done = new IntByReference();
                took(r, l.mlora_generator_is_done(ptr(a, "generator"), done));
                if (r.statusName.equals("MLORA_STATUS_OK")) {
                    r.values.put("done", (long) done.getValue());
                }
                return;
            }
            case "generator_get_sequence":
            case "generator_get_next_tokens": {
                long cap = num(a, "capacity", 4096);
                int[] buf = cap > 0 ? new int[(int) cap] : null;
                MultiloraLibrary.SizeTByReference len = new MultiloraLibrary.SizeTByReference();
                MultiloraLibrary.SizeT capacity = new MultiloraLibrary.SizeT(cap);
                int st = call.equals("generator_get_sequence")
                        ? l.mlora_generator_get_sequence(ptr(a, "generator"),
                                new MultiloraLibrary.SizeT(num(a, "index", 0)), buf, capacity, len)
                        : l.mlora_generator_get_next_tokens(ptr(a, "generator"), buf, capacity, len);
                took(r, st);
                if (st == 0) {
                    r.values.put("tokens", tokenList(buf == null ? new int[0] : buf, (int) len.getValue()));
                }
                if (st == 0 || st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL) {
                    r.values.put("len", len.getValue());
                }
                return;
            }
            default:
                throw new IllegalArgumentException("runner has no raw form of call " + call);
        }
    }

    // ---- checking --------------------------------------------------------------------------------------------

    @SuppressWarnings("unchecked")
    private static String check(Map<String, Object> step, Result r, Map<String, Object> tol) {
        Map<String, Object> expect = (Map<String, Object>) step.getOrDefault("expect", new HashMap<>());
        String want = (String) expect.getOrDefault("status", "MLORA_STATUS_OK");
        if (!r.statusName.equals(want)) {
            return "status " + r.statusName + ", expected " + want + " (message: " + r.message + ")";
        }
        if (!r.problems.isEmpty()) {
            return String.join("; ", r.problems);
        }
        if (!want.equals("MLORA_STATUS_OK") && (r.message == null || r.message.isEmpty())) {
            return "failed with an empty message";
        }
        Object msg = expect.get("message");
        List<Object> subs = msg instanceof String ? List.of(msg) : (msg == null ? List.of() : (List<Object>) msg);
        for (Object s : subs) {
            if (!r.message.contains((String) s)) {
                return "message \"" + r.message + "\" lacks \"" + s + "\"";
            }
        }
        Map<String, Object> values = (Map<String, Object>) expect.get("values");
        if (values != null) {
            for (Map.Entry<String, Object> e : values.entrySet()) {
                Object wantValue = valueRef(e.getValue());
                if (!r.values.containsKey(e.getKey())) {
                    return "value " + e.getKey() + " missing";
                }
                if (!same(r.values.get(e.getKey()), wantValue)) {
                    return "value " + e.getKey() + " is " + r.values.get(e.getKey()) + ", expected " + wantValue;
                }
            }
        }
        Map<String, Object> outs = (Map<String, Object>) expect.get("outputs");
        if (outs != null) {
            for (Map.Entry<String, Object> e : outs.entrySet()) {
                Tensor t = r.outputs.get(e.getKey());
                if (t == null) {
                    return "output " + e.getKey() + " missing";
                }
                Map<String, Object> spec = (Map<String, Object>) e.getValue();
                Map<String, Object> ref = (Map<String, Object>) ((Map<String, Object>) reference.get("tensors"))
                        .get((String) spec.get("ref"));
                double atol = tolerance(spec, tol, "atol");
                double rtol = tolerance(spec, tol, "rtol");
                List<Object> refShape = (List<Object>) ref.get("shape");
                long[] shape = t.shape();
                if (shape.length != refShape.size()) {
                    return "output " + e.getKey() + " has the wrong rank";
                }
                for (int i = 0; i < shape.length; i++) {
                    if (shape[i] != ((Number) refShape.get(i)).longValue()) {
                        return "output " + e.getKey() + " has the wrong shape";
                    }
                }
                if (t.dtype() != DType.FLOAT32) {
                    return "output " + e.getKey() + " is not float32";
                }
                float[] got = t.toFloats();
                List<Object> exp = (List<Object>) ref.get("data");
                if (got.length != exp.size()) {
                    return "output " + e.getKey() + " has the wrong size";
                }
                for (int i = 0; i < got.length; i++) {
                    double x = ((Number) exp.get(i)).doubleValue();
                    if (!(Math.abs(got[i] - x) <= atol + rtol * Math.abs(x))) {
                        return "output " + e.getKey() + " element " + i + " is " + got[i] + ", expected " + x;
                    }
                }
            }
        }
        return null;
    }

    private static double tolerance(Map<String, Object> spec, Map<String, Object> tol, String key) {
        if (spec.containsKey(key)) {
            return ((Number) spec.get(key)).doubleValue();
        }
        if (tol != null && tol.containsKey(key)) {
            return ((Number) tol.get(key)).doubleValue();
        }
        return 1e-5;
    }

    @SuppressWarnings("unchecked")
    private static boolean same(Object got, Object want) {
        if (want instanceof List) {
            if (!(got instanceof List)) {
                return false;
            }
            List<Object> g = (List<Object>) got;
            List<Object> w = (List<Object>) want;
            if (g.size() != w.size()) {
                return false;
            }
            for (int i = 0; i < w.size(); i++) {
                if (!same(g.get(i), w.get(i))) {
                    return false;
                }
            }
            return true;
        }
        if (want instanceof Long && got instanceof Long) {
            return want.equals(got);
        }
        if (want instanceof Number && got instanceof Number) {
            return ((Number) want).doubleValue() == ((Number) got).doubleValue();
        }
        return want == null ? got == null : want.equals(got);
    }

    @SuppressWarnings("unchecked")
    private static void bind(Map<String, Object> step, Result r) throws Exception {
        Object o = step.get("out");
        if (o instanceof String && r.statusName.equals("MLORA_STATUS_OK") && r.handle != null) {
            set((String) o, r.handle, true);
            r.handle = null;
        }
        if (o instanceof Map) {
            for (Map.Entry<String, Object> e : ((Map<String, Object>) o).entrySet()) {
                if (r.outputs.containsKey(e.getKey())) {
                    set((String) e.getValue(), r.outputs.remove(e.getKey()), true);
                } else if (r.values.containsKey(e.getKey())) {
                    set((String) e.getValue(), r.values.get(e.getKey()), false);
                }
            }
        }
        if (r.handle instanceof AutoCloseable) {
            ((AutoCloseable) r.handle).close();
        }
        for (Tensor t : r.outputs.values()) {
            t.close();
        }
    }

    private static void set(String name, Object value, boolean isHandle) {
        VARS.put(name, new Var(value, isHandle));
        ORDER.add(name);
    }
}
