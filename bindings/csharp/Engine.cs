// Idiomatic C# layer: Engine (continuous-batching engine). See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>
    /// Continuous batching over one GenAI model folder prepared with <c>multilora prepare-batching</c>. By default a
    /// worker thread owned by the engine steps it; with <c>worker: false</c> the host calls <see cref="Step"/>.
    /// Every method is safe from any thread. Dispose closes it: unfinished requests finish as Cancelled.
    /// </summary>
    public sealed class Engine : NativeObject<EngineHandle>
    {
        public Engine(Model model, int maxBatchSize = 16, int maxTokensPerStep = 64, int maxQueue = 1024,
                      bool worker = true) : base("Engine")
        {
            if (model == null) throw new ArgumentNullException("model");
            IntPtr o;
            Library.Check(NativeMethods.mlora_engine_options_create(out o));
            try
            {
                Library.Check(NativeMethods.mlora_engine_options_set_max_batch_size(o, Library.Size(Math.Max(0, maxBatchSize))));
                Library.Check(NativeMethods.mlora_engine_options_set_max_tokens_per_step(o, Library.Size(Math.Max(0, maxTokensPerStep))));
                Library.Check(NativeMethods.mlora_engine_options_set_max_queue(o, Library.Size(Math.Max(0, maxQueue))));
                Library.Check(NativeMethods.mlora_engine_options_set_worker(o, worker ? 1 : 0));
                using (var m = model.Use())
                {
                    IntPtr e;
                    Library.Check(NativeMethods.mlora_engine_create(m.Ptr, o, out e));
                    Adopt(e);
                }
                HasWorker = worker;
            }
            finally
            {
                NativeMethods.mlora_engine_options_release(o);
            }
        }

        /// <summary>An engine with the given options (null = defaults).</summary>
        public Engine(Model model, EngineOptions options) : base("Engine")
        {
            if (model == null) throw new ArgumentNullException("model");
            using (var m = model.Use())
            using (var o = new Use(options == null ? null : options.Handle, "EngineOptions"))
            {
                IntPtr e;
                Library.Check(NativeMethods.mlora_engine_create(m.Ptr, o.Ptr, out e));
                Adopt(e);
            }
            HasWorker = options == null || options.Worker;
        }

        /// <summary>Queues a prompt with the params' search options, stop tokens and adapters; returns at once.</summary>
        public Request Submit(GeneratorParams parameters, int[] prompt)
        {
            if (parameters == null) throw new ArgumentNullException("parameters");
            if (prompt == null) throw new ArgumentNullException("prompt");
            using (var u = Use())
            using (var p = parameters.Use())
            {
                IntPtr r;
                Library.Check(NativeMethods.mlora_engine_submit(u.Ptr, p.Ptr, prompt, Library.Size(prompt.Length), out r));
                return new Request(r, this);
            }
        }

        /// <summary>One step (engines created with worker: false). True while requests are queued or running.</summary>
        public bool Step()
        {
            using (var u = Use())
            {
                int more;
                Library.Check(NativeMethods.mlora_engine_step(u.Ptr, out more));
                return more != 0;
            }
        }

        /// <summary>Cancels every request (error status CLOSED) and stops the worker; later submits fail.</summary>
        public void Close()
        {
            using (var u = Use()) Library.Check(NativeMethods.mlora_engine_close(u.Ptr));
        }

        internal bool HasWorker = true;
    }
}
