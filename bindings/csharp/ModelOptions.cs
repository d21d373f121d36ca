// Idiomatic C# layer: ModelOptions. See Library.cs for the rules every wrapper follows.

using System;
using Multilora.Native;

namespace Multilora
{
    /// <summary>Options used when creating a model: ONNX Runtime log level, threads, session config entries.</summary>
    public sealed class ModelOptions : NativeObject<ModelOptionsHandle>
    {
        public ModelOptions() : base("ModelOptions")
        {
            IntPtr p;
            Library.Check(NativeMethods.mlora_model_options_create(out p));
            Adopt(p);
        }

        /// <summary>Severity from which ONNX Runtime messages are printed (0 verbose .. 4 fatal).</summary>
        public int LogLevel
        {
            set
            {
                using (var u = Use()) Library.Check(NativeMethods.mlora_model_options_set_log_level(u.Ptr, value));
            }
        }

        /// <summary>Intra-op threads (0 = ONNX Runtime's default).</summary>
        public int IntraOpThreads
        {
            set
            {
                using (var u = Use())
                    Library.Check(NativeMethods.mlora_model_options_set_intra_op_threads(u.Ptr, value));
            }
        }

        /// <summary>
        /// Slot-table size S of a model prepared for per-row adapters (<c>multilora prepare-batching</c>): slot 0 is
        /// the base model, slots 1..S-1 each hold one composed adapter set, least recently used out. Default 17;
        /// 2..4097 (MLORA_STATUS_INVALID_ARGUMENT outside). Ignored for models not prepared for batching.
        /// </summary>
        public int BatchSlots
        {
            set
            {
                if (value < 0)
                {
                    int st = NativeMethods.MLORA_STATUS_INVALID_ARGUMENT;
                    throw new MultiloraException(st, Library.StatusName(st), "batch_slots " + value +
                                                 " is outside 2..4097 (slot 0 is the base model)");
                }
                using (var u = Use())
                    Library.Check(NativeMethods.mlora_model_options_set_batch_slots(u.Ptr, Library.Size(value)));
            }
        }

        /// <summary>
        /// Lets a model folder's genai_config.json name files outside the folder (absolute, or with "..");
        /// refused by default (MLORA_STATUS_FORMAT) because a model folder may come from someone else.
        /// </summary>
        public bool AllowExternalPaths
        {
            set
            {
                using (var u = Use())
                    Library.Check(NativeMethods.mlora_model_options_set_allow_external_paths(u.Ptr, value ? 1 : 0));
            }
        }

        /// <summary>
        /// Whether to open the base graph a prepared model names (default true): runs in which no row has an
        /// adapter go to it (see mlora_model_options_set_base_graph and Model.SessionRuns).
        /// </summary>
        public bool BaseGraph
        {
            set
            {
                using (var u = Use())
                    Library.Check(NativeMethods.mlora_model_options_set_base_graph(u.Ptr, value ? 1 : 0));
            }
        }

        /// <summary>Adds an ONNX Runtime session configuration entry.</summary>
        public void SetConfigEntry(string key, string value)
        {
            using (var u = Use())
                Library.Check(NativeMethods.mlora_model_options_set_config_entry(
                    u.Ptr, Library.Utf8(key, "key"), Library.Utf8(value, "value")));
        }
    }
}
