package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.util.ArrayList;
import java.util.List;

/**
 * The per-row adapter argument convention shared by {@link RunOptions}, {@link GeneratorParams} and
 * {@link Generator}: rows of names (an empty or null row = the base model) and optional weights (one array per row
 * matching its names), flattened row by row into names, weights and one {@code size_t} count per row.
 */
final class PerRowAdapters {
    /** A {@code mlora_*_set_active_adapters_per_row} function of the raw layer. */
    interface Call {
        int call(Pointer receiver, Pointer adapters, Pointer names, float[] weights, Pointer rowCounts,
                 MultiloraLibrary.SizeT batchSize);
    }

    private PerRowAdapters() {}

    static void set(NativeObject receiver, Adapters adapters, String[][] rows, float[][] weights, Call call) {
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
