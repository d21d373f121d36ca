// Argument checks of the idiomatic Java layer that happen before any native call: a weights array must match the
// names (one set) or the rows (per row), for RunOptions, GeneratorParams and Generator alike — the C functions
// read as many floats as there are names, so a shorter array must never reach them.
//
// Usage: java -Djna.library.path=LIB -cp jna.jar:classes WrapperCheck GENAI_MODEL_FOLDER
//        (prints "N passed, N failed"; exit 1 on failure)

import ai.multilora.Generator;
import ai.multilora.GeneratorParams;
import ai.multilora.Model;
import ai.multilora.RunOptions;

public final class WrapperCheck {
    private static int passed;
    private static int failed;

    private WrapperCheck() {}

    private static void expectRefused(String what, String message, Runnable call) {
        try {
            call.run();
            failed++;
            System.out.println("FAIL " + what + ": accepted");
        } catch (IllegalArgumentException e) {
            if (e.getMessage() != null && e.getMessage().contains(message)) {
                passed++;
            } else {
                failed++;
                System.out.println("FAIL " + what + ": message '" + e.getMessage() + "' lacks '" + message + "'");
            }
        }
    }

    private interface Sets {
        void one(String[] names, float[] weights);

        void rows(String[][] rows, float[][] weights);
    }

    private static void checkAll(String who, Sets s) {
        expectRefused(who + " one set, 1 name 0 weights", "one weight per name",
                () -> s.one(new String[] {"a"}, new float[0]));
        expectRefused(who + " one set, 1 name 2 weights", "one weight per name",
                () -> s.one(new String[] {"a"}, new float[] {1f, 2f}));
        expectRefused(who + " per row, 2 rows 1 weight array", "one weight array per row",
                () -> s.rows(new String[][] {{"a"}, {}}, new float[][] {{1f}}));
        expectRefused(who + " per row, row 0 with 2 names 1 weight", "row 0: one weight per name",
                () -> s.rows(new String[][] {{"a", "b"}}, new float[][] {{1f}}));
    }

    public static void main(String[] args) {
        try (Model model = new Model(args[0]);
                RunOptions options = new RunOptions();
                GeneratorParams params = new GeneratorParams(model);
                Generator generator = new Generator(model, params)) {
            checkAll("RunOptions", new Sets() {
                public void one(String[] n, float[] w) { options.setActiveAdapters(null, n, w); }
                public void rows(String[][] r, float[][] w) { options.setActiveAdaptersPerRow(null, r, w); }
            });
            checkAll("GeneratorParams", new Sets() {
                public void one(String[] n, float[] w) { params.setActiveAdapters(null, n, w); }
                public void rows(String[][] r, float[][] w) { params.setActiveAdaptersPerRow(null, r, w); }
            });
            checkAll("Generator", new Sets() {
                public void one(String[] n, float[] w) { generator.setActiveAdapters(null, n, w); }
                public void rows(String[][] r, float[][] w) { generator.setActiveAdaptersPerRow(null, r, w); }
            });
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
