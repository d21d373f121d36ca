// multilora sample host in Java: load a model, load two adapters, run the base model, each adapter and a
// weighted mix, print a few output numbers per case, unload.
//
// Build: javac -cp /usr/share/java/jna.jar -d classes bindings/java/src/ai/multilora/*.java bindings/samples/java/Sample.java
// Run:   java -Djna.library.path=build -cp /usr/share/java/jna.jar:classes Sample MODEL ADAPTER_A ADAPTER_B

import ai.multilora.Adapters;
import ai.multilora.Model;
import ai.multilora.Multilora;
import ai.multilora.MultiloraException;
import ai.multilora.RunOptions;
import ai.multilora.Tensor;
import java.util.Locale;

public final class Sample {
    private static final class Case {
        final String label;
        final String[] names; // empty = base model
        final float[] weights;

        Case(String label, String[] names, float[] weights) {
            this.label = label;
            this.names = names;
            this.weights = weights;
        }
    }

    private static void run(Model model, Adapters adapters, String input, String output, Case c) {
        try (Tensor tokens = Tensor.fromLongs(new long[] {1, 2, 3, 4, 5}, 1, 5);
                RunOptions options = new RunOptions()) {
            options.setActiveAdapters(adapters, c.names, c.weights);
            Tensor[] outs = model.run(options, new String[] {input}, new Tensor[] {tokens}, new String[] {output});
            try (Tensor y = outs[0]) {
                long[] shape = y.shape();
                float[] data = y.toFloats();
                int row = shape.length > 0 ? (int) shape[shape.length - 1] : 1;
                StringBuilder dims = new StringBuilder();
                for (int i = 0; i < shape.length; i++) {
                    dims.append(i > 0 ? ", " : "").append(shape[i]);
                }
                StringBuilder numbers = new StringBuilder();
                for (int i = 0; i < 4 && i < row; i++) {
                    numbers.append(String.format(Locale.ROOT, " %.6f", (double) data[data.length - row + i]));
                }
                System.out.println(String.format(Locale.ROOT, "%-5s %s[%s] last row:%s", c.label, output, dims, numbers));
            }
        }
    }

    // Generation (GeneratorParams + Generator on a GenAI model folder) will be shown here:
    // private static void generate(Model model, Adapters adapters) { ... }

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: Sample MODEL ADAPTER_A ADAPTER_B");
            System.exit(2);
        }
        try {
            System.out.println("multilora sample (Java): library " + Multilora.version() + ", ABI " + Multilora.abiVersion());
            try (Model model = new Model(args[0]); Adapters adapters = new Adapters(model)) {
                String input = model.inputName(0);
                String output = model.outputName(0);
                System.out.println("model: input " + input + ", output " + output + ", " + model.loraCount() + " LoRA inputs");
                adapters.load(args[1], "a");
                adapters.load(args[2], "b");
                System.out.println("loaded: a, b");
                Case[] cases = {
                    new Case("base", new String[0], null),
                    new Case("a", new String[] {"a"}, new float[] {1.0f}),
                    new Case("b", new String[] {"b"}, new float[] {1.0f}),
                    new Case("mix", new String[] {"a", "b"}, new float[] {0.5f, 1.5f}),
                };
                for (Case c : cases) {
                    run(model, adapters, input, output, c);
                }
                adapters.unload("a");
                adapters.unload("b");
                System.out.println("unloaded: a, b");
            }
        } catch (MultiloraException e) {
            System.err.println(e.statusName() + ": " + e.getMessage());
            System.exit(1);
        }
    }
}
