package ai.multilora;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.PointerByReference;

/**
 * Continuous batching over one GenAI model folder prepared with {@code multilora prepare-batching}: requests,
 * each with its own adapters and search options, join and leave the batch between decode steps. By default a
 * worker thread owned by the engine steps it; with {@code worker = false} the host calls {@link #step()}. Every
 * method is safe from any thread. {@link #close()} cancels unfinished requests (error status CLOSED).
 */
public final class Engine extends NativeObject {
    private final boolean worker;

    public Engine(Model model) {
        this(model, 16, 64, 1024, true);
    }

    public Engine(Model model, int maxBatchSize, int maxTokensPerStep, int maxQueue, boolean worker) {
        super("Engine");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference o = new PointerByReference();
        Multilora.check(l.mlora_engine_options_create(o));
        Pointer options = o.getValue();
        try {
            Multilora.check(l.mlora_engine_options_set_max_batch_size(options, Multilora.size(Math.max(0, maxBatchSize))));
            Multilora.check(l.mlora_engine_options_set_max_tokens_per_step(options,
                    Multilora.size(Math.max(0, maxTokensPerStep))));
            Multilora.check(l.mlora_engine_options_set_max_queue(options, Multilora.size(Math.max(0, maxQueue))));
            Multilora.check(l.mlora_engine_options_set_worker(options, worker ? 1 : 0));
            PointerByReference out = new PointerByReference();
            try {
                Multilora.check(l.mlora_engine_create(model.nativeHandle(), options, out));
            } finally {
                java.lang.ref.Reference.reachabilityFence(model);
            }
            adopt(out.getValue(), p -> l.mlora_engine_release(p));
        } finally {
            l.mlora_engine_options_release(options);
        }
        this.worker = worker;
    }

    /** An engine with the given options (null = defaults). */
    public Engine(Model model, EngineOptions options) {
        super("Engine");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_engine_create(model.nativeHandle(), options == null ? null : options.nativeHandle(),
                    out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(model);
            java.lang.ref.Reference.reachabilityFence(options);
        }
        adopt(out.getValue(), p -> l.mlora_engine_release(p));
        this.worker = options == null || options.worker();
    }

    /** Queues a prompt with the params' search options, stop tokens and adapters; returns at once. */
    public Request submit(GeneratorParams params, int[] prompt) {
        PointerByReference out = new PointerByReference();
        try {
            checked(p -> Multilora.lib().mlora_engine_submit(p, params.nativeHandle(), prompt,
                    Multilora.size(prompt.length), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(params);
        }
        return new Request(out.getValue(), this);
    }

    /** One step (engines created with worker = false); true while requests are queued or running. */
    public boolean step() {
        IntByReference more = new IntByReference();
        checked(p -> Multilora.lib().mlora_engine_step(p, more));
        return more.getValue() != 0;
    }

    /** Cancels every request (error status CLOSED) and stops the worker; the handle stays until close(). */
    public void shutdown() {
        checked(p -> Multilora.lib().mlora_engine_close(p));
    }

    boolean hasWorker() {
        return worker;
    }
}
