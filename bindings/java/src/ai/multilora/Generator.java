package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.PointerByReference;

/** A generation in progress. Used by one thread at a time. */
public final class Generator extends NativeObject {
    public Generator(Model model, GeneratorParams params) {
        super("Generator");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_generator_create(model.nativeHandle(), params.nativeHandle(), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(model);
            java.lang.ref.Reference.reachabilityFence(params);
        }
        adopt(out.getValue(), p -> l.mlora_generator_release(p));
    }

    /** Appends prompt tokens (batch size 1) and runs the prompt pass. */
    public void appendTokens(int[] tokens) {
        checked(p -> Multilora.lib().mlora_generator_append_tokens(p, tokens, Multilora.size(tokens.length)));
    }

    /** Appends one prompt per sequence of the batch. */
    public void appendTokenSequences(int[][] prompts) {
        int total = 0;
        for (int[] p : prompts) {
            total += p.length;
        }
        int[] flat = new int[total];
        Memory lengths = new Memory((long) Native.SIZE_T_SIZE * Math.max(prompts.length, 1));
        int off = 0;
        for (int i = 0; i < prompts.length; i++) {
            System.arraycopy(prompts[i], 0, flat, off, prompts[i].length);
            off += prompts[i].length;
            if (Native.SIZE_T_SIZE == 8) {
                lengths.setLong((long) i * 8, prompts[i].length);
            } else {
                lengths.setInt((long) i * 4, prompts[i].length);
            }
        }
        try {
            checked(p -> Multilora.lib().mlora_generator_append_token_sequences(p, flat, lengths,
                    Multilora.size(prompts.length)));
        } finally {
            java.lang.ref.Reference.reachabilityFence(lengths);
        }
    }

    public void generateNextToken() {
        checked(p -> Multilora.lib().mlora_generator_generate_next_token(p));
    }

    /** Keeps the first {@code newLength} tokens (batch size 1), as onnxruntime-genai's rewindTo; 0 starts over. */
    public void rewindTo(long newLength) {
        if (newLength < 0) throw new IllegalArgumentException("newLength is negative");
        checked(p -> Multilora.lib().mlora_generator_rewind_to(p, new MultiloraLibrary.SizeT(newLength)));
    }

    public boolean isDone() {
        IntByReference d = new IntByReference();
        checked(p -> Multilora.lib().mlora_generator_is_done(p, d));
        return d.getValue() != 0;
    }

    public int batchSize() {
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        checked(p -> Multilora.lib().mlora_generator_batch_size(p, n));
        return (int) n.getValue();
    }

    private interface TokensFn {
        int call(Pointer g, int[] buf, MultiloraLibrary.SizeT cap, MultiloraLibrary.SizeTByReference len);
    }

    private int[] readTokens(TokensFn f) {
        int[] buf = new int[64];
        while (true) {
            MultiloraLibrary.SizeTByReference len = new MultiloraLibrary.SizeTByReference();
            int[] b = buf;
            int st = call(p -> f.call(p, b, Multilora.size(b.length), len));
            int n = (int) len.getValue();
            if (st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL && n > buf.length) {
                buf = new int[n];
                continue;
            }
            Multilora.check(st);
            int[] r = new int[n];
            System.arraycopy(buf, 0, r, 0, n);
            return r;
        }
    }

    /** Tokens of one sequence (prompt then generated). */
    public int[] getSequence(int index) {
        return readTokens((g, b, c, l) -> Multilora.lib().mlora_generator_get_sequence(g, Multilora.size(index), b, c, l));
    }

    /** The token each sequence got in the last step. */
    public int[] getNextTokens() {
        return readTokens(Multilora.lib()::mlora_generator_get_next_tokens);
    }

    /** The logits the next generateNextToken chooses from, float32 [batch, vocab] (a copy); as onnxruntime-genai, runs the pending pass after a step. */
    public Tensor getLogits() {
        PointerByReference out = new PointerByReference();
        checked(p -> Multilora.lib().mlora_generator_get_logits(p, out));
        return new Tensor(out.getValue());
    }

    /** Switches the active adapter set between steps (no names = base model). */
    public void setActiveAdapters(Adapters adapters, String[] names, float[] weights) {
        AdapterSets.set(this, adapters, names, weights, Multilora.lib()::mlora_generator_set_active_adapters);
    }

    /** As {@link #setActiveAdapters(Adapters, String[], float[])} with every weight 1. */
    public void setActiveAdapters(Adapters adapters, String... names) {
        setActiveAdapters(adapters, names, null);
    }

    /** Back to the base model. */
    public void clearActiveAdapters() {
        setActiveAdapters(null, new String[0], null);
    }

    /**
     * Switches to one adapter set per sequence between steps (see
     * {@link GeneratorParams#setActiveAdaptersPerRow(Adapters, String[][], float[][])}); rows.length must equal the
     * batch size. Tokens already processed keep the KV cache computed with the previous sets.
     */
    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows, float[][] weights) {
        AdapterSets.setPerRow(this, adapters, rows, weights,
                Multilora.lib()::mlora_generator_set_active_adapters_per_row);
    }

    public void setActiveAdaptersPerRow(Adapters adapters, String[][] rows) {
        setActiveAdaptersPerRow(adapters, rows, null);
    }
}
