// Idiomatic C# layer: RequestUsage (continuous-batching engine). See Library.cs for the rules every wrapper follows.

using System;

namespace Multilora
{
    /// <summary>Token counts and latencies of a request (seconds; TimeToFirstToken is null before it).</summary>
    public struct RequestUsage
    {
        public long PromptTokens;
        public long GeneratedTokens;
        public double QueueSeconds;
        public double? TimeToFirstToken;
    }
}
