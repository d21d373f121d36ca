package ai.multilora;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** A registry of named adapters validated against one model. It keeps the model alive. */
public final class Adapters extends NativeObject {
    public Adapters(Model model) {
        super("Adapters");
        MultiloraLibrary l = Multilora.lib();
        PointerByReference out = new PointerByReference();
        try {
            Multilora.check(l.mlora_adapters_create(model.nativeHandle(), out));
        } finally {
            java.lang.ref.Reference.reachabilityFence(model);
        }
        adopt(out.getValue(), p -> l.mlora_adapters_release(p));
    }

    /** Loads an .onnx_adapter file under a name (ALREADY_EXISTS unless flags has {@link Multilora#LOAD_REPLACE}). */
    public void load(String path, String name, int flags) {
        byte[] p = Multilora.utf8(path, "path");
        byte[] n = Multilora.utf8(name, "name");
        checked(h -> Multilora.lib().mlora_adapters_load(h, p, n, flags));
    }

    public void load(String path, String name) {
        load(path, name, Multilora.LOAD_DEFAULT);
    }

    /** Loads an adapter from the bytes of an .onnx_adapter file (the library copies them). */
    public void loadFromMemory(byte[] data, String name, int flags) {
        byte[] n = Multilora.utf8(name, "name");
        List<Object> keep = new ArrayList<>();
        Pointer d = Multilora.nativeBytes(data, keep);
        try {
            checked(h -> Multilora.lib().mlora_adapters_load_from_memory(h, d, Multilora.size(data.length), n, flags));
        } finally {
            java.lang.ref.Reference.reachabilityFence(keep);
        }
    }

    public void loadFromMemory(byte[] data, String name) {
        loadFromMemory(data, name, Multilora.LOAD_DEFAULT);
    }

    /** Removes a name; holders of the adapter keep it until they release it. */
    public void unload(String name) {
        byte[] n = Multilora.utf8(name, "name");
        checked(h -> Multilora.lib().mlora_adapters_unload(h, n));
    }

    /** Names of the loaded adapters, sorted. */
    public String[] names() {
        Pointer h = nativeHandle();
        try {
            byte[] all = Multilora.readBuffer((b, c, l) -> Multilora.lib().mlora_adapters_names(h, b, c, l,
                    new MultiloraLibrary.SizeTByReference()));
            List<String> names = new ArrayList<>();
            int start = 0;
            for (int i = 0; i < all.length; i++) {
                if (all[i] == 0) {
                    names.add(new String(all, start, i - start, StandardCharsets.UTF_8));
                    start = i + 1;
                }
            }
            return names.toArray(new String[0]);
        } finally {
            fence();
        }
    }

    /** The adapter loaded under a name; the returned object keeps that version alive. */
    public Adapter get(String name) {
        byte[] n = Multilora.utf8(name, "name");
        PointerByReference out = new PointerByReference();
        checked(h -> Multilora.lib().mlora_adapters_get(h, n, out));
        return new Adapter(out.getValue());
    }
}
