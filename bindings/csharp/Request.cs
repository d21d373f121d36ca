// Idiomatic C# layer: Request (continuous-batching engine). See Library.cs for the rules every wrapper follows.

using System;
using System.Collections;
using System.Collections.Generic;
using Multilora.Native;

namespace Multilora
{
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
