// multilora sample host in C#: load a model, load two adapters, run the base model, each adapter and a
// weighted mix, print a few output numbers per case, unload.
//
// Build: mcs -target:library -out:Multilora.dll bindings/csharp/*.cs
//        mcs -out:sample_csharp.exe -r:Multilora.dll bindings/samples/csharp/Sample.cs
// Run:   LD_LIBRARY_PATH=build mono sample_csharp.exe MODEL.onnx ADAPTER_A.onnx_adapter ADAPTER_B.onnx_adapter
//          [GEN_DIR MAX_LENGTH PROMPT_IDS]
// With GEN_DIR (a GenAI model folder with adapters/a.onnx_adapter), MAX_LENGTH (prompt + generated tokens)
// and PROMPT_IDS (comma-separated token ids) it then generates greedily with the base model and adapter a.

using System;
using System.Globalization;
using System.Linq;
using Multilora;

public static class Sample
{
    private sealed class Case
    {
        public string Label;
        public string[] Names; // empty = base model
        public float[] Weights;
    }

    private static void Run(Model model, Adapters adapters, string input, string output, Case c)
    {
        using (var tokens = Tensor.FromLongs(new long[] { 1, 2, 3, 4, 5 }, 1, 5))
        using (var options = new RunOptions())
        {
            options.SetActiveAdapters(adapters, c.Names, c.Weights);
            Tensor[] outs = model.Run(options, new[] { input }, new[] { tokens }, new[] { output });
            using (Tensor y = outs[0])
            {
                long[] shape = y.Shape;
                float[] data = y.ToFloats();
                int row = shape.Length > 0 ? (int)shape[shape.Length - 1] : 1;
                var numbers = data.Skip(data.Length - row).Take(4)
                    .Select(v => " " + ((double)v).ToString("F6", CultureInfo.InvariantCulture));
                Console.WriteLine("{0,-5} {1}[{2}] last row:{3}", c.Label, output, string.Join(", ", shape),
                                  string.Concat(numbers));
            }
        }
    }

    // Greedy generation with the given active set (empty = base model); prints the generated tokens.
    private static void Generate(Model model, Adapters adapters, string label, string[] names, double maxLength,
                                 int[] prompt)
    {
        using (var parameters = new GeneratorParams(model))
        {
            parameters.SetSearchOption("max_length", maxLength);
            parameters.SetSearchOption("do_sample", false);
            parameters.SetActiveAdapters(adapters, names);
            using (var generator = new Generator(model, parameters))
            {
                generator.AppendTokens(prompt);
                while (!generator.IsDone) generator.GenerateNextToken();
                int[] seq = generator.GetSequence(0);
                Console.WriteLine("gen {0}:{1}", label, string.Concat(seq.Skip(prompt.Length).Select(t => " " + t)));
            }
        }
    }

    // Opens the GenAI model folder, loads its adapter a, and generates with the base model and with a.
    private static void Generation(string dir, string maxLength, string promptIds)
    {
        int[] prompt = promptIds.Split(',').Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToArray();
        double max = double.Parse(maxLength, CultureInfo.InvariantCulture);
        using (var model = new Model(dir))
        using (var adapters = new Adapters(model))
        {
            adapters.Load(dir + "/adapters/a.onnx_adapter", "a");
            Console.WriteLine("generation: {0}, prompt of {1} tokens, max_length {2}", dir, prompt.Length, maxLength);
            Generate(model, adapters, "base", new string[0], max, prompt);
            Generate(model, adapters, "a", new[] { "a" }, max, prompt);
            adapters.Unload("a");
        }
    }

    public static int Main(string[] args)
    {
        if (args.Length != 3 && args.Length != 6)
        {
            Console.Error.WriteLine("usage: sample_csharp.exe MODEL ADAPTER_A ADAPTER_B [GEN_DIR MAX_LENGTH PROMPT_IDS]");
            return 2;
        }
        try
        {
            Console.WriteLine("multilora sample (C#): library {0}, ABI {1}", Library.Version, Library.AbiVersion);
            using (var model = new Model(args[0]))
            using (var adapters = new Adapters(model))
            {
                string input = model.InputName(0), output = model.OutputName(0);
                Console.WriteLine("model: input {0}, output {1}, {2} LoRA inputs", input, output, model.LoraCount);
                adapters.Load(args[1], "a");
                adapters.Load(args[2], "b");
                Console.WriteLine("loaded: a, b");
                var cases = new[]
                {
                    new Case { Label = "base", Names = new string[0] },
                    new Case { Label = "a", Names = new[] { "a" }, Weights = new[] { 1.0f } },
                    new Case { Label = "b", Names = new[] { "b" }, Weights = new[] { 1.0f } },
                    new Case { Label = "mix", Names = new[] { "a", "b" }, Weights = new[] { 0.5f, 1.5f } },
                };
                foreach (var c in cases) Run(model, adapters, input, output, c);
                adapters.Unload("a");
                adapters.Unload("b");
                Console.WriteLine("unloaded: a, b");
            }
            if (args.Length == 6) Generation(args[3], args[4], args[5]);
            return 0;
        }
        catch (MultiloraException e)
        {
            Console.Error.WriteLine("{0}: {1}", e.StatusName, e.Message);
            return 1;
        }
    }
}
