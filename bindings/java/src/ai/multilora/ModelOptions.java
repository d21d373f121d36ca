package ai.multilora;

import com.sun.jna.ptr.PointerByReference;

/** Options used when creating a model: ONNX Runtime log level, threads, session config entries. */
public final class ModelOptions extends NativeObject {
    public ModelOptions() {
        super("ModelOptions");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        Multilora.check(l.mlora_model_options_create(out));
        adopt(out.getValue(), p -> l.mlora_model_options_release(p));
    }

    /** Severity from which ONNX Runtime messages are printed (0 verbose .. 4 fatal). */
    public ModelOptions setLogLevel(int level) {
        checked(p -> Multilora.lib().mlora_model_options_set_log_level(p, level));
        return this;
    }

    /** Intra-op threads (0 = ONNX Runtime's default). */
    public ModelOptions setIntraOpThreads(int threads) {
        checked(p -> Multilora.lib().mlora_model_options_set_intra_op_threads(p, threads));
        return this;
    }

    /**
     * Slot-table size S of a model prepared for per-row adapters ({@code multilora prepare-batching}): slot 0 is the
     * base model, slots 1..S-1 each hold one composed adapter set, least recently used out. Default 17; 2..4097
     * (MLORA_STATUS_INVALID_ARGUMENT outside). Ignored for models not prepared for batching.
     */
    public ModelOptions setBatchSlots(int slots) {
        if (slots < 0) {
            int st = MultiloraLibrary.MLORA_STATUS_INVALID_ARGUMENT;
            throw new MultiloraException(st, Multilora.statusName(st),
                    "batch_slots " + slots + " is outside 2..4097 (slot 0 is the base model)");
        }
        checked(p -> Multilora.lib().mlora_model_options_set_batch_slots(p, Multilora.size(slots)));
        return this;
    }

    /**
     * Lets a model folder's genai_config.json name files outside the folder (absolute, or with ".."); refused by
     * default (MLORA_STATUS_FORMAT) because a model folder may come from someone else.
     */
    public ModelOptions setAllowExternalPaths(boolean allow) {
        checked(p -> Multilora.lib().mlora_model_options_set_allow_external_paths(p, allow ? 1 : 0));
        return this;
    }

    /**
     * Whether to open the base graph a prepared model names (default true): runs in which no row has an adapter go
     * to it (see mlora_model_options_set_base_graph and {@link Model#sessionRuns()}).
     */
    public ModelOptions setBaseGraph(boolean use) {
        checked(p -> Multilora.lib().mlora_model_options_set_base_graph(p, use ? 1 : 0));
        return this;
    }

    /** Adds an ONNX Runtime session configuration entry. */
    public ModelOptions setConfigEntry(String key, String value) {
        byte[] k = Multilora.utf8(key, "key");
        byte[] v = Multilora.utf8(value, "value");
        checked(p -> Multilora.lib().mlora_model_options_set_config_entry(p, k, v));
        return this;
    }
}
