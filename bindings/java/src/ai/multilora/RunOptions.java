package ai.multilora;

import com.sun.jna.ptr.PointerByReference;

/** Per-run settings: the active adapter set (empty = base model). */
public final class RunOptions extends NativeObject {
    public RunOptions() {
        super("RunOptions");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        Multilora.check(l.mlora_run_options_create(out));
        adopt(out.getValue(), p -> l.mlora_run_options_release(p));
    }

    /**
     * Activates adapters of a registry by name with optional weights (null = all 1.0); several apply their weighted
     * sum exactly. No names means the base model. On failure the options are unchanged.
     */
    public void setActiveAdapters(Adapters adapters, String[] names, float[] weights) {
        AdapterSets.set(this, adapters, names, weights, Multilora.lib()::mlora_run_options_set_active_adapters);
    }

    public void setActiveAdapters(Adapters adapters, String... names) {
        setActiveAdapters(adapters, names, null);
    }

    /** Back to the base model. */
    public void clearActiveAdapters() {
        setActiveAdapters(null, new String[0], null);
    }

    /**
     * One adapter set per batch row (an empty row = the base model), served by one Run, on a model prepared with
     * {@code multilora prepare-batching}. weights (null = all 1.0) has one array per row matching its names. Every run
     * with these options must have rows.length rows. On failure the options are unchanged.
     */
    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows, float[][] weights) {
        AdapterSets.setPerRow(this, adapters, rows, weights,
                Multilora.lib()::mlora_run_options_set_active_adapters_per_row);
    }

    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows) {
        setActiveAdaptersPerRow(adapters, rows, null);
    }

    /** Number of adapters in the active set. */
    public int activeCount() {
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        checked(p -> Multilora.lib().mlora_run_options_active_count(p, n));
        return (int) n.getValue();
    }
}
