// Marshalling check of the generated Java raw layer (docs/conventions.md §4): reflects over MultiloraLibrary and
// asserts, for every function of the header, the Java type of each parameter (by position) and of the return
// value. The expected types are restated here independently of scripts/gen_bindings.py, from the C types the
// header declares (`python3 scripts/gen_bindings.py --signatures` lists them).
//
// Usage: java -cp jna.jar:classes RawLayerCheck SIGNATURES_FILE   (prints "N passed, N failed"; exit 1 on failure)

import ai.multilora.MultiloraLibrary;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class RawLayerCheck {
    private static final Map<String, String> SCALARS = Map.of("int32_t", "int", "uint32_t", "int", "int64_t", "long",
            "uint64_t", "long", "float", "float", "double", "double", "size_t", "SizeT");
    private static final Map<String, String> BYREF = Map.of("int32_t", "IntByReference", "uint32_t", "IntByReference",
            "int64_t", "LongByReference", "uint64_t", "LongByReference", "float", "FloatByReference",
            "double", "DoubleByReference", "size_t", "SizeTByReference");
    private static int passed;
    private static int failed;

    private RawLayerCheck() {}

    private static String expected(String name, String ctype) {
        boolean array = ctype.endsWith(" [array]");
        if (array) {
            ctype = ctype.substring(0, ctype.length() - 8);
        }
        if (SCALARS.containsKey(ctype)) {
            return SCALARS.get(ctype);
        }
        switch (ctype) {
            case "const char*":
            case "char*":
                return "byte[]";
            case "const char* const*":
            case "const void*":
            case "const size_t*":
                return "Pointer";
            case "const void**":
                return "PointerByReference";
            case "void":
                return "void";
            default:
                break;
        }
        if (ctype.matches("^(const )?mlora_\\w+_t\\*$")) {
            return "Pointer";
        }
        if (ctype.matches("^mlora_\\w+_t\\*\\*$")) {
            return array ? "Pointer" : "PointerByReference";
        }
        if (ctype.matches("^const mlora_\\w+_t\\* const\\*$")) {
            return "Pointer";
        }
        Matcher m = Pattern.compile("^(const )?(\\w+)\\*$").matcher(ctype);
        if (m.matches() && SCALARS.containsKey(m.group(2))) {
            String s = m.group(2);
            if (m.group(1) == null && name.startsWith("out_")) {
                return BYREF.get(s);
            }
            return SCALARS.get(s) + "[]";
        }
        return "?" + ctype;
    }

    private static void check(boolean ok, String what) {
        if (ok) {
            passed++;
        } else {
            failed++;
            System.out.println("FAIL " + what);
        }
    }

    public static void main(String[] args) throws Exception {
        Map<String, Method> methods = new HashMap<>();
        for (Method m : MultiloraLibrary.class.getDeclaredMethods()) {
            if (Modifier.isAbstract(m.getModifiers()) && m.getName().startsWith("mlora_")) {
                methods.put(m.getName(), m);
            }
        }
        Set<String> seen = new HashSet<>();
        List<String> lines = Files.readAllLines(Paths.get(args[0]));
        for (String line : lines) {
            if (line.isBlank()) {
                continue;
            }
            String[] cols = line.split("\t", -1);
            String fn = cols[0];
            String ret = cols[1];
            seen.add(fn);
            Method mi = methods.get(fn);
            if (mi == null) {
                check(false, fn + ": not in MultiloraLibrary");
                continue;
            }
            String wantRet = ret.equals("const char*") ? "Pointer" : expected("", ret);
            check(mi.getReturnType().getSimpleName().equals(wantRet),
                    fn + ": returns " + mi.getReturnType().getSimpleName() + ", C " + ret + " wants " + wantRet);
            String[] cparams = cols.length > 2 && !cols[2].isEmpty() ? cols[2].split(",") : new String[0];
            Class<?>[] ps = mi.getParameterTypes();
            if (ps.length != cparams.length) {
                check(false, fn + ": " + ps.length + " parameters, the header has " + cparams.length);
                continue;
            }
            for (int i = 0; i < ps.length; i++) {
                String pname = cparams[i].substring(0, cparams[i].indexOf('='));
                String ctype = cparams[i].substring(cparams[i].indexOf('=') + 1);
                String want = expected(pname, ctype);
                String got = ps[i].getSimpleName();
                check(got.equals(want), fn + "(" + pname + "): " + got + ", C " + ctype + " wants " + want);
                check(!got.equals("boolean") && !got.equals("String") && !got.equals("char"),
                        fn + "(" + pname + "): no boolean/String/char across the ABI (docs/conventions.md §1)");
            }
        }
        for (String name : methods.keySet()) {
            check(seen.contains(name), name + ": in MultiloraLibrary but not in the header");
        }
        check(MultiloraLibrary.GENERATED_ABI_VERSION == MultiloraLibrary.MLORA_ABI_VERSION,
                "GENERATED_ABI_VERSION equals MLORA_ABI_VERSION");
        check(new MultiloraLibrary.SizeT(7).longValue() == 7 && new MultiloraLibrary.SizeT().nativeType() != null,
                "SizeT round-trips a value");
        System.out.println("Java raw layer: " + seen.size() + " functions checked");
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
