package ai.multilora;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetEncoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Library-wide calls and the helpers the idiomatic classes share (hand-written over the generated
 * {@link MultiloraLibrary}).
 *
 * <p>Rules every wrapper follows (docs/conventions.md §4): each native call's status is checked at once and, on
 * failure, the thread's last error is read immediately on the same thread and thrown as {@link MultiloraException};
 * the first use loads the library and compares {@code mlora_abi_version()} with the version the raw layer was
 * generated from, refusing a mismatch with a message naming both numbers; using a closed object throws
 * MultiloraException with MLORA_STATUS_INVALID_HANDLE (the status the C ABI gives for a released handle);
 * {@link Cleaner} releases handles only as a safety net — close objects (try-with-resources).
 */
public final class Multilora {
    /** Load flags for {@link Adapters#load}. */
    public static final int LOAD_DEFAULT = MultiloraLibrary.MLORA_LOAD_DEFAULT;
    public static final int LOAD_REPLACE = MultiloraLibrary.MLORA_LOAD_REPLACE;
    public static final int LOAD_IGNORE_MODEL_VERSION = MultiloraLibrary.MLORA_LOAD_IGNORE_MODEL_VERSION;
    /** Read the file into private memory instead of mapping it (files that may change under a running process). */
    public static final int LOAD_COPY = MultiloraLibrary.MLORA_LOAD_COPY;

    static final Cleaner CLEANER = Cleaner.create();

    private static volatile MultiloraLibrary lib;
    private static MultiloraException abiError;

    private Multilora() {}

    /** The raw layer, loaded and ABI-checked on first use. */
    public static MultiloraLibrary lib() {
        MultiloraLibrary l = lib;
        if (l == null) {
            synchronized (Multilora.class) {
                if (lib == null) {
                    MultiloraLibrary loaded = MultiloraLibrary.load();
                    try {
                        checkAbiVersion(loaded, MultiloraLibrary.GENERATED_ABI_VERSION);
                    } catch (MultiloraException e) {
                        abiError = e;
                    }
                    lib = loaded;
                }
                l = lib;
            }
        }
        if (abiError != null) {
            throw abiError;
        }
        return l;
    }

    /** The raw layer without the ABI check (to report versions even on a mismatch). */
    static MultiloraLibrary rawLib() {
        try {
            return lib();
        } catch (MultiloraException e) {
            return lib;
        }
    }

    /**
     * Compares the library's ABI version with {@code expected}; throws MultiloraException
     * (MLORA_STATUS_VERSION_MISMATCH) naming both numbers when they differ.
     */
    public static void checkAbiVersion(int expected) {
        checkAbiVersion(rawLib(), expected);
    }

    private static void checkAbiVersion(MultiloraLibrary l, int expected) {
        int actual = l.mlora_abi_version();
        if (actual != expected) {
            int st = MultiloraLibrary.MLORA_STATUS_VERSION_MISMATCH;
            throw new MultiloraException(st, decode(l.mlora_status_name(st)), "multilora ABI mismatch: the native "
                    + "library has ABI version " + actual + ", these Java bindings were generated for ABI version "
                    + expected);
        }
    }

    /** The native library's version, e.g. "0.1.0". */
    public static String version() {
        return decode(lib().mlora_version_string());
    }

    /** The ABI version of the loaded native library. */
    public static int abiVersion() {
        return rawLib().mlora_abi_version();
    }

    /** Symbolic name of a status value. */
    public static String statusName(int status) {
        return decode(rawLib().mlora_status_name(status));
    }

    /** Name of an element type ("float32", ..., "bfloat16"); "unknown" for a value that is no {@link DType}. */
    public static String dtypeName(int dtype) {
        return decode(rawLib().mlora_dtype_name(dtype));
    }

    /** Bytes per element of an element type; MLORA_STATUS_INVALID_ARGUMENT for an unknown one. */
    public static int dtypeSize(int dtype) {
        MultiloraLibrary.SizeTByReference size = new MultiloraLibrary.SizeTByReference();
        check(lib().mlora_dtype_size(dtype, size));
        return (int) size.getValue();
    }

    /** Sets the libonnxruntime to load; only before the first model is created. */
    public static void setOrtLibraryPath(String path) {
        check(lib().mlora_set_ort_library_path(utf8(path, "path")));
    }

    /**
     * How ONNX Runtime's intra-op threads are shared by every model of the process; only before the first model.
     * intraOpThreads: -1 = a pool per session, 0 = one global pool of ONNX Runtime's default size (default), n = one
     * global pool of n threads. See mlora_set_global_threads.
     */
    public static void setGlobalThreads(int intraOpThreads, boolean allowSpinning) {
        check(lib().mlora_set_global_threads(intraOpThreads, allowSpinning ? 1 : 0));
    }

    // ---- helpers shared by the wrappers ------------------------------------------------------------------------

    /** Throws for a non-OK status, reading the last error at once on this thread. */
    static void check(int status) {
        if (status == MultiloraLibrary.MLORA_STATUS_OK) {
            return;
        }
        MultiloraLibrary l = rawLib();
        String message = decode(l.mlora_last_error_message());
        throw new MultiloraException(status, decode(l.mlora_status_name(status)), message);
    }

    static MultiloraException closed(String what) {
        int st = MultiloraLibrary.MLORA_STATUS_INVALID_HANDLE;
        return new MultiloraException(st, statusName(st), what + " is closed (its handle is released)");
    }

    /**
     * UTF-8 bytes of s plus a NUL. A string that is not valid UTF-16 (lone surrogate) gives
     * MLORA_STATUS_INVALID_ARGUMENT, as invalid UTF-8 would in C.
     */
    static byte[] utf8(String s, String what) {
        if (s == null) {
            throw new NullPointerException(what);
        }
        CharsetEncoder enc = StandardCharsets.UTF_8.newEncoder()
                .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        try {
            ByteBuffer b = enc.encode(CharBuffer.wrap(s));
            byte[] z = new byte[b.remaining() + 1];
            b.get(z, 0, z.length - 1);
            return z;
        } catch (CharacterCodingException e) {
            int st = MultiloraLibrary.MLORA_STATUS_INVALID_ARGUMENT;
            throw new MultiloraException(st, statusName(st), what + " is not valid Unicode: " + e);
        }
    }

    /** Decodes a borrowed NUL-terminated UTF-8 string. */
    static String decode(Pointer p) {
        return p == null ? null : p.getString(0, "UTF-8");
    }

    /** Decodes len bytes of buf, dropping the terminating NUL. */
    static String decode(byte[] buf, long len) {
        int n = (int) len;
        if (n > 0 && buf[n - 1] == 0) {
            n--;
        }
        return new String(buf, 0, n, StandardCharsets.UTF_8);
    }

    /** A (buf, capacity, out_len) call. */
    interface BufferCall {
        int call(byte[] buf, MultiloraLibrary.SizeT capacity, MultiloraLibrary.SizeTByReference outLen);
    }

    /** Calls a buffer function, growing the buffer on BUFFER_TOO_SMALL; returns the out_len bytes written. */
    static byte[] readBuffer(BufferCall call) {
        byte[] buf = new byte[64];
        while (true) {
            MultiloraLibrary.SizeTByReference len = new MultiloraLibrary.SizeTByReference();
            int st = call.call(buf, new MultiloraLibrary.SizeT(buf.length), len);
            long need = len.getValue();
            if (st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL && need > buf.length) {
                buf = new byte[(int) need];
                continue;
            }
            check(st);
            byte[] out = new byte[(int) need];
            System.arraycopy(buf, 0, out, 0, out.length);
            return out;
        }
    }

    static String readString(BufferCall call) {
        byte[] b = readBuffer(call);
        return decode(b, b.length);
    }

    static MultiloraLibrary.SizeT size(long n) {
        return new MultiloraLibrary.SizeT(n);
    }

    /**
     * Native array of pointers to NUL-terminated strings for a {@code const char* const*} parameter (null for
     * none). The strings live in {@code keep}, which the caller holds until the call returns.
     */
    static Pointer stringArray(byte[][] nulTerminated, List<Object> keep) {
        if (nulTerminated.length == 0) {
            return null;
        }
        int total = 0;
        for (byte[] s : nulTerminated) {
            total += s.length;
        }
        Memory blob = new Memory(Math.max(total, 1));
        Memory ptrs = new Memory((long) Native.POINTER_SIZE * nulTerminated.length);
        long off = 0;
        for (int i = 0; i < nulTerminated.length; i++) {
            blob.write(off, nulTerminated[i], 0, nulTerminated[i].length);
            ptrs.setPointer((long) i * Native.POINTER_SIZE, blob.share(off));
            off += nulTerminated[i].length;
        }
        keep.add(blob);
        keep.add(ptrs);
        return ptrs;
    }

    static Pointer stringArray(String[] strings, String what, List<Object> keep) {
        byte[][] b = new byte[strings == null ? 0 : strings.length][];
        for (int i = 0; i < b.length; i++) {
            b[i] = utf8(strings[i], what);
        }
        return stringArray(b, keep);
    }

    /** Native array of pointers (handles) for a {@code const T* const*} parameter. */
    static Pointer pointerArray(Pointer[] ptrs, List<Object> keep) {
        if (ptrs.length == 0) {
            return null;
        }
        Memory m = new Memory((long) Native.POINTER_SIZE * ptrs.length);
        for (int i = 0; i < ptrs.length; i++) {
            m.setPointer((long) i * Native.POINTER_SIZE, ptrs[i]);
        }
        keep.add(m);
        return m;
    }

    /** A copy of bytes in native memory (null for none). */
    static Pointer nativeBytes(byte[] data, List<Object> keep) {
        if (data == null || data.length == 0) {
            return null;
        }
        Memory m = new Memory(data.length);
        m.write(0, data, 0, data.length);
        keep.add(m);
        return m;
    }
}
