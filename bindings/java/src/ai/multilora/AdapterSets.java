package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.util.ArrayList;
import java.util.List;

/**
 * The adapter-set argument conventions shared by {@link RunOptions}, {@link GeneratorParams} and {@link Generator}:
 * one set (names, optional weights, one per name), and one set per row (rows of names, an empty or null row = the
 * base model, and optional weights: one array per row matching its names, flattened row by row into names, weights
 * and one {@code size_t} count per row).
 */
final class AdapterSets {
    /** A {@code mlora_*_set_active_adapters} function of the raw layer. */
    interface SingleCall {
        int call(Pointer receiver, Pointer adapters, Pointer names, float[] weights, MultiloraLibrary.SizeT count);
    }

    /** A {@code mlora_*_set_active_adapters_per_row} function of the raw layer. */
    interface Call {
        int call(Pointer receiver, Pointer adapters, Pointer names, float[] weights, Pointer rowCounts,
                 MultiloraLibrary.SizeT batchSize);
    }

    private AdapterSets() {}

    /** One set for every row: no names (or null) = the base model; weights null = all 1.0. */
    static void set(NativeObject receiver, Adapters adapters, String[] names, float[] weights, SingleCall call) {
        String[] n = names == null ? new String[0] : names;
        if (weights != null && weights.length != n.length) {
            throw new IllegalArgumentException("one weight per name (or no weights)");
        }
        List<Object> keep = new ArrayList<>();
        try {
            Pointer reg = adapters == null ? null : adapters.nativeHandle();
            Pointer arr = Multilora.stringArray(n, "adapter name", keep);
            receiver.checked(p -> call.call(p, reg, arr, weights, Multilora.size(n.length)));
        } finally {
            java.lang.ref.Reference.reachabilityFence(adapters);
            java.lang.ref.Reference.reachabilityFence(keep);
        }
    }

    static void setPerRow(NativeObject receiver, Adapters adapters, String[][] rows, float[][] weights, Call call) {
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
            receiver.checked(p -> call.call(p, reg, arr, flatW, counts, Multilora.size(rows.length)));
        } finally {
            java.lang.ref.Reference.reachabilityFence(adapters);
            java.lang.ref.Reference.reachabilityFence(keep);
            java.lang.ref.Reference.reachabilityFence(counts);
        }
    }
}
