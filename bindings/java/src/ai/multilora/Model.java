package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** A loaded LoRA-enabled base model (an .onnx file or a GenAI model folder). */
public final class Model extends NativeObject {
    private final String path;

    public Model(String path) {
        this(path, null);
    }

    public Model(String path, ModelOptions options) {
        super("Model");
        this.path = path;
        MultiloraLibrary l = Multilora.lib();
        byte[] p = Multilora.utf8(path, "path");
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_model_create(p, options == null ? null : options.nativeHandle(), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(options);
        }
        adopt(out.getValue(), h -> l.mlora_model_release(h));
    }

    @Override
    public String toString() {
        return "Model(" + path + (isClosed() ? ", closed)" : ")");
    }

    private interface CountFn {
        int call(Pointer model, MultiloraLibrary.SizeTByReference out);
    }

    private int count(CountFn f) {
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        checked(p -> f.call(p, n));
        return (int) n.getValue();
    }

    public int inputCount() {
        return count(Multilora.lib()::mlora_model_input_count);
    }

    public int outputCount() {
        return count(Multilora.lib()::mlora_model_output_count);
    }

    public int loraCount() {
        return count(Multilora.lib()::mlora_model_lora_count);
    }

    public String inputName(int index) {
        Pointer p = nativeHandle();
        try {
            return Multilora.readString((b, c, l) -> Multilora.lib().mlora_model_input_name(p, Multilora.size(index), b, c, l));
        } finally {
            fence();
        }
    }

    public String outputName(int index) {
        Pointer p = nativeHandle();
        try {
            return Multilora.readString((b, c, l) -> Multilora.lib().mlora_model_output_name(p, Multilora.size(index), b, c, l));
        } finally {
            fence();
        }
    }

    public String loraName(int index) {
        Pointer p = nativeHandle();
        try {
            return Multilora.readString((b, c, l) -> Multilora.lib().mlora_model_lora_name(p, Multilora.size(index), b, c, l));
        } finally {
            fence();
        }
    }

    /**
     * The model's version as adapters record it: a stable, non-zero fingerprint of its LoRA input signature.
     * Adapters with a non-zero model_version must carry it (see {@link Multilora#LOAD_IGNORE_MODEL_VERSION}).
     */
    public int version() {
        IntByReference v = new IntByReference();
        checked(p -> Multilora.lib().mlora_model_version(p, v));
        return v.getValue();
    }

    /** The slot table for per-row adapters (slots 0 when the model is not prepared for batching). */
    public BatchSlots batchSlots() {
        MultiloraLibrary.SizeTByReference slots = new MultiloraLibrary.SizeTByReference();
        MultiloraLibrary.SizeTByReference resident = new MultiloraLibrary.SizeTByReference();
        checked(p -> Multilora.lib().mlora_model_batch_slots(p, slots, resident));
        return new BatchSlots((int) slots.getValue(), (int) resident.getValue());
    }

    /** Hits, misses and evictions of the slot table since the model was created. */
    public BatchSlotStats batchSlotStats() {
        LongByReference hits = new LongByReference();
        LongByReference misses = new LongByReference();
        LongByReference evictions = new LongByReference();
        checked(p -> Multilora.lib().mlora_model_batch_slot_stats(p, hits, misses, evictions));
        return new BatchSlotStats(hits.getValue(), misses.getValue(), evictions.getValue());
    }

    /** Runs on the LoRA graph's session and on the base graph's since the model was created. */
    public SessionRuns sessionRuns() {
        LongByReference lora = new LongByReference();
        LongByReference base = new LongByReference();
        checked(p -> Multilora.lib().mlora_model_session_runs(p, lora, base));
        return new SessionRuns(lora.getValue(), base.getValue());
    }

    public String[] inputNames() {
        String[] r = new String[inputCount()];
        for (int i = 0; i < r.length; i++) {
            r[i] = inputName(i);
        }
        return r;
    }

    public String[] outputNames() {
        String[] r = new String[outputCount()];
        for (int i = 0; i < r.length; i++) {
            r[i] = outputName(i);
        }
        return r;
    }

    public String[] loraNames() {
        String[] r = new String[loraCount()];
        for (int i = 0; i < r.length; i++) {
            r[i] = loraName(i);
        }
        return r;
    }

    private interface InfoFn {
        int call(Pointer m, MultiloraLibrary.SizeT i, IntByReference dt, long[] shape, MultiloraLibrary.SizeT cap,
                 MultiloraLibrary.SizeTByReference nd);
    }

    private TensorInfo info(InfoFn f, int index, String name) {
        long[] shape = new long[8];
        while (true) {
            IntByReference dt = new IntByReference();
            MultiloraLibrary.SizeTByReference nd = new MultiloraLibrary.SizeTByReference();
            long[] buf = shape;
            int st = call(p -> f.call(p, Multilora.size(index), dt, buf, Multilora.size(buf.length), nd));
            int rank = (int) nd.getValue();
            if (st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL && rank > shape.length) {
                shape = new long[rank];
                continue;
            }
            Multilora.check(st);
            long[] s = new long[rank];
            System.arraycopy(shape, 0, s, 0, rank);
            return new TensorInfo(name, dt.getValue(), s);
        }
    }

    public TensorInfo inputInfo(int index) {
        return info(Multilora.lib()::mlora_model_input_info, index, inputName(index));
    }

    public TensorInfo outputInfo(int index) {
        return info(Multilora.lib()::mlora_model_output_info, index, outputName(index));
    }

    public LoraInputInfo loraInfo(int index) {
        String name = loraName(index);
        IntByReference dt = new IntByReference();
        IntByReference axis = new IntByReference();
        LongByReference d0 = new LongByReference();
        LongByReference d1 = new LongByReference();
        checked(p -> Multilora.lib().mlora_model_lora_info(p, Multilora.size(index), dt, d0, d1, axis));
        return new LoraInputInfo(name, dt.getValue(), d0.getValue(), d1.getValue(), axis.getValue());
    }

    /**
     * Runs the model once. {@code options} may be null (base model). With no output names every output is
     * returned, in model order. The caller owns (and should close) the returned tensors.
     */
    public Tensor[] run(RunOptions options, Map<String, Tensor> inputs, String... outputNames) {
        String[] names = new String[inputs.size()];
        Tensor[] tensors = new Tensor[inputs.size()];
        int i = 0;
        for (Map.Entry<String, Tensor> e : inputs.entrySet()) {
            names[i] = e.getKey();
            tensors[i] = e.getValue();
            i++;
        }
        return run(options, names, tensors, outputNames);
    }

    /** Runs the model once with parallel arrays of input names and tensors. */
    public Tensor[] run(RunOptions options, String[] inputNames, Tensor[] inputs, String[] outputNames) {
        if (inputNames.length != inputs.length) {
            throw new IllegalArgumentException("one tensor per input name");
        }
        String[] outs = outputNames == null ? new String[0] : outputNames;
        List<Object> keep = new ArrayList<>();
        try {
            Pointer[] handles = new Pointer[inputs.length];
            for (int i = 0; i < inputs.length; i++) {
                handles[i] = inputs[i].nativeHandle();
            }
            Pointer in = Multilora.pointerArray(handles, keep);
            Pointer inNames = Multilora.stringArray(inputNames, "input name", keep);
            Pointer outNames = Multilora.stringArray(outs, "output name", keep);
            Pointer opts = options == null ? null : options.nativeHandle();
            int slots = outs.length > 0 ? outs.length : outputCount();
            Memory results = new Memory((long) Native.POINTER_SIZE * Math.max(slots, 1));
            results.clear();
            checked(m -> Multilora.lib().mlora_model_run(m, opts, inNames, in, Multilora.size(inputs.length), outNames,
                    Multilora.size(outs.length), results));
            Tensor[] r = new Tensor[slots];
            for (int i = 0; i < slots; i++) {
                r[i] = new Tensor(results.getPointer((long) i * Native.POINTER_SIZE));
            }
            return r;
        } finally {
            java.lang.ref.Reference.reachabilityFence(inputs);
            java.lang.ref.Reference.reachabilityFence(options);
            java.lang.ref.Reference.reachabilityFence(keep);
        }
    }
}
