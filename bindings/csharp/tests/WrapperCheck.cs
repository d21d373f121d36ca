// Argument checks of the idiomatic C# layer that happen before any native call: a weights array must match the
// names (one set) or the rows (per row), for RunOptions, GeneratorParams and Generator alike — the C functions
// read as many floats as there are names, so a shorter array must never reach them.
//
// Usage: mono wrapper_check.exe GENAI_MODEL_FOLDER   (prints "N passed, N failed"; exit 1 on failure)
using System;
using Multilora;

public static class WrapperCheck
{
    static int passed, failed;

    static void ExpectRefused(string what, string message, Action call)
    {
        try
        {
            call();
            failed++;
            Console.WriteLine("FAIL " + what + ": accepted");
        }
        catch (ArgumentException e)
        {
            if (e.Message.Contains(message)) passed++;
            else
            {
                failed++;
                Console.WriteLine("FAIL " + what + ": message '" + e.Message + "' lacks '" + message + "'");
            }
        }
    }

    static void CheckAll(string who, Action<string[], float[]> one, Action<string[][], float[][]> rows)
    {
        ExpectRefused(who + " one set, 1 name 0 weights", "one weight per name",
                      () => one(new[] { "a" }, new float[0]));
        ExpectRefused(who + " one set, 1 name 2 weights", "one weight per name",
                      () => one(new[] { "a" }, new[] { 1f, 2f }));
        ExpectRefused(who + " per row, 2 rows 1 weight array", "one weight array per row",
                      () => rows(new[] { new[] { "a" }, new string[0] }, new[] { new[] { 1f } }));
        ExpectRefused(who + " per row, row 0 with 2 names 1 weight", "row 0: one weight per name",
                      () => rows(new[] { new[] { "a", "b" } }, new[] { new[] { 1f } }));
    }

    public static int Main(string[] args)
    {
        using (var model = new Model(args[0]))
        using (var options = new RunOptions())
        using (var parameters = new GeneratorParams(model))
        using (var generator = new Generator(model, parameters))
        {
            CheckAll("RunOptions", (n, w) => options.SetActiveAdapters(null, n, w),
                     (r, w) => options.SetActiveAdaptersPerRow(null, r, w));
            CheckAll("GeneratorParams", (n, w) => parameters.SetActiveAdapters(null, n, w),
                     (r, w) => parameters.SetActiveAdaptersPerRow(null, r, w));
            CheckAll("Generator", (n, w) => generator.SetActiveAdapters(null, n, w),
                     (r, w) => generator.SetActiveAdaptersPerRow(null, r, w));
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
