package ai.multilora;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.PointerByReference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/** A tensor: element type, shape and a contiguous row-major buffer owned by the library. */
public final class Tensor extends NativeObject {
    /** Takes ownership of a tensor handle the library returned (e.g. a run output). */
    Tensor(Pointer owned) {
        super("Tensor");
        MultiloraLibrary l = Multilora.lib();
        adopt(owned, p -> l.mlora_tensor_release(p));
    }

    /** Creates a tensor holding a copy of {@code data} (raw bytes of the element type, native byte order). */
    public static Tensor create(int dtype, long[] shape, byte[] data) {
        MultiloraLibrary l = Multilora.lib();
        List<Object> keep = new ArrayList<>();
        Pointer d = Multilora.nativeBytes(data, keep);
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_tensor_create(dtype, shape, Multilora.size(shape.length), d,
                    Multilora.size(data == null ? 0 : data.length), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(keep);
        }
        return new Tensor(out.getValue());
    }

    private static ByteBuffer nativeBuf(int bytes) {
        return ByteBuffer.allocate(bytes).order(ByteOrder.nativeOrder());
    }

    public static Tensor fromFloats(float[] data, long... shape) {
        ByteBuffer b = nativeBuf(data.length * 4);
        b.asFloatBuffer().put(data);
        return create(DType.FLOAT32, shape, b.array());
    }

    public static Tensor fromDoubles(double[] data, long... shape) {
        ByteBuffer b = nativeBuf(data.length * 8);
        b.asDoubleBuffer().put(data);
        return create(DType.FLOAT64, shape, b.array());
    }

    public static Tensor fromLongs(long[] data, long... shape) {
        ByteBuffer b = nativeBuf(data.length * 8);
        b.asLongBuffer().put(data);
        return create(DType.INT64, shape, b.array());
    }

    public static Tensor fromInts(int[] data, long... shape) {
        ByteBuffer b = nativeBuf(data.length * 4);
        b.asIntBuffer().put(data);
        return create(DType.INT32, shape, b.array());
    }

    /** Element type (see {@link DType}). */
    public int dtype() {
        IntByReference d = new IntByReference();
        checked(p -> Multilora.lib().mlora_tensor_dtype(p, d));
        return d.getValue();
    }

    public long[] shape() {
        long[] buf = new long[8];
        while (true) {
            MultiloraLibrary.SizeTByReference nd = new MultiloraLibrary.SizeTByReference();
            long[] b = buf;
            int st = call(p -> Multilora.lib().mlora_tensor_shape(p, b, Multilora.size(b.length), nd));
            int rank = (int) nd.getValue();
            if (st == MultiloraLibrary.MLORA_STATUS_BUFFER_TOO_SMALL && rank > buf.length) {
                buf = new long[rank];
                continue;
            }
            Multilora.check(st);
            long[] s = new long[rank];
            System.arraycopy(buf, 0, s, 0, rank);
            return s;
        }
    }

    /** A copy of the contents as bytes. */
    public byte[] toBytes() {
        PointerByReference data = new PointerByReference();
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        try {
            checked(p -> Multilora.lib().mlora_tensor_data(p, data, n));
            long bytes = n.getValue();
            return bytes == 0 ? new byte[0] : data.getValue().getByteArray(0, (int) bytes);
        } finally {
            fence();
        }
    }

    /** Size of the contents in bytes. */
    public long byteCount() {
        PointerByReference data = new PointerByReference();
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        checked(p -> Multilora.lib().mlora_tensor_data(p, data, n));
        return n.getValue();
    }

    private ByteBuffer contents(int dtype, String name) {
        int d = dtype();
        if (d != dtype) {
            int st = MultiloraLibrary.MLORA_STATUS_TYPE_MISMATCH;
            throw new MultiloraException(st, Multilora.statusName(st), "tensor holds dtype " + d + ", not " + name);
        }
        return ByteBuffer.wrap(toBytes()).order(ByteOrder.nativeOrder());
    }

    public float[] toFloats() {
        ByteBuffer b = contents(DType.FLOAT32, "float32");
        float[] r = new float[b.remaining() / 4];
        b.asFloatBuffer().get(r);
        return r;
    }

    public long[] toLongs() {
        ByteBuffer b = contents(DType.INT64, "int64");
        long[] r = new long[b.remaining() / 8];
        b.asLongBuffer().get(r);
        return r;
    }

    public int[] toInts() {
        ByteBuffer b = contents(DType.INT32, "int32");
        int[] r = new int[b.remaining() / 4];
        b.asIntBuffer().get(r);
        return r;
    }

    @Override
    public String toString() {
        return isClosed() ? "Tensor(closed)" : "Tensor(dtype " + dtype() + ", shape " + java.util.Arrays.toString(shape()) + ")";
    }
}
