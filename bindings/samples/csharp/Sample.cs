// multilora sample host in C#: load a model, load two adapters, run the base model, each adapter and a
// weighted mix, print a few output numbers per case, unload.
//
// Build: mcs -target:library -out:Multilora.dll bindings/csharp/*.cs
//        mcs -out:sample_csharp.exe -r:Multilora.dll bindings/samples/csharp/Sample.cs
// Run:   LD_LIBRARY_PATH=build mono sample_csharp.exe MODEL.onnx ADAPTER_A.onnx_adapter ADAPTER_B.onnx_adapter

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

    // Generation (GeneratorParams + Generator on a GenAI model folder) will be shown here:
    // private static void Generate(Model model, Adapters adapters) { ... }

    public static int Main(string[] args)
    {
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: sample_csharp.exe MODEL ADAPTER_A ADAPTER_B");
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
            return 0;
        }
        catch (MultiloraException e)
        {
            Console.Error.WriteLine("{0}: {1}", e.StatusName, e.Message);
            return 1;
        }
    }
}
