// Idiomatic C# layer: Engine and Request (continuous batching, one adapter set per request).
// See Multilora.cs for the rules every wrapper follows.

using System;
using System.Collections;
using System.Collections.Generic;
using Multilora.Native;

namespace Multilora
{
    /// <summary>Why a request finished (MLORA_FINISH_*).</summary>
    public enum FinishReason
    {
        None = 0,
        Length = 1,
        Eos = 2,
        Stop = 3,
        Cancelled = 4,
        Error = 5,
    }

    /// <summary>Token counts and latencies of a request (seconds; TimeToFirstToken is null before it).</summary>
    public struct RequestUsage
    {
        public long PromptTokens;
        public long GeneratedTokens;
        public double QueueSeconds;
        public double? TimeToFirstToken;
    }

    /// <summary>Options of an Engine (defaults: max batch 16, 64 tokens per step, queue 1024, worker on).</summary>
    public sealed class EngineOptions : NativeObject<EngineOptionsHandle>
    {
        public EngineOptions() : base("EngineOptions")
        {
            IntPtr o;
            Library.Check(NativeMethods.mlora_engine_options_create(out o));
            Adopt(o);
        }

        /// <summary>Rows of the batched KV cache (1..4096).</summary>
        public EngineOptions SetMaxBatchSize(long n)
        {
            using (var u = Use())
                Library.Check(NativeMethods.mlora_engine_options_set_max_batch_size(u.Ptr, Library.Size(Math.Max(0, n))));
            return this;
        }

        /// <summary>Token budget of one step (>= 1).</summary>
        public EngineOptions SetMaxTokensPerStep(long n)
        {
            using (var u = Use())
                Library.Check(NativeMethods.mlora_engine_options_set_max_tokens_per_step(u.Ptr,
                                                                                         Library.Size(Math.Max(0, n))));
            return this;
        }

        /// <summary>Requests that may wait for a row before Submit fails with MLORA_STATUS_BUSY.</summary>
        public EngineOptions SetMaxQueue(long n)
        {
            using (var u = Use())
                Library.Check(NativeMethods.mlora_engine_options_set_max_queue(u.Ptr, Library.Size(Math.Max(0, n))));
            return this;
        }

        /// <summary>false: no worker thread; the host calls Engine.Step().</summary>
        public EngineOptions SetWorker(bool enable)
        {
            using (var u = Use()) Library.Check(NativeMethods.mlora_engine_options_set_worker(u.Ptr, enable ? 1 : 0));
            Worker = enable;
            return this;
        }

        internal bool Worker = true;
    }

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

    /// <summary>
    /// A submitted request. Enumerate it for its new token ids (blocking; for an engine without a worker the
    /// enumeration steps the engine). Dispose releases it (cancelling it if unfinished).
    /// </summary>
    public sealed class Request : NativeObject<RequestHandle>, IEnumerable<int>
    {
        private readonly Engine _engine;

        internal Request(IntPtr r, Engine engine) : base("Request")
        {
            Adopt(r);
            _engine = engine;
        }

        /// <summary>
        /// New token ids: waits up to timeoutMs (0 = poll, negative = until a token or the end). Returns false once
        /// the request finished and every token was read.
        /// </summary>
        public bool Read(List<int> tokens, int timeoutMs = -1, int maxTokens = 256)
        {
            var buf = new int[maxTokens];
            using (var u = Use())
            {
                UIntPtr n;
                int done;
                Library.Check(NativeMethods.mlora_request_read(u.Ptr, buf, Library.Size(buf.Length), timeoutMs, out n,
                                                               out done));
                for (int i = 0; i < (int)n.ToUInt64(); i++) tokens.Add(buf[i]);
                return done == 0;
            }
        }

        /// <summary>True if this call cancelled it; false if it had finished or was cancelled already.</summary>
        public bool Cancel()
        {
            using (var u = Use())
            {
                int c;
                Library.Check(NativeMethods.mlora_request_cancel(u.Ptr, out c));
                return c != 0;
            }
        }

        public FinishReason FinishReason
        {
            get
            {
                using (var u = Use())
                {
                    int r;
                    Library.Check(NativeMethods.mlora_request_finish_reason(u.Ptr, out r));
                    return (FinishReason)r;
                }
            }
        }

        public bool IsDone
        {
            get { return FinishReason != FinishReason.None; }
        }

        public RequestUsage Usage
        {
            get
            {
                using (var u = Use())
                {
                    ulong p, g;
                    double q, t;
                    Library.Check(NativeMethods.mlora_request_usage(u.Ptr, out p, out g, out q, out t));
                    return new RequestUsage
                    {
                        PromptTokens = (long)p, GeneratedTokens = (long)g, QueueSeconds = q,
                        TimeToFirstToken = t < 0 ? (double?)null : t,
                    };
                }
            }
        }

        /// <summary>The error of a failed request (or CLOSED when the engine closed under it); null otherwise.</summary>
        public MultiloraException Error
        {
            get
            {
                using (var u = Use())
                {
                    int status = 0;
                    IntPtr ptr = u.Ptr;
                    string msg = Library.ReadString((byte[] buf, UIntPtr cap, out UIntPtr len) =>
                                                        NativeMethods.mlora_request_error(ptr, out status, buf, cap,
                                                                                          out len));
                    return status == 0 ? null : new MultiloraException(status, Library.StatusName(status), msg);
                }
            }
        }

        /// <summary>Every token not read yet, blocking until the request finishes.</summary>
        public int[] ReadAll()
        {
            var all = new List<int>();
            foreach (int t in this) all.Add(t);
            return all.ToArray();
        }

        public IEnumerator<int> GetEnumerator()
        {
            var chunk = new List<int>();
            bool more = true;
            while (more)
            {
                chunk.Clear();
                if (!_engine.HasWorker)
                {
                    more = Read(chunk, 0);
                    while (chunk.Count == 0 && more)
                    {
                        _engine.Step();
                        more = Read(chunk, 0);
                    }
                }
                else
                {
                    more = Read(chunk, -1);
                }
                foreach (int t in chunk) yield return t;
            }
        }

        IEnumerator IEnumerable.GetEnumerator()
        {
            return GetEnumerator();
        }
    }
}
