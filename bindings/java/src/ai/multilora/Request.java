package ai.multilora;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.DoubleByReference;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.LongByReference;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * A submitted request. Iterate it for its new token ids (blocking; for an engine without a worker the iteration
 * steps the engine). Every method is safe from any thread. {@link #close()} releases it (cancelling it if
 * unfinished).
 */
public final class Request extends NativeObject implements Iterable<Integer> {
    private final Engine engine;

    Request(Pointer handle, Engine engine) {
        super("Request");
        this.engine = engine;
        adopt(handle, p -> Multilora.lib().mlora_request_release(p));
    }

    /**
     * Appends new token ids to {@code out}: waits up to timeoutMs (0 = poll, negative = until a token or the end).
     * Returns false once the request finished and every token was read.
     */
    public boolean read(List<Integer> out, int timeoutMs) {
        int[] buf = new int[256];
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        IntByReference done = new IntByReference();
        checked(p -> Multilora.lib().mlora_request_read(p, buf, Multilora.size(buf.length), timeoutMs, n, done));
        for (int i = 0; i < (int) n.getValue(); i++) {
            out.add(buf[i]);
        }
        return done.getValue() == 0;
    }

    /** True if this call cancelled it; false if it had finished or was cancelled already. */
    public boolean cancel() {
        IntByReference c = new IntByReference();
        checked(p -> Multilora.lib().mlora_request_cancel(p, c));
        return c.getValue() != 0;
    }

    public FinishReason finishReason() {
        IntByReference r = new IntByReference();
        checked(p -> Multilora.lib().mlora_request_finish_reason(p, r));
        return FinishReason.of(r.getValue());
    }

    public boolean isDone() {
        return finishReason() != FinishReason.NONE;
    }

    public RequestUsage usage() {
        LongByReference prompt = new LongByReference();
        LongByReference generated = new LongByReference();
        DoubleByReference queue = new DoubleByReference();
        DoubleByReference ttft = new DoubleByReference();
        checked(p -> Multilora.lib().mlora_request_usage(p, prompt, generated, queue, ttft));
        return new RequestUsage(prompt.getValue(), generated.getValue(), queue.getValue(), ttft.getValue());
    }

    /** The error of a failed request (CLOSED when the engine closed under it); null otherwise. */
    public MultiloraException error() {
        IntByReference status = new IntByReference();
        String message = Multilora.readString((buf, cap, len) -> call(
                p -> Multilora.lib().mlora_request_error(p, status, buf, cap, len)));
        int st = status.getValue();
        return st == 0 ? null : new MultiloraException(st, Multilora.statusName(st), message);
    }

    /** Every token not read yet, blocking until the request finishes. */
    public int[] readAll() {
        List<Integer> all = new ArrayList<>();
        for (int t : this) {
            all.add(t);
        }
        int[] out = new int[all.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = all.get(i);
        }
        return out;
    }

    @Override
    public Iterator<Integer> iterator() {
        return new Iterator<Integer>() {
            private final List<Integer> chunk = new ArrayList<>();
            private int pos;
            private boolean more = true;

            @Override
            public boolean hasNext() {
                while (pos >= chunk.size() && more) {
                    chunk.clear();
                    pos = 0;
                    if (engine.hasWorker()) {
                        more = read(chunk, -1);
                    } else {
                        more = read(chunk, 0);
                        if (chunk.isEmpty() && more) {
                            engine.step();
                        }
                    }
                }
                return pos < chunk.size();
            }

            @Override
            public Integer next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                return chunk.get(pos++);
            }
        };
    }
}
