package ai.multilora;

import com.sun.jna.ptr.PointerByReference;

/** Options of an {@link Engine} (defaults: max batch 16, 64 tokens per step, queue 1024, worker on). */
public final class EngineOptions extends NativeObject {
    private boolean worker = true;

    public EngineOptions() {
        super("EngineOptions");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        Multilora.check(l.mlora_engine_options_create(out));
        adopt(out.getValue(), p -> l.mlora_engine_options_release(p));
    }

    /** Rows of the batched KV cache (1..4096). */
    public EngineOptions setMaxBatchSize(long n) {
        checked(p -> Multilora.lib().mlora_engine_options_set_max_batch_size(p, Multilora.size(Math.max(0, n))));
        return this;
    }

    /** Token budget of one step (>= 1). */
    public EngineOptions setMaxTokensPerStep(long n) {
        checked(p -> Multilora.lib().mlora_engine_options_set_max_tokens_per_step(p, Multilora.size(Math.max(0, n))));
        return this;
    }

    /** Requests that may wait for a row before submit fails with MLORA_STATUS_BUSY. */
    public EngineOptions setMaxQueue(long n) {
        checked(p -> Multilora.lib().mlora_engine_options_set_max_queue(p, Multilora.size(Math.max(0, n))));
        return this;
    }

    /** false: no worker thread; the host calls {@link Engine#step()}. */
    public EngineOptions setWorker(boolean enable) {
        checked(p -> Multilora.lib().mlora_engine_options_set_worker(p, enable ? 1 : 0));
        worker = enable;
        return this;
    }

    boolean worker() {
        return worker;
    }
}
