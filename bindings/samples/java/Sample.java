// multilora sample host in Java: load a model, load two adapters, run the base model, each adapter and a
// weighted mix, print a few output numbers per case, unload.
//
// Build: javac -cp /usr/share/java/jna.jar -d classes bindings/java/src/ai/multilora/*.java bindings/samples/java/Sample.java
// Run:   java -Djna.library.path=build -cp /usr/share/java/jna.jar:classes Sample MODEL ADAPTER_A ADAPTER_B
//          [GEN_DIR MAX_LENGTH PROMPT_IDS]
// With GEN_DIR (a GenAI model folder with adapters/a.onnx_adapter), MAX_LENGTH (prompt + generated tokens)
// and PROMPT_IDS (comma-separated token ids) it then generates greedily with the base model and adapter a.

import ai.multilora.Adapters;
import ai.multilora.Generator;
import ai.multilora.GeneratorParams;
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

    // Greedy generation with the given active set (empty = base model); prints the generated tokens.
    private static void generate(Model model, Adapters adapters, String label, String[] names, double maxLength,
            int[] prompt) {
        try (GeneratorParams params = new GeneratorParams(model)) {
            params.setSearchOption("max_length", maxLength).setSearchOption("do_sample", false);
            params.setActiveAdapters(adapters, names, null);
            try (Generator generator = new Generator(model, params)) {
                generator.appendTokens(prompt);
                while (!generator.isDone()) {
                    generator.generateNextToken();
                }
                int[] seq = generator.getSequence(0);
                StringBuilder line = new StringBuilder("gen " + label + ":");
                for (int i = prompt.length; i < seq.length; i++) {
                    line.append(' ').append(seq[i]);
                }
                System.out.println(line);
            }
        }
    }

    // Opens the GenAI model folder, loads its adapter a, and generates with the base model and with a.
    private static void generation(String dir, String maxLength, String promptIds) {
        String[] items = promptIds.split(",");
        int[] prompt = new int[items.length];
        for (int i = 0; i < items.length; i++) {
            prompt[i] = Integer.parseInt(items[i].trim());
        }
        double max = Double.parseDouble(maxLength);
        try (Model model = new Model(dir); Adapters adapters = new Adapters(model)) {
            adapters.load(dir + "/adapters/a.onnx_adapter", "a");
            System.out.println("generation: " + dir + ", prompt of " + prompt.length + " tokens, max_length " + maxLength);
            generate(model, adapters, "base", new String[0], max, prompt);
            generate(model, adapters, "a", new String[] {"a"}, max, prompt);
            adapters.unload("a");
        }
    }

    public static void main(String[] args) {
        if (args.length != 3 && args.length != 6) {
            System.err.println("usage: Sample MODEL ADAPTER_A ADAPTER_B [GEN_DIR MAX_LENGTH PROMPT_IDS]");
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
            if (args.length == 6) {
                generation(args[3], args[4], args[5]);
            }
        } catch (MultiloraException e) {
            System.err.println(e.statusName() + ": " + e.getMessage());
            System.exit(1);
        }
    }
}
