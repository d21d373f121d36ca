package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.util.ArrayList;
import java.util.List;

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
        String[] n = names == null ? new String[0] : names;
        if (weights != null && weights.length != n.length) {
            throw new IllegalArgumentException("one weight per name (or no weights)");
        }
        List<Object> keep = new ArrayList<>();
        try {
            Pointer reg = adapters == null ? null : adapters.nativeHandle();
            Pointer arr = Multilora.stringArray(n, "adapter name", keep);
            checked(p -> Multilora.lib().mlora_run_options_set_active_adapters(p, reg, arr, weights,
                    Multilora.size(n.length)));
        } finally {
            java.lang.ref.Reference.reachabilityFence(adapters);
            java.lang.ref.Reference.reachabilityFence(keep);
        }
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
        if (rows == null) {
            throw new IllegalArgumentException("rows is null");
        }
        if (weights != null && weights.length != rows.length) {
            throw new IllegalArgumentException("one weight array per row (or no weights)");
        }
        List<String> flat = new ArrayList<>();
        List<Float> flatWeights = new ArrayList<>();
        Memory counts = new Memory((long) Native.SIZE_T_SIZE * Math.max(rows.length, 1));
        for (int i = 0; i < rows.length; i++) {
            String[] row = rows[i] == null ? new String[0] : rows[i];
            float[] w = weights == null ? null : (weights[i] == null ? new float[0] : weights[i]);
            if (w != null && w.length != row.length) {
                throw new IllegalArgumentException("row " + i + ": one weight per name");
            }
            for (String name : row) {
                flat.add(name);
            }
            if (w != null) {
                for (float x : w) {
                    flatWeights.add(x);
                }
            }
            if (Native.SIZE_T_SIZE == 8) {
                counts.setLong((long) i * 8, row.length);
            } else {
                counts.setInt((long) i * 4, row.length);
            }
        }
        float[] fw = null;
        if (weights != null) {
            fw = new float[flatWeights.size()];
            for (int i = 0; i < fw.length; i++) {
                fw[i] = flatWeights.get(i);
            }
        }
        final float[] flatW = fw;
        List<Object> keep = new ArrayList<>();
        try {
            Pointer reg = adapters == null ? null : adapters.nativeHandle();
            Pointer arr = Multilora.stringArray(flat.toArray(new String[0]), "adapter name", keep);
            checked(p -> Multilora.lib().mlora_run_options_set_active_adapters_per_row(p, reg, arr, flatW, counts,
                    Multilora.size(rows.length)));
        } finally {
            java.lang.ref.Reference.reachabilityFence(adapters);
            java.lang.ref.Reference.reachabilityFence(keep);
            java.lang.ref.Reference.reachabilityFence(counts);
        }
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
