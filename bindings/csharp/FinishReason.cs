// Idiomatic C# layer: FinishReason (continuous-batching engine). See Library.cs for the rules every wrapper follows.

using System;

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
}
