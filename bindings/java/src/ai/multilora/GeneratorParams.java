package ai.multilora;

import com.sun.jna.ptr.DoubleByReference;
import com.sun.jna.ptr.PointerByReference;

/** Search options and active adapters for generation. Generators keep their params alive. */
public final class GeneratorParams extends NativeObject {
    public GeneratorParams(Model model) {
        super("GeneratorParams");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_generator_params_create(model.nativeHandle(), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(model);
        }
        adopt(out.getValue(), p -> l.mlora_generator_params_release(p));
    }

    /** Sets a numeric search option ("max_length", "top_k", "top_p", "temperature", ...). */
    public GeneratorParams setSearchOption(String name, double value) {
        byte[] n = Multilora.utf8(name, "name");
        checked(p -> Multilora.lib().mlora_generator_params_set_search_number(p, n, value));
        return this;
    }

    /** Sets a boolean search option ("do_sample"). */
    public GeneratorParams setSearchOption(String name, boolean value) {
        byte[] n = Multilora.utf8(name, "name");
        checked(p -> Multilora.lib().mlora_generator_params_set_search_bool(p, n, value ? 1 : 0));
        return this;
    }

    /** Reads a search option (booleans read as 0.0/1.0). */
    public double getSearchNumber(String name) {
        byte[] n = Multilora.utf8(name, "name");
        DoubleByReference v = new DoubleByReference();
        checked(p -> Multilora.lib().mlora_generator_params_get_search_number(p, n, v));
        return v.getValue();
    }

    /** The adapters generators created from these params start with (no names = base model). */
    public void setActiveAdapters(Adapters adapters, String[] names, float[] weights) {
        AdapterSets.set(this, adapters, names, weights, Multilora.lib()::mlora_generator_params_set_active_adapters);
    }

    /** As {@link #setActiveAdapters(Adapters, String[], float[])} with every weight 1. */
    public void setActiveAdapters(Adapters adapters, String... names) {
        setActiveAdapters(adapters, names, null);
    }

    /** Back to the base model. */
    /** Token ids that end a sequence (kept in it, like eos); an empty array clears them. */
    public GeneratorParams setStopTokens(int... tokens) {
        checked(p -> Multilora.lib().mlora_generator_params_set_stop_tokens(p, tokens, Multilora.size(tokens.length)));
        return this;
    }

    public void clearActiveAdapters() {
        setActiveAdapters(null, new String[0], null);
    }

    /**
     * One adapter set per sequence (an empty row = the base model), generated in one batch, on a model folder prepared
     * with {@code multilora prepare-batching}. weights (null = all 1.0) has one array per row matching its names.
     * rows.length must equal the "batch_size" search option when a Generator is created. Replaces any set given by
     * setActiveAdapters. On failure the params are unchanged.
     */
    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows, float[][] weights) {
        AdapterSets.setPerRow(this, adapters, rows, weights,
                Multilora.lib()::mlora_generator_params_set_active_adapters_per_row);
    }

    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows) {
        setActiveAdaptersPerRow(adapters, rows, null);
    }
}
