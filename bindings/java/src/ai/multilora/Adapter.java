package ai.multilora;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import java.util.ArrayList;
import java.util.List;

/** An adapter file's contents (parameters and versions); immutable. */
public final class Adapter extends NativeObject {
    Adapter(Pointer owned) {
        super("Adapter");
        MultiloraLibrary l = Multilora.lib();
        adopt(owned, p -> l.mlora_adapter_release(p));
    }

    /** Opens an .onnx_adapter file without a model (mapped, verified, not copied). */
    public static Adapter open(String path) {
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        Multilora.check(l.mlora_adapter_open(Multilora.utf8(path, "path"), out));
        return new Adapter(out.getValue());
    }

    /** Opens an adapter from the bytes of an .onnx_adapter file (copied). */
    public static Adapter openFromMemory(byte[] data) {
        MultiloraLibrary l = Multilora.lib();
        List<Object> keep = new ArrayList<>();
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_adapter_open_from_memory(Multilora.nativeBytes(data, keep),
                    Multilora.size(data.length), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(keep);
        }
        return new Adapter(out.getValue());
    }

    /** Writes an .onnx_adapter file ONNX Runtime can load. */
    public static void write(String path, String[] names, Tensor[] tensors, int adapterVersion, int modelVersion) {
        if (names.length != tensors.length) {
            throw new IllegalArgumentException("one tensor per name");
        }
        MultiloraLibrary l = Multilora.lib();
        List<Object> keep = new ArrayList<>();
        try {
            Pointer[] handles = new Pointer[tensors.length];
            for (int i = 0; i < tensors.length; i++) {
                handles[i] = tensors[i].nativeHandle();
            }
            Multilora.check(l.mlora_adapter_write(Multilora.utf8(path, "path"),
                    Multilora.stringArray(names, "name", keep), Multilora.pointerArray(handles, keep),
                    Multilora.size(names.length), adapterVersion, modelVersion));
        } finally {
            java.lang.ref.Reference.reachabilityFence(tensors);
            java.lang.ref.Reference.reachabilityFence(keep);
        }
    }

    /** LoRA rank: the largest rank among its parameters. */
    public long rank() {
        LongByReference r = new LongByReference();
        checked(p -> Multilora.lib().mlora_adapter_rank(p, r));
        return r.getValue();
    }

    public int parameterCount() {
        MultiloraLibrary.SizeTByReference n = new MultiloraLibrary.SizeTByReference();
        checked(p -> Multilora.lib().mlora_adapter_param_count(p, n));
        return (int) n.getValue();
    }

    public String parameterName(int index) {
        Pointer h = nativeHandle();
        try {
            return Multilora.readString((b, c, l) -> Multilora.lib().mlora_adapter_param_name(h, Multilora.size(index), b, c, l));
        } finally {
            fence();
        }
    }

    /** Parameter number index as a tensor view over the adapter's memory (no copy). */
    public Tensor parameterTensor(int index) {
        PointerByReference out = new PointerByReference();
        checked(p -> Multilora.lib().mlora_adapter_param_tensor(p, Multilora.size(index), out));
        return new Tensor(out.getValue());
    }

    private int[] versions() {
        IntByReference f = new IntByReference();
        IntByReference a = new IntByReference();
        IntByReference m = new IntByReference();
        checked(p -> Multilora.lib().mlora_adapter_versions(p, f, a, m));
        return new int[] {f.getValue(), a.getValue(), m.getValue()};
    }

    public int formatVersion() {
        return versions()[0];
    }

    public int adapterVersion() {
        return versions()[1];
    }

    public int modelVersion() {
        return versions()[2];
    }

    /** Bytes of the file mapping (0 for a buffer). */
    public long bytesMapped() {
        LongByReference m = new LongByReference();
        checked(p -> Multilora.lib().mlora_adapter_bytes(p, m, null));
        return m.getValue();
    }

    /** Bytes the library had to copy (buffers, misaligned parameters). */
    public long bytesCopied() {
        LongByReference c = new LongByReference();
        checked(p -> Multilora.lib().mlora_adapter_bytes(p, null, c));
        return c.getValue();
    }
}
