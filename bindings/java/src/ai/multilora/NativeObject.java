package ai.multilora;

import com.sun.jna.Pointer;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.function.Consumer;

/**
 * Base of the idiomatic classes: owns one native handle; {@link #close()} releases it (twice is harmless); a
 * {@link Cleaner} releases it if the object is collected unclosed (a safety net only). Each call keeps the object
 * reachable until the native call returns ({@link Reference#reachabilityFence}), so the Cleaner cannot release a
 * handle in use. close() must not race with calls on the same object from other threads.
 */
public abstract class NativeObject implements AutoCloseable {
    /** The releasable state, kept apart from the object so the Cleaner does not keep the object alive. */
    private static final class State implements Runnable {
        private volatile Pointer ptr;
        private final Consumer<Pointer> release;

        State(Pointer ptr, Consumer<Pointer> release) {
            this.ptr = ptr;
            this.release = release;
        }

        @Override
        public synchronized void run() {
            Pointer p = ptr;
            ptr = null;
            if (p != null) {
                release.accept(p);
            }
        }
    }

    private final String what;
    private State state;
    private Cleaner.Cleanable cleanable;

    protected NativeObject(String what) {
        this.what = what;
    }

    /** Takes ownership of a handle the library returned. */
    protected final void adopt(Pointer owned, Consumer<Pointer> release) {
        state = new State(owned, release);
        cleanable = Multilora.CLEANER.register(this, state);
    }

    /** The native handle, for use with the raw {@link MultiloraLibrary}; throws INVALID_HANDLE once closed. */
    public final Pointer nativeHandle() {
        Pointer p = state == null ? null : state.ptr;
        if (p == null) {
            throw Multilora.closed(what);
        }
        return p;
    }

    /** Whether {@link #close()} has been called. */
    public final boolean isClosed() {
        return state == null || state.ptr == null;
    }

    /** Runs a native call with this object's handle, keeping the object reachable meanwhile. */
    protected final int call(java.util.function.ToIntFunction<Pointer> f) {
        try {
            return f.applyAsInt(nativeHandle());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** As {@link #call} and checks the status. */
    protected final void checked(java.util.function.ToIntFunction<Pointer> f) {
        Multilora.check(call(f));
    }

    /** Keeps this object reachable up to here (after a native call that used its handle). */
    protected final void fence() {
        Reference.reachabilityFence(this);
    }

    @Override
    public final void close() {
        if (cleanable != null) {
            cleanable.clean();
        }
    }

    protected final String what() {
        return what;
    }
}
