// Idiomatic C# layer: EngineOptions (continuous-batching engine). See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
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
}
