// Idiomatic C# layer: AdapterSets. See Library.cs for the rules every wrapper follows.

using System;
using System.Collections.Generic;

namespace Multilora
{
    /// <summary>
    /// The adapter-set argument conventions shared by RunOptions, GeneratorParams and Generator: one set (names,
    /// optional weights, one per name) and one set per row (rows of names, optional weights per row).
    /// </summary>
    internal static class AdapterSets
    {
        internal delegate int SingleCall(IntPtr receiver, IntPtr adapters, IntPtr[] names, float[] weights,
                                         UIntPtr count);
        internal delegate int Call(IntPtr receiver, IntPtr adapters, IntPtr[] names, float[] weights,
                                   UIntPtr[] rowCounts, UIntPtr batchSize);

        /// <summary>One set for every row: no names (or null) = the base model; weights null = all 1.0.</summary>
        internal static void Set(IntPtr receiver, Adapters adapters, string[] names, float[] weights, SingleCall call)
        {
            names = names ?? new string[0];
            if (weights != null && weights.Length != names.Length)
                throw new ArgumentException("one weight per name (or no weights)");
            using (var a = new Use(adapters == null ? null : adapters.Handle, "Adapters"))
            using (var n = new Utf8StringArray(names, "adapter name"))
                Library.Check(call(receiver, a.Ptr, n.Pointers, weights, Library.Size(names.Length)));
        }

        internal static void SetPerRow(IntPtr receiver, Adapters adapters, string[][] rows, float[][] weights,
                                       Call call)
        {
            if (rows == null) throw new ArgumentNullException("rows");
            if (weights != null && weights.Length != rows.Length)
                throw new ArgumentException("one weight array per row (or no weights)");
            var flat = new List<string>();
            var flatWeights = new List<float>();
            var counts = new UIntPtr[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                var row = rows[i] ?? new string[0];
                if (weights != null && (weights[i] ?? new float[0]).Length != row.Length)
                    throw new ArgumentException("row " + i + ": one weight per name");
                flat.AddRange(row);
                if (weights != null) flatWeights.AddRange(weights[i] ?? new float[0]);
                counts[i] = Library.Size(row.Length);
            }
            using (var a = new Use(adapters == null ? null : adapters.Handle, "Adapters"))
            using (var n = new Utf8StringArray(flat.ToArray(), "adapter name"))
                Library.Check(call(receiver, a.Ptr, n.Pointers, weights == null ? null : flatWeights.ToArray(), counts,
                                   Library.Size(rows.Length)));
        }
    }
}
