// Idiomatic C# layer: MultiloraException. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>A failed multilora call: the C status, its symbolic name and the library's message.</summary>
    public class MultiloraException : Exception
    {
        /// <summary>The mlora_status_t value (see NativeMethods.MLORA_STATUS_*).</summary>
        public int Status { get; private set; }

        /// <summary>The status's symbolic name, e.g. "MLORA_STATUS_NOT_FOUND".</summary>
        public string StatusName { get; private set; }

        public MultiloraException(int status, string statusName, string message) : base(message)
        {
            Status = status;
            StatusName = statusName;
        }

        public override string ToString()
        {
            return StatusName + ": " + Message;
        }
    }
}
