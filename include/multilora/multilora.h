/*
 * multilora — serve many LoRA adapters on one ONNX base model.
 *
 * This header is the C ABI and the single source of truth for every binding (Python, C++, C#, Java).
 * The generator scripts/gen_bindings.py reads it: keep one declaration per line, in the shape
 *     MLORA_API <return type> mlora_<object>_<verb>(<params>);
 *
 * ---------------------------------------------------------------------------------------------------
 * Conventions
 * ---------------------------------------------------------------------------------------------------
 * Status:   every fallible function returns mlora_status_t (0 = MLORA_STATUS_OK). On any other value the
 *           calling thread's last error holds a message naming the subject (file, adapter, tensor,
 *           expected vs actual): read it with mlora_last_error_message() before the next call that can
 *           fail on the same thread. No C++ exception ever crosses this ABI.
 * Handles:  opaque; created by mlora_<obj>_create / _load / _open and released by mlora_<obj>_release,
 *           which accepts NULL, never fails and ignores handles it does not know (double release is
 *           harmless). A NULL or released handle passed to any other function gives
 *           MLORA_STATUS_INVALID_HANDLE. Handles may be released in any order: each handle keeps alive
 *           what it uses (a run options object keeps its adapters' memory, an adapters registry keeps
 *           its model), so releasing a model while its registry lives is safe.
 * Strings:  UTF-8, NUL-terminated. An input string that is not valid UTF-8 gives INVALID_ARGUMENT.
 *           Variable-size outputs go to a caller buffer (buf, capacity): on success *out_len is the
 *           number of bytes written including the terminating NUL; when capacity is too small the
 *           call returns MLORA_STATUS_BUFFER_TOO_SMALL, writes nothing and sets *out_len to the size
 *           needed. buf may be NULL when capacity is 0 (a size query).
 * Arrays:   (pointer, size_t count). Every input pointer is const. A NULL array with count 0 is valid.
 * Ownership words used on every pointer below:
 *           owned    — the receiver owns it and must release it (for out-params: the caller).
 *           borrowed — valid until the named event; nobody frees it through this pointer.
 *           copied   — the library copies it before returning; the caller may free it at once.
 *
 * Threading model
 *   - Last error state is per thread.
 *   - Every call holds a strong reference to each object it uses (taken when it checks the handle) until it
 *     returns. A release drops the handle at once; the object dies when the last call using it returns.
 *     So releasing a handle while other threads' calls use it is safe: each of those calls either
 *     completes normally or, if it checked the handle after the release, returns
 *     MLORA_STATUS_INVALID_HANDLE. (A handle value reused by a later create is a new, valid object: do
 *     not use a handle after releasing it.)
 *   - Models, adapter registries, loaded adapters and tensors are shareable: functions taking them as
 *     `const` may be called concurrently from any threads. Mutating calls on an adapter registry
 *     (load/unload) are internally synchronised and may race with runs; a running call keeps the
 *     adapter versions it started with.
 *   - Model options, run options and generator params are internally synchronised: setters may race with
 *     each other and with the calls that read them. A run (mlora_model_run) and mlora_generator_create
 *     take a snapshot when they start (the adapter selection and options set before that point) and are
 *     not affected by later changes; mlora_model_create copies its options.
 *   - A generator is used by one thread at a time. A call that changes it (append_*, generate_next_token,
 *     set_active_adapters*) and overlaps any other call on the same generator is refused with
 *     MLORA_STATUS_BUSY and changes nothing; reading calls (is_done, batch_size, get_*) may overlap each
 *     other but not a changing call. BUSY never waits: retry after the other call returned.
 *   - Nothing needs an init call: the ONNX Runtime environment is created lazily and thread-safely.
 *
 * ONNX Runtime: libonnxruntime is loaded at run time with dlopen. The library file is, in order:
 * the path given to mlora_set_ort_library_path(), the environment variable MULTILORA_ORT_LIBRARY,
 * the onnxruntime Python package found when multilora was built, then the default search for
 * "libonnxruntime.so". ORT's own log messages are shown at severity >= error unless the
 * environment variable MULTILORA_ORT_LOG_LEVEL (0 verbose .. 4 fatal) says otherwise.
 */
#ifndef MULTILORA_H_
#define MULTILORA_H_

#include <stddef.h>
#include <stdint.h>

/* ================================================================================================ */
/* Export macros and versions                                                                        */
/* ================================================================================================ */

#if defined(_WIN32)
#if defined(MLORA_BUILDING_LIBRARY)
#define MLORA_API __declspec(dllexport)
#else
#define MLORA_API __declspec(dllimport)
#endif
#else
#define MLORA_API __attribute__((visibility("default")))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MLORA_DEPRECATED(hint) __attribute__((deprecated(hint)))
#else
#define MLORA_DEPRECATED(hint)
#endif

#define MLORA_VERSION_MAJOR 0
#define MLORA_VERSION_MINOR 1
#define MLORA_VERSION_PATCH 0
#define MLORA_VERSION_STRING "0.1.0"
/* Bumped on any incompatible change of this header; bindings refuse a library with another value. */
#define MLORA_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================================================ */
/* Types                                                                                             */
/* ================================================================================================ */

/** Result of every fallible call. Values are append-only and never renumbered. */
typedef int32_t mlora_status_t;
#define MLORA_STATUS_OK 0
#define MLORA_STATUS_INVALID_ARGUMENT 1 /* a NULL where a value is required, bad UTF-8, bad count, bad option */
#define MLORA_STATUS_INVALID_HANDLE 2   /* NULL, released or foreign handle */
#define MLORA_STATUS_NOT_FOUND 3        /* file, adapter name, tensor or input name that does not exist */
#define MLORA_STATUS_ALREADY_EXISTS 4   /* adapter name already loaded (and replace was not asked) */
#define MLORA_STATUS_IN_USE 5           /* the object is busy in a way the call cannot wait for */
#define MLORA_STATUS_IO 6               /* the operating system refused to open/read/map/write a file */
#define MLORA_STATUS_FORMAT 7           /* a file or buffer is not a valid adapter/model/config */
#define MLORA_STATUS_SHAPE_MISMATCH 8   /* a tensor's shape or byte size does not match what is expected */
#define MLORA_STATUS_OUT_OF_MEMORY 9    /* an allocation failed */
#define MLORA_STATUS_BUFFER_TOO_SMALL 10 /* the caller's buffer is too small; *out_len holds the size needed */
#define MLORA_STATUS_VERSION_MISMATCH 11 /* adapter made for another model version, or ABI mismatch */
#define MLORA_STATUS_RUNTIME 12         /* ONNX Runtime failed (load, session creation, Run) */
#define MLORA_STATUS_INTERNAL 13        /* a bug in multilora; please report the message */
#define MLORA_STATUS_TYPE_MISMATCH 14   /* a tensor's element type does not match what is expected */
#define MLORA_STATUS_BUSY 15            /* an overlapping call on an object that must not overlap, or a full queue; retry later */
#define MLORA_STATUS_CLOSED 16          /* the engine was closed (submit after close; requests cancelled by close) */

/** Element types, numbered as ONNX TensorProto.DataType. */
typedef int32_t mlora_dtype_t;
#define MLORA_DTYPE_FLOAT32 1
#define MLORA_DTYPE_UINT8 2
#define MLORA_DTYPE_INT8 3
#define MLORA_DTYPE_UINT16 4
#define MLORA_DTYPE_INT16 5
#define MLORA_DTYPE_INT32 6
#define MLORA_DTYPE_INT64 7
#define MLORA_DTYPE_BOOL 9
#define MLORA_DTYPE_FLOAT16 10
#define MLORA_DTYPE_FLOAT64 11
#define MLORA_DTYPE_UINT32 12
#define MLORA_DTYPE_UINT64 13
#define MLORA_DTYPE_BFLOAT16 16

/** Flags for mlora_adapters_load / mlora_adapters_load_from_memory (bitwise OR). */
#define MLORA_LOAD_DEFAULT 0
#define MLORA_LOAD_REPLACE 1              /* replace an adapter already loaded under the same name */
#define MLORA_LOAD_IGNORE_MODEL_VERSION 2 /* skip the model_version check (dtype/shape are always checked) */
#define MLORA_LOAD_COPY 4                 /* read the file into private memory instead of mapping it */

/** Severity levels for mlora_model_options_set_log_level (same numbers as OrtLoggingLevel). */
#define MLORA_LOG_VERBOSE 0
#define MLORA_LOG_INFO 1
#define MLORA_LOG_WARNING 2
#define MLORA_LOG_ERROR 3
#define MLORA_LOG_FATAL 4

/** A tensor: element type, shape and a contiguous row-major buffer. */
typedef struct mlora_tensor mlora_tensor_t;
/** Options used when creating a model (threads, log level, session config entries). */
typedef struct mlora_model_options mlora_model_options_t;
/** A loaded base model: one ONNX Runtime session plus the description of its LoRA inputs. */
typedef struct mlora_model mlora_model_t;
/** An adapter file's contents: parameters (name, dtype, shape, bytes) and versions; immutable. */
typedef struct mlora_adapter mlora_adapter_t;
/** A registry of named adapters validated against one model. */
typedef struct mlora_adapters mlora_adapters_t;
/** Per-run settings, chiefly the active adapter set. */
typedef struct mlora_run_options mlora_run_options_t;
/** Search options and active adapters for generation; reference-counted. */
typedef struct mlora_generator_params mlora_generator_params_t;
/** A generation in progress: token sequences, KV cache, sampling state. */
typedef struct mlora_generator mlora_generator_t;
/** Options for mlora_engine_create. */
typedef struct mlora_engine_options mlora_engine_options_t;
/** A continuous-batching request engine over one model (see the Engine section). */
typedef struct mlora_engine mlora_engine_t;
/** One generation request submitted to an engine. */
typedef struct mlora_request mlora_request_t;

/* ================================================================================================ */
/* Library: versions, errors, ONNX Runtime location                                                  */
/* ================================================================================================ */

/**
 * Version of the library as "MAJOR.MINOR.PATCH".
 * Returns: borrowed static string, valid for the life of the process; never NULL.
 * Thread-safety: safe from any thread.
 */
MLORA_API const char* mlora_version_string(void);

/**
 * ABI version the library was built with (MLORA_ABI_VERSION of its header). Bindings compare it with
 * the value they were generated from and refuse to run on a mismatch.
 * Thread-safety: safe from any thread.
 */
MLORA_API int32_t mlora_abi_version(void);

/**
 * Symbolic name of a status, e.g. "MLORA_STATUS_NOT_FOUND"; "MLORA_STATUS_UNKNOWN" for unknown values.
 * Returns: borrowed static string; never NULL.
 * Thread-safety: safe from any thread.
 */
MLORA_API const char* mlora_status_name(mlora_status_t status);

/**
 * Message of the last failing call on this thread ("" if none failed yet): one line of valid UTF-8 (bytes
 * quoted from files or from ONNX Runtime that are not UTF-8, and control characters in quoted names, are
 * written as \xNN).
 * Returns: borrowed, library-owned string valid until the next failing call on this thread; never NULL.
 * Thread-safety: per thread.
 */
MLORA_API const char* mlora_last_error_message(void);

/**
 * Status of the last failing call on this thread (MLORA_STATUS_OK if none failed yet).
 * Thread-safety: per thread.
 */
MLORA_API mlora_status_t mlora_last_error_status(void);

/**
 * Sets the path of libonnxruntime to load. Only effective before ONNX Runtime is first needed (the
 * first model creation); afterwards it returns IN_USE unless the path equals the loaded one.
 * @param[in] path copied; UTF-8 file path.
 * Returns: OK, INVALID_ARGUMENT (NULL/bad UTF-8), IN_USE.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_set_ort_library_path(const char* path);

/**
 * Writes the path of the loaded libonnxruntime and its version string ("1.32.0") into two buffers,
 * loading ONNX Runtime if it is not loaded yet.
 * @param[out] path_buf borrowed for the call; receives the path; may be NULL if path_capacity is 0.
 * @param[out] version_buf borrowed for the call; receives the version; may be NULL if version_capacity is 0.
 * @param[out] out_path_len bytes needed/written including NUL.
 * Returns: OK, RUNTIME (the library could not be loaded; the message lists every path tried),
 *          BUFFER_TOO_SMALL, INVALID_ARGUMENT.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_ort_info(char* path_buf, size_t path_capacity, size_t* out_path_len, char* version_buf, size_t version_capacity, size_t* out_version_len);

/**
 * Releases the ONNX Runtime environment early. Optional: it is released at process exit anyway.
 * Precondition: every handle has been released; otherwise returns IN_USE and changes nothing.
 * Thread-safety: must not race with any other call.
 */
MLORA_API mlora_status_t mlora_shutdown(void);

/**
 * Sets how ONNX Runtime's intra-op threads are shared by the models of this process. Only valid before the
 * first model is created (which creates the ONNX Runtime environment) or after mlora_shutdown; afterwards it
 * returns IN_USE and changes nothing.
 * Default (without this call): one global intra-op pool of ONNX Runtime's default size (one thread per
 * physical core), shared by every session of every model, idle workers spinning (intra_op_threads 0,
 * allow_spinning 1): a model with a base graph alternates two sessions, and per-session pools whose idle
 * workers spin hold cores the other session needs (docs/design.md, "Threads"). On a machine whose cores
 * other processes also want, allow_spinning 0 is faster.
 * A model whose options set intra-op threads (mlora_model_options_set_intra_op_threads > 0) keeps a pool of
 * its own of that size; genai_config.json's intra_op_num_threads is not applied while the global pool is in
 * use.
 * @param[in] intra_op_threads -1 = every session gets its own intra-op pool (ONNX Runtime's default
 *            behaviour; genai_config.json and the model options size it); 0 = one global pool of ONNX
 *            Runtime's default size; n > 0 = one global pool of n threads (the calling thread included).
 * @param[in] allow_spinning 1 = idle pool workers spin for a while before sleeping (lower latency when
 *            nothing else wants the cores), 0 = they sleep; applies to the global pool and to per-session
 *            pools alike (a model's session config entry "session.intra_op.allow_spinning" overrides it for
 *            its own pool).
 * Returns: OK, INVALID_ARGUMENT (intra_op_threads < -1, allow_spinning not 0 or 1), IN_USE (a model exists
 *          or existed since the last mlora_shutdown).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_set_global_threads(int32_t intra_op_threads, int32_t allow_spinning);

/* ================================================================================================ */
/* Tensors                                                                                           */
/* ================================================================================================ */

/**
 * Name of an element type: "float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "bool", "float16",
 * "float64", "uint32", "uint64", "bfloat16"; "unknown" for a value that is no MLORA_DTYPE_*.
 * Returns: borrowed static string; never NULL.
 * Thread-safety: safe from any thread.
 */
MLORA_API const char* mlora_dtype_name(mlora_dtype_t dtype);

/**
 * Size in bytes of one element of an element type (bool is 1 byte).
 * @param[out] out_size receives the size.
 * Returns: OK, INVALID_ARGUMENT (a value that is no MLORA_DTYPE_*, or out_size NULL).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_dtype_size(mlora_dtype_t dtype, size_t* out_size);

/**
 * Creates a tensor holding a copy of data.
 * @param[in] shape copied; ndim dimensions, each >= 0.
 * @param[in] data copied; exactly data_bytes bytes, which must equal element count * element size.
 * @param[out] out_tensor owned; release with mlora_tensor_release.
 * Returns: OK, INVALID_ARGUMENT (unknown dtype, negative dim, NULL data with non-zero size),
 *          SHAPE_MISMATCH (data_bytes differs from what shape and dtype need), OUT_OF_MEMORY.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_tensor_create(mlora_dtype_t dtype, const int64_t* shape, size_t ndim, const void* data, size_t data_bytes, mlora_tensor_t** out_tensor);

/**
 * Creates a tensor over caller memory without copying it.
 * @param[in] shape copied.
 * @param[in] data borrowed until the tensor and every run using it are released/finished; must stay
 *            unchanged meanwhile and be aligned to its element size.
 * @param[out] out_tensor owned.
 * Returns: as mlora_tensor_create, plus INVALID_ARGUMENT for misaligned data.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_tensor_create_borrowed(mlora_dtype_t dtype, const int64_t* shape, size_t ndim, const void* data, size_t data_bytes, mlora_tensor_t** out_tensor);

/**
 * Releases a tensor. Accepts NULL; never fails.
 * @param[in] tensor owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_tensor_release(mlora_tensor_t* tensor);

/**
 * Element type of a tensor.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (NULL out).
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_tensor_dtype(const mlora_tensor_t* tensor, mlora_dtype_t* out_dtype);

/**
 * Shape of a tensor. Writes up to capacity dims into shape_buf and the rank into *out_ndim.
 * @param[out] shape_buf borrowed for the call; receives up to capacity dims.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, BUFFER_TOO_SMALL (capacity < rank; *out_ndim = rank).
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_tensor_shape(const mlora_tensor_t* tensor, int64_t* shape_buf, size_t capacity, size_t* out_ndim);

/**
 * Contents of a tensor.
 * @param[out] out_data borrowed; valid until the tensor is released. Never written through.
 * @param[out] out_bytes size of the contents in bytes.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_tensor_data(const mlora_tensor_t* tensor, const void** out_data, size_t* out_bytes);

/* ================================================================================================ */
/* Model options                                                                                     */
/* ================================================================================================ */

/**
 * Creates model options with defaults: ONNX Runtime's thread defaults, log level MLORA_LOG_ERROR.
 * @param[out] out_options owned; release with mlora_model_options_release.
 * Returns: OK, INVALID_ARGUMENT, OUT_OF_MEMORY.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_model_options_create(mlora_model_options_t** out_options);

/**
 * Releases model options. Accepts NULL; never fails. @param[in] options owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_model_options_release(mlora_model_options_t* options);

/**
 * Sets the severity from which ONNX Runtime's messages for this model's session are printed.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (level outside 0..4).
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_log_level(mlora_model_options_t* options, int32_t level);

/**
 * Sets the number of intra-op threads (0 = ONNX Runtime's default).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (negative).
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_intra_op_threads(mlora_model_options_t* options, int32_t threads);

/**
 * Adds a session configuration entry passed to ONNX Runtime (AddSessionConfigEntry).
 * @param[in] key copied. @param[in] value copied.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_config_entry(mlora_model_options_t* options, const char* key, const char* value);

/**
 * Sets the size S of the slot table of a model prepared for adapter-aware batching (see
 * mlora_run_options_set_active_adapters_per_row): slot 0 is the base model, slots 1..S-1 each hold one
 * composed adapter set, least recently used first out. Default 17 (16 sets); range 2..4097. The table's
 * memory is S x (the largest composed set's LoRA bytes), touched only as slots fill. Ignored for models
 * not prepared for batching.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (slots outside 2..4097).
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_batch_slots(mlora_model_options_t* options, size_t slots);

/**
 * Whether a model folder's genai_config.json may name files outside the folder. By default a
 * model.decoder.filename that is absolute or has a ".." component is refused with FORMAT naming the key
 * and the path (a model folder may come from someone else); allow = 1 permits it. A name with a NUL byte is
 * always refused. Symbolic links inside the folder are followed either way.
 * @param[in] allow 0 (default) or 1.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (allow not 0 or 1).
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_allow_external_paths(mlora_model_options_t* options, int32_t allow);

/**
 * Whether to use the model's base graph: a model prepared by `multilora prepare-batching` names, in its
 * metadata key "multilora.base_graph", a companion .onnx file without the LoRA branch that reads the same
 * external weights. With use = 1 (default) mlora_model_create opens it as a second ONNX Runtime session
 * sharing the weights (and their pre-packed forms) with the first, and every run, generation step and engine
 * step in which no row has an adapter (no active set, a cleared set, every per-row entry empty) runs it
 * instead: the outputs are equal and the empty LoRA branch costs nothing. The name follows the rules of
 * genai_config.json's file names (inside the model's folder unless
 * mlora_model_options_set_allow_external_paths); a named file that is missing is NOT_FOUND and one whose
 * inputs or outputs differ from the model's is FORMAT at mlora_model_create. use = 0 ignores it (one
 * session). Models without the key are unaffected. See mlora_model_session_runs.
 * @param[in] use 1 (default) or 0.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (use not 0 or 1).
 * Thread-safety: safe from any thread (the options are internally synchronised).
 */
MLORA_API mlora_status_t mlora_model_options_set_base_graph(mlora_model_options_t* options, int32_t use);

/* ================================================================================================ */
/* Model                                                                                             */
/* ================================================================================================ */

/**
 * Loads a model: an .onnx file with LoRA inputs (optional inputs whose default has a zero-size rank
 * dimension), or a folder with genai_config.json (see the Generation section).
 * Inputs listed twice in graph.input are tolerated. genai_config.json is read like every file the library
 * reads: a FIFO, directory or device is IO (never a hang), over 16 MiB is IO, JSON nested deeper than 256
 * levels is FORMAT; its model.decoder.filename must name a file inside the folder (FORMAT otherwise, see
 * mlora_model_options_set_allow_external_paths) and may not hold a NUL byte.
 * @param[in] path copied; UTF-8.
 * @param[in] options borrowed for the call; NULL = defaults.
 * @param[out] out_model owned; release with mlora_model_release.
 * Returns: OK, INVALID_ARGUMENT, INVALID_HANDLE (options), NOT_FOUND (no such file), IO, FORMAT
 *          (not a model / bad genai_config.json), RUNTIME (ONNX Runtime could not load it).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_model_create(const char* path, const mlora_model_options_t* options, mlora_model_t** out_model);

/**
 * Releases a model. Accepts NULL; never fails. Objects created from it keep it alive. @param[in] model owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_model_release(mlora_model_t* model);

/**
 * Number of regular (non-LoRA) inputs / outputs of the model.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_input_count(const mlora_model_t* model, size_t* out_count);
MLORA_API mlora_status_t mlora_model_output_count(const mlora_model_t* model, size_t* out_count);

/**
 * Name of regular input / output number index (0 <= index < count).
 * @param[out] buf borrowed for the call; receives the UTF-8 name. @param[out] out_len bytes needed/written including NUL.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (index out of range), BUFFER_TOO_SMALL.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_input_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity, size_t* out_len);
MLORA_API mlora_status_t mlora_model_output_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity, size_t* out_len);

/**
 * Element type and declared shape of regular input / output number index; symbolic dims are -1.
 * @param[out] shape_buf borrowed for the call; up to capacity dims. @param[out] out_ndim rank.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, BUFFER_TOO_SMALL (*out_ndim = rank).
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_input_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype, int64_t* shape_buf, size_t capacity, size_t* out_ndim);
MLORA_API mlora_status_t mlora_model_output_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype, int64_t* shape_buf, size_t capacity, size_t* out_ndim);

/**
 * Number of LoRA parameters (the A and B inputs) the model accepts.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_lora_count(const mlora_model_t* model, size_t* out_count);

/**
 * Name of LoRA input number index, in the model's input order.
 * @param[out] buf borrowed for the call; receives the UTF-8 name. @param[out] out_len bytes needed/written.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, BUFFER_TOO_SMALL.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_lora_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity, size_t* out_len);

/**
 * Description of LoRA parameter number index: element type, the two dims, and which axis (0 or 1) is
 * the rank axis. The fixed dim is the projection's in features (A, rank axis 1) or out features
 * (B, rank axis 0); the rank dim is reported as 0 (its default). A quantized LoRA input of an int4 model (the
 * MatMulNBits weight (uint8), scales or zero points of a LoRA pair) reports its pair half's matrix
 * [in, r] / [r, out] and its own element type; the rank dim is then the rank the model fixes (not 0).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_lora_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype, int64_t* out_dim0, int64_t* out_dim1, int32_t* out_rank_axis);

/**
 * The model's version as adapters record it: a stable fingerprint of its LoRA input signature (names,
 * dtypes, fixed dims, rank axes), always in [2^30, 2^31) (bit 30 set). An adapter whose model_version has
 * bit 30 set must carry this value to load without MLORA_LOAD_IGNORE_MODEL_VERSION. A smaller non-zero
 * model_version is its producer's own number (ONNX Runtime's format, e.g. AdapterFormat.set_model_version(1)):
 * it must equal the ONNX model's own ModelProto.model_version when the model declares one, and is not
 * compared otherwise (names, dtypes, fixed dims and ranks are always checked).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_model_version(const mlora_model_t* model, int32_t* out_version);

/**
 * The model's slot table for adapter-aware batching: its size S (0 when the model is not prepared for
 * batching) and how many adapter sets are resident now (0..S-1). A router can use it for affinity.
 * @param[out] out_slots may be NULL. @param[out] out_resident may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: concurrent calls are safe (the resident count may change right after).
 */
MLORA_API mlora_status_t mlora_model_batch_slots(const mlora_model_t* model, size_t* out_slots, size_t* out_resident);

/**
 * Counters of the model's slot table since the model was created (all 0 for a model not prepared for
 * batching). Each run or generation step with per-row adapters counts, per distinct adapter set of its batch,
 * a hit (the set was resident), or a miss (it was written into a slot) and, when that slot held another
 * set (the least recently used one no running call pins), an eviction.
 * @param[out] out_hits may be NULL. @param[out] out_misses may be NULL. @param[out] out_evictions may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: concurrent calls are safe (the counts may change right after).
 */
MLORA_API mlora_status_t mlora_model_batch_slot_stats(const mlora_model_t* model, uint64_t* out_hits, uint64_t* out_misses, uint64_t* out_evictions);

/**
 * How many ONNX Runtime runs the model has made on each of its sessions since it was created: the LoRA
 * graph's and the base graph's (see mlora_model_options_set_base_graph; always 0 when the model has none).
 * Every mlora_model_run, generator pass and engine step counts one.
 * @param[out] out_lora_runs may be NULL. @param[out] out_base_runs may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: concurrent calls are safe (the counts may change right after).
 */
MLORA_API mlora_status_t mlora_model_session_runs(const mlora_model_t* model, uint64_t* out_lora_runs, uint64_t* out_base_runs);

/**
 * Runs the model once (ONNX Runtime's Run argument order: options, inputs, output names).
 * LoRA parameters come from the run options' active adapter set; inputs must not name them.
 * @param[in] options borrowed for the call; NULL = base model.
 * @param[in] input_names copied; input_count UTF-8 names of regular inputs.
 * @param[in] inputs borrowed for the call; input_count tensors.
 * @param[in] output_names copied; output_count names; output_count == 0 means every output in order
 *            (then out_outputs must have room for mlora_model_output_count entries).
 * @param[out] out_outputs caller array of output_count (or output count) slots, each receiving an
 *             owned tensor. On failure no slot is written.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (duplicate or LoRA input name), NOT_FOUND (unknown
 *          input/output name), TYPE_MISMATCH, SHAPE_MISMATCH (rank or fixed dim of an input),
 *          RUNTIME (ONNX Runtime failed; its message is included).
 * Thread-safety: concurrent runs on one model are safe, with the same or different options.
 */
MLORA_API mlora_status_t mlora_model_run(const mlora_model_t* model, const mlora_run_options_t* options, const char* const* input_names, const mlora_tensor_t* const* inputs, size_t input_count, const char* const* output_names, size_t output_count, mlora_tensor_t** out_outputs);

/* ================================================================================================ */
/* Adapter files                                                                                     */
/* ================================================================================================ */

/**
 * Opens an .onnx_adapter file (ONNX Runtime's format) without any model: maps it read-only, verifies
 * it, and exposes its parameters without copying (a parameter whose data is not aligned to its
 * element size is copied once; see mlora_adapter_bytes).
 * @param[in] path copied; UTF-8.
 * @param[out] out_adapter owned; release with mlora_adapter_release.
 * Returns: OK, INVALID_ARGUMENT, NOT_FOUND, IO (not a regular file, mapping failed), FORMAT
 *          (truncated, wrong identifier, format_version != 1, raw_data size != dims, bad dtype).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_adapter_open(const char* path, mlora_adapter_t** out_adapter);

/**
 * As mlora_adapter_open, from a buffer.
 * @param[in] data copied; size bytes.
 * @param[out] out_adapter owned; release with mlora_adapter_release.
 * Thread-safety: safe from any thread.
 * Returns: as mlora_adapter_open, without NOT_FOUND/IO.
 */
MLORA_API mlora_status_t mlora_adapter_open_from_memory(const void* data, size_t size, mlora_adapter_t** out_adapter);

/**
 * Releases an adapter handle. Accepts NULL; never fails. @param[in] adapter owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_adapter_release(mlora_adapter_t* adapter);

/**
 * Versions recorded in the file. Any out pointer may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_versions(const mlora_adapter_t* adapter, int32_t* out_format_version, int32_t* out_adapter_version, int32_t* out_model_version);

/**
 * Memory accounting: bytes of the file mapping (0 for a buffer) and bytes the library had to copy
 * (buffer-loaded adapters, misaligned parameters). Any out pointer may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_bytes(const mlora_adapter_t* adapter, uint64_t* out_bytes_mapped, uint64_t* out_bytes_copied);

/**
 * LoRA rank: the largest rank among its parameters, from names containing "lora_A" (dim 1) or
 * "lora_B" (dim 0); 0 if it has none.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_rank(const mlora_adapter_t* adapter, int64_t* out_rank);

/**
 * Number of parameters in the adapter, in file order.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_param_count(const mlora_adapter_t* adapter, size_t* out_count);

/**
 * Name of parameter number index.
 * @param[out] buf borrowed for the call; receives the UTF-8 name. @param[out] out_len bytes needed/written.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (index), BUFFER_TOO_SMALL.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_param_name(const mlora_adapter_t* adapter, size_t index, char* buf, size_t capacity, size_t* out_len);

/**
 * Parameter number index as a tensor view over the adapter's memory (no copy).
 * @param[out] out_tensor owned; keeps the adapter's memory alive until released.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (index).
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapter_param_tensor(const mlora_adapter_t* adapter, size_t index, mlora_tensor_t** out_tensor);

/**
 * Writes an .onnx_adapter file that ONNX Runtime loads (raw data aligned to 8 bytes). The file is
 * written to a temporary name beside path and renamed, so a reader never sees half a file.
 * @param[in] path copied. @param[in] names copied; count UTF-8 names, unique.
 * @param[in] tensors borrowed for the call; count tensors.
 * Returns: OK, INVALID_ARGUMENT (duplicate/empty name), INVALID_HANDLE, IO.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_adapter_write(const char* path, const char* const* names, const mlora_tensor_t* const* tensors, size_t count, int32_t adapter_version, int32_t model_version);

/* ================================================================================================ */
/* Adapter registry                                                                                  */
/* ================================================================================================ */

/**
 * Creates an empty registry for adapters of one model.
 * @param[in] model borrowed for the call; the registry keeps its own reference.
 * @param[out] out_adapters owned; release with mlora_adapters_release.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_adapters_create(const mlora_model_t* model, mlora_adapters_t** out_adapters);

/**
 * Releases a registry. Accepts NULL; never fails. Run options and generator params that activated its
 * adapters keep those adapters alive. @param[in] adapters owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_adapters_release(mlora_adapters_t* adapters);

/**
 * Loads an .onnx_adapter file under a name: maps it, verifies it, and validates every parameter
 * against the model's LoRA inputs (name, dtype, fixed dim, rank axis consistent between A and B) and
 * a non-zero model_version against the model's (see MLORA_LOAD_IGNORE_MODEL_VERSION).
 * A directory holding adapter_config.json + adapter_model.safetensors is loaded as a PEFT folder: A/B are
 * transposed, the scale (lora_alpha/r, or /sqrt(r) for rsLoRA, with rank/alpha patterns) is folded into
 * B, tensors are converted to the model's LoRA dtype and resolved to its LoRA inputs by layer index and
 * module (self_attn/attn, with or without ".MatMul"); every tensor that matches nothing and every
 * unsupported feature (DoRA, modules_to_save, embedding LoRA, LoRA bias) is an error naming it (FORMAT /
 * NOT_FOUND). Such an adapter is held in memory (bytes_copied) and records the model's version.
 * File lifetime: an .onnx_adapter file is memory-mapped (MAP_PRIVATE) and read in place for as long as any
 * registry, run options, generator params or generator holds the adapter. Replace a loaded file by
 * writing a new file and renaming it over the old path (the mapping keeps the old contents); never
 * truncate or rewrite it in place: a run that reads a page past the new end of a truncated file gets
 * SIGBUS (the process dies, as with any mmap reader), and bytes rewritten in place show up in later runs.
 * For files that may change under a running process pass MLORA_LOAD_COPY: the file is read into private
 * memory (bytes_copied instead of bytes_mapped; pages are no longer shared between processes).
 * Every file read is checked first: a FIFO, directory or device (also as adapter_config.json) is IO,
 * never a hang; JSON nested deeper than 256 levels is FORMAT naming the file.
 * @param[in] path copied. @param[in] name copied; non-empty UTF-8.
 * @param[in] flags MLORA_LOAD_* bits (MLORA_LOAD_REPLACE, MLORA_LOAD_IGNORE_MODEL_VERSION, MLORA_LOAD_COPY).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, NOT_FOUND (file, or a parameter the model lacks),
 *          IO, FORMAT, TYPE_MISMATCH, SHAPE_MISMATCH, VERSION_MISMATCH, ALREADY_EXISTS (name taken
 *          and MLORA_LOAD_REPLACE not given). On failure the registry is unchanged.
 * Thread-safety: safe concurrently with any registry call and with runs.
 */
MLORA_API mlora_status_t mlora_adapters_load(mlora_adapters_t* adapters, const char* path, const char* name, int32_t flags);

/**
 * As mlora_adapters_load, from a buffer holding an .onnx_adapter file (always copied; MLORA_LOAD_COPY is
 * accepted and changes nothing). size is checked against the format's 2 GiB limit before anything is read
 * or allocated (FORMAT).
 * @param[in] data copied; size bytes. @param[in] name copied; UTF-8.
 */
MLORA_API mlora_status_t mlora_adapters_load_from_memory(mlora_adapters_t* adapters, const void* data, size_t size, const char* name, int32_t flags);

/**
 * Removes a name. The name is gone at once; the adapter's memory is freed when the last run options,
 * generator params or adapter handle using it is released. Never breaks a holder.
 * @param[in] name copied.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, NOT_FOUND.
 * Thread-safety: safe concurrently with any registry call and with runs.
 */
MLORA_API mlora_status_t mlora_adapters_unload(mlora_adapters_t* adapters, const char* name);

/**
 * Names of the loaded adapters, sorted, written one after another each with its NUL terminator.
 * @param[out] buf borrowed for the call; may be NULL if capacity is 0. @param[out] out_len total bytes needed/written.
 * @param[out] out_count number of names (may be NULL).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, BUFFER_TOO_SMALL.
 * Thread-safety: concurrent calls are safe; a concurrent load may make a retry needed.
 */
MLORA_API mlora_status_t mlora_adapters_names(const mlora_adapters_t* adapters, char* buf, size_t capacity, size_t* out_len, size_t* out_count);

/**
 * The adapter loaded under a name, for inspection (see mlora_adapter_*).
 * @param[in] name copied.
 * @param[out] out_adapter owned; keeps that version alive even after unload or replace.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT, NOT_FOUND.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_adapters_get(const mlora_adapters_t* adapters, const char* name, mlora_adapter_t** out_adapter);

/* ================================================================================================ */
/* Run options                                                                                       */
/* ================================================================================================ */

/**
 * Creates run options with no active adapters (runs use the base model).
 * @param[out] out_options owned; release with mlora_run_options_release.
 * Returns: OK, INVALID_ARGUMENT, OUT_OF_MEMORY.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_run_options_create(mlora_run_options_t** out_options);

/**
 * Releases run options and their references to adapters. Accepts NULL; never fails. @param[in] options owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_run_options_release(mlora_run_options_t* options);

/**
 * Sets the active adapter set: count == 0 means the base model; several adapters apply their weighted
 * sum exactly (adapters on the same parameter are concatenated along the rank axis with B scaled by
 * their weights). The set is resolved now: the options hold references to the adapters as loaded at
 * this moment (a later unload or replace does not affect them). Composite tensors are built once and
 * cached per registry.
 * @param[in] adapters borrowed for the call (may be NULL when count == 0).
 * @param[in] names copied; count UTF-8 names, no duplicates.
 * @param[in] weights copied; count finite floats, or NULL for all 1.0.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (duplicate name, non-finite weight, bad UTF-8),
 *          NOT_FOUND (a name not loaded; the message names it). On failure the options are unchanged.
 * Thread-safety: safe from any thread, also while runs use these options: a run uses the selection
 *                set before it started.
 */
MLORA_API mlora_status_t mlora_run_options_set_active_adapters(mlora_run_options_t* options, const mlora_adapters_t* adapters, const char* const* names, const float* weights, size_t count);

/**
 * Number of adapters in the active set (per-row sets: the number of distinct adapters over all rows).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_run_options_active_count(const mlora_run_options_t* options, size_t* out_count);

/**
 * Sets one adapter set per batch row, for runs that serve rows with different adapters in one Run
 * (adapter-aware batching). Needs a model rewritten once with `multilora prepare-batching IN.onnx OUT.onnx`
 * (stacked LoRA inputs plus the int64 input "lora_slot"). names and weights are flattened row by row:
 * row i uses the next row_counts[i] entries (0 = the base model for that row). Each distinct row set is
 * composed exactly as by mlora_run_options_set_active_adapters (weighted sum; rank concatenation with B
 * scaled), now. Each run places the distinct sets in the model's slot table (see
 * mlora_model_options_set_batch_slots; resident sets are reused, the least recently used unpinned ones
 * evicted) and feeds each row its slot; a run waits while other runs pin the slots it needs. The options
 * hold references to the adapters as loaded now.
 * Replaces any set given by mlora_run_options_set_active_adapters (and vice versa). Every later run with
 * these options must have batch_size rows.
 * @param[in] adapters borrowed for the call; a registry of a prepared model.
 * @param[in] names copied; sum(row_counts) UTF-8 names, no duplicate within a row.
 * @param[in] weights copied; sum(row_counts) finite floats, or NULL for all 1.0.
 * @param[in] row_counts copied; batch_size counts.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (model not prepared for batching: the message names it and
 *          the tool to run; batch_size 0; more distinct row sets than the table's S-1 slots, naming both;
 *          duplicate name within a row; non-finite weight; bad UTF-8),
 *          NOT_FOUND (a name not loaded; the message names it and its row). mlora_model_run with these
 *          options returns SHAPE_MISMATCH (naming both sizes) when its inputs' batch dim differs from
 *          batch_size. On failure the options are unchanged.
 * Thread-safety: safe from any thread, also while runs use these options: a run uses the selection
 *                set before it started.
 */
MLORA_API mlora_status_t mlora_run_options_set_active_adapters_per_row(mlora_run_options_t* options, const mlora_adapters_t* adapters, const char* const* names, const float* weights, const size_t* row_counts, size_t batch_size);


/* ================================================================================================ */
/* Generation                                                                                        */
/* ================================================================================================ */
/*
 * Generation needs a model folder with genai_config.json (ONNX Runtime GenAI's layout: decoder file,
 * input/output names, eos/pad/bos ids, context length, search defaults). Token ids are int32.
 * Search option names are onnxruntime-genai's: numbers "max_length", "min_length", "top_k", "top_p",
 * "temperature", "repetition_penalty", "random_seed", "batch_size", "max_new_tokens" (0 = no limit beyond
 * max_length; tokens chosen after the prompt); booleans "do_sample".
 */

/**
 * Creates generator params with the model's search defaults and no active adapters.
 * @param[in] model borrowed for the call; the params keep their own reference.
 * @param[out] out_params owned; release with mlora_generator_params_release. The params object is
 *             reference-counted inside the library: generators keep it alive after this release.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (the model has no genai_config.json).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_generator_params_create(const mlora_model_t* model, mlora_generator_params_t** out_params);

/**
 * Releases this reference to generator params (and, with the last one, their adapters). Accepts NULL; never fails.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_generator_params_release(mlora_generator_params_t* params);

/**
 * Sets a numeric search option by name (see the section comment).
 * @param[in] name copied.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (unknown name, value out of range; the message names both).
 * Thread-safety: safe from any thread (the params are internally synchronised); a generator created
 *                before the change keeps the value it copied.
 */
MLORA_API mlora_status_t mlora_generator_params_set_search_number(mlora_generator_params_t* params, const char* name, double value);

/**
 * Sets a boolean search option by name ("do_sample"); value is 0 or 1.
 * @param[in] name copied; UTF-8.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT.
 * Thread-safety: safe from any thread (the params are internally synchronised); a generator created
 *                before the change keeps the value it copied.
 */
MLORA_API mlora_status_t mlora_generator_params_set_search_bool(mlora_generator_params_t* params, const char* name, int32_t value);

/**
 * Reads a search option by name (booleans read as 0.0/1.0).
 * @param[in] name copied; UTF-8.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (unknown name).
 * Thread-safety: concurrent calls are safe.
 */
MLORA_API mlora_status_t mlora_generator_params_get_search_number(const mlora_generator_params_t* params, const char* name, double* out_value);

/**
 * Sets the stop tokens: a sequence ends after choosing one of them (the token is kept, like eos).
 * count == 0 clears them. Generators and engine requests copy them when created / submitted.
 * @param[in] tokens copied; count ids, each in 0..vocab_size-1 (tokens may be NULL when count is 0).
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (NULL tokens with count > 0, an id outside the vocabulary).
 * Thread-safety: not concurrently with other use of the same params.
 */
MLORA_API mlora_status_t mlora_generator_params_set_stop_tokens(mlora_generator_params_t* params, const int32_t* tokens, size_t count);

/**
 * Sets the adapters generators created from these params start with; same rules as
 * mlora_run_options_set_active_adapters. The params hold references to the adapters until they are
 * released or the set is changed.
 * @param[in] adapters borrowed for the call. @param[in] names copied; count UTF-8 names.
 * @param[in] weights copied; count floats, or NULL for all 1.0.
 * Returns: as mlora_run_options_set_active_adapters, plus INVALID_ARGUMENT for a registry of another model.
 * Thread-safety: safe from any thread (the params are internally synchronised); a generator created
 *                before the change keeps the value it copied.
 */
MLORA_API mlora_status_t mlora_generator_params_set_active_adapters(mlora_generator_params_t* params, const mlora_adapters_t* adapters, const char* const* names, const float* weights, size_t count);

/**
 * Sets one adapter set per sequence for generators created from these params (adapter-aware batching;
 * the arguments are those of mlora_run_options_set_active_adapters_per_row). batch_size must equal the
 * params' "batch_size" when a generator is created. Every sequence gets the tokens it would get generated
 * alone with its own set. Replaces any set given by mlora_generator_params_set_active_adapters.
 * @param[in] adapters borrowed for the call; a registry of a prepared model.
 * @param[in] names copied; sum(row_counts) UTF-8 names. @param[in] weights copied; or NULL for all 1.0.
 * @param[in] row_counts copied; batch_size counts.
 * Returns: as mlora_run_options_set_active_adapters_per_row, plus INVALID_ARGUMENT for a registry of
 *          another model. mlora_generator_create returns INVALID_ARGUMENT (naming both sizes) when
 *          batch_size differs from "batch_size".
 * Thread-safety: safe from any thread (the params are internally synchronised); a generator created
 *                before the change keeps the value it copied.
 */
MLORA_API mlora_status_t mlora_generator_params_set_active_adapters_per_row(mlora_generator_params_t* params, const mlora_adapters_t* adapters, const char* const* names, const float* weights, const size_t* row_counts, size_t batch_size);

/**
 * Creates a generator; it copies the params' search options and active set and keeps the params alive.
 * @param[in] model borrowed for the call; kept alive by the generator.
 * @param[in] params borrowed for the call; kept alive by the generator.
 * @param[out] out_generator owned; release with mlora_generator_release.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (params of another model, model without genai_config).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_generator_create(const mlora_model_t* model, const mlora_generator_params_t* params, mlora_generator_t** out_generator);

/**
 * Releases a generator. Accepts NULL; never fails. @param[in] generator owned.
 * Thread-safety: safe from any thread, also while other threads' calls use the handle (see the
 * threading model).
 */
MLORA_API void mlora_generator_release(mlora_generator_t* generator);

/**
 * Appends prompt tokens to every sequence (batch size 1: the only sequence) and runs the prompt pass.
 * @param[in] tokens copied; count token ids.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (token id outside the vocabulary, count 0, batch > 1),
 *          SHAPE_MISMATCH (sequence would exceed max_length or the context length), RUNTIME.
 * Thread-safety: one call at a time per generator; overlapping another call on it returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_append_tokens(mlora_generator_t* generator, const int32_t* tokens, size_t count);

/**
 * Appends one prompt per sequence for a batch (left-padded with the pad token, masked out).
 * @param[in] tokens copied; the prompts concatenated. @param[in] lengths copied; batch_size lengths.
 * Returns: as mlora_generator_append_tokens, plus INVALID_ARGUMENT when batch_size differs from the
 *          params' "batch_size" or a length is 0.
 * Thread-safety: one call at a time per generator; overlapping another call on it returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_append_token_sequences(mlora_generator_t* generator, const int32_t* tokens, const size_t* lengths, size_t batch_size);

/**
 * Runs one decode step and appends one token to every sequence that is not done.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (no prompt appended yet, or already done), RUNTIME.
 * Thread-safety: one call at a time per generator; overlapping another call on it returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_generate_next_token(mlora_generator_t* generator);

/**
 * onnxruntime-genai's rewind_to (batch size 1): keeps the first new_length tokens of the sequence and of
 * the KV cache, so generation continues from there (mlora_generator_append_tokens,
 * mlora_generator_get_logits or mlora_generator_generate_next_token). 0 starts over: append a prompt again.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (batch size > 1, new_length beyond the sequence, nothing
 *          appended yet), RUNTIME.
 * Thread-safety: a changing call: overlapping any other call on the generator returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_rewind_to(mlora_generator_t* generator, size_t new_length);

/**
 * Whether every sequence is done (eos reached after min_length, or max_length reached): 1 or 0.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT.
 * Thread-safety: may overlap other reading calls on the generator; overlapping a changing call
 *                (append_*, generate_next_token, set_active_adapters*) returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_is_done(const mlora_generator_t* generator, int32_t* out_done);

/**
 * Number of sequences in the generator's batch.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT.
 * Thread-safety: may overlap other reading calls on the generator; overlapping a changing call
 *                (append_*, generate_next_token, set_active_adapters*) returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_batch_size(const mlora_generator_t* generator, size_t* out_batch_size);

/**
 * Tokens of sequence index (prompt then generated, without left padding). *out_len counts tokens.
 * @param[out] buf borrowed for the call; receives up to capacity token ids.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (index), BUFFER_TOO_SMALL (*out_len = tokens needed).
 * Thread-safety: may overlap other reading calls on the generator; overlapping a changing call
 *                (append_*, generate_next_token, set_active_adapters*) returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_get_sequence(const mlora_generator_t* generator, size_t index, int32_t* buf, size_t capacity, size_t* out_len);

/**
 * The token each sequence got in the last step (batch_size ids). *out_len counts tokens.
 * @param[out] buf borrowed for the call; receives up to capacity token ids.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (no step yet), BUFFER_TOO_SMALL.
 * Thread-safety: may overlap other reading calls on the generator; overlapping a changing call
 *                (append_*, generate_next_token, set_active_adapters*) returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_get_next_tokens(const mlora_generator_t* generator, int32_t* buf, size_t capacity, size_t* out_len);

/**
 * The logits the next mlora_generator_generate_next_token will choose from, as float32 [batch, vocab]
 * (before search processing) -- onnxruntime-genai's get_logits: right after the prompts, those of each
 * prompt's last position; after a step, this call first runs the model on the tokens that step chose (the
 * pass the next step would run otherwise, so it is not run twice and tokens are unchanged; an adapter set
 * switched after this call applies from the following token). Once the generator is done, the logits the
 * last tokens were chosen from (no pass). The generator handle is const here but its cache advances.
 * @param[out] out_tensor owned; a copy.
 * Returns: OK, INVALID_HANDLE, BUSY, INVALID_ARGUMENT (no pass yet), RUNTIME.
 * Thread-safety: a changing call (it may run the pending pass): overlapping any other call on the generator
 *                returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_get_logits(const mlora_generator_t* generator, mlora_tensor_t** out_tensor);

/**
 * Switches the active adapter set between steps (count == 0 = base model, which onnxruntime-genai
 * cannot do). Tokens already processed keep the KV cache computed with the previous set.
 * @param[in] adapters borrowed for the call. @param[in] names copied. @param[in] weights copied; or NULL.
 * Returns: as mlora_generator_params_set_active_adapters, plus BUSY.
 * Thread-safety: one call at a time per generator; overlapping another call on it returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_set_active_adapters(mlora_generator_t* generator, const mlora_adapters_t* adapters, const char* const* names, const float* weights, size_t count);

/**
 * Switches to one adapter set per sequence between steps (see
 * mlora_generator_params_set_active_adapters_per_row); batch_size must equal the generator's batch size.
 * Tokens already processed keep the KV cache computed with the previous sets.
 * @param[in] adapters borrowed for the call. @param[in] names copied. @param[in] weights copied; or NULL.
 * @param[in] row_counts copied; batch_size counts.
 * Returns: as mlora_generator_params_set_active_adapters_per_row, plus BUSY, INVALID_ARGUMENT (naming both
 *          sizes) when batch_size differs from the generator's.
 * Thread-safety: one call at a time per generator; overlapping another call on it returns BUSY.
 */
MLORA_API mlora_status_t mlora_generator_set_active_adapters_per_row(mlora_generator_t* generator, const mlora_adapters_t* adapters, const char* const* names, const float* weights, const size_t* row_counts, size_t batch_size);

/* ================================================================================================ */
/* Engine                                                                                            */
/* ================================================================================================ */
/*
 * Continuous batching of generation requests, each with its own adapter set and search options, over
 * one GenAI model folder whose model.onnx was prepared with `multilora prepare-batching` and whose decoder
 * has the layout of onnxruntime-genai's model builder (GroupQueryAttention, no position_ids).
 * The engine allocates one KV cache of max_batch_size rows at creation. Requests are queued (FIFO) and
 * admitted into free rows between steps, as long as the running rows plus the newcomer use at most
 * batch_slots - 1 distinct adapter sets (a request whose set cannot get a slot waits; nothing in use is
 * evicted). A step runs one decode pass for every decoding row, then prefills admitted prompts in chunks
 * with the rest of the step's token budget (max_tokens_per_step). A prompt chunk runs at batch 1 on the
 * newcomer's row of the KV cache (ONNX Runtime's GroupQueryAttention takes more than one new token per row
 * over a filled cache only at batch 1); a step lasts one decode pass plus its chunks, so max_tokens_per_step
 * trades time to first token against the decoding rows' inter-token latency. A finished or cancelled
 * request's row is reused by the next request.
 * By default a worker thread owned by the engine steps whenever there is work; with the worker disabled
 * the host calls mlora_engine_step (deterministic: which step a request joins is up to the host).
 * Every chosen token is streamed, including the eos or stop token that ends a request.
 */
typedef int32_t mlora_finish_reason_t;
#define MLORA_FINISH_NONE 0      /* not finished yet */
#define MLORA_FINISH_LENGTH 1    /* max_length or max_new_tokens reached */
#define MLORA_FINISH_EOS 2       /* an eos token was chosen */
#define MLORA_FINISH_STOP 3      /* a stop token was chosen */
#define MLORA_FINISH_CANCELLED 4 /* mlora_request_cancel, release of the request, or the engine closed (error CLOSED) */
#define MLORA_FINISH_ERROR 5     /* the model run failed; mlora_request_error tells why */

/**
 * Creates engine options with the defaults: max_batch_size 16, max_tokens_per_step 64, max_queue 1024,
 * worker on.
 * @param[out] out_options owned; release with mlora_engine_options_release.
 * Returns: OK, INVALID_ARGUMENT, OUT_OF_MEMORY.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_engine_options_create(mlora_engine_options_t** out_options);

/** Releases engine options. Accepts NULL; never fails. @param[in] options owned. */
MLORA_API void mlora_engine_options_release(mlora_engine_options_t* options);

/**
 * Rows of the batched KV cache (1..4096): how many requests decode together.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (out of range).
 * Thread-safety: not concurrently with other use of the same options.
 */
MLORA_API mlora_status_t mlora_engine_options_set_max_batch_size(mlora_engine_options_t* options, size_t max_batch_size);

/**
 * Token budget of one step (>= 1): one per decoding row, the rest (at least 1) for prompt chunks; while no
 * row decodes, prompts are prefilled whole.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (0).
 * Thread-safety: not concurrently with other use of the same options.
 */
MLORA_API mlora_status_t mlora_engine_options_set_max_tokens_per_step(mlora_engine_options_t* options, size_t max_tokens);

/**
 * Requests that may wait for a row; mlora_engine_submit over it returns BUSY. 0 refuses every request that
 * would wait.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: not concurrently with other use of the same options.
 */
MLORA_API mlora_status_t mlora_engine_options_set_max_queue(mlora_engine_options_t* options, size_t max_queue);

/**
 * 1 (default): the engine owns a worker thread that steps whenever there is work. 0: no thread; the host
 * drives the engine with mlora_engine_step.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (not 0 or 1).
 * Thread-safety: not concurrently with other use of the same options.
 */
MLORA_API mlora_status_t mlora_engine_options_set_worker(mlora_engine_options_t* options, int32_t enable);

/**
 * Creates an engine over a model and allocates its KV cache; starts the worker unless disabled.
 * @param[in] model borrowed for the call; the engine keeps its own reference.
 * @param[in] options borrowed for the call; NULL = defaults.
 * @param[out] out_engine owned; release with mlora_engine_release.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (no genai_config.json; model not prepared for batching — the
 *          message names `multilora prepare-batching`; a decoder without the builder's layout), FORMAT,
 *          OUT_OF_MEMORY.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_engine_create(const mlora_model_t* model, const mlora_engine_options_t* options, mlora_engine_t** out_engine);

/**
 * Closes the engine (as mlora_engine_close) and releases the handle. Request handles stay valid. Accepts
 * NULL; never fails. @param[in] engine owned.
 */
MLORA_API void mlora_engine_release(mlora_engine_t* engine);

/**
 * Closes the engine: every queued and running request finishes with MLORA_FINISH_CANCELLED and error status
 * CLOSED, the worker thread is joined (an in-flight step completes first), and later submits return CLOSED.
 * Calling it again does nothing.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: safe from any thread, concurrently with every other engine and request call.
 */
MLORA_API mlora_status_t mlora_engine_close(mlora_engine_t* engine);

/**
 * Runs one step (drop cancelled requests, admit, one decode pass, prefill chunks) on an engine created with
 * the worker disabled.
 * @param[out] out_has_work may be NULL; 1 if requests are still queued or running after the step, else 0.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (the engine has a worker), CLOSED. A failing model run is
 *          not a step error: the requests it served finish with MLORA_FINISH_ERROR.
 * Thread-safety: safe from any thread; concurrent steps run one after the other.
 */
MLORA_API mlora_status_t mlora_engine_step(mlora_engine_t* engine, int32_t* out_has_work);

/**
 * Queues a request: one prompt with the params' search options (batch_size must be 1), stop tokens and
 * active adapter set, copied now; the request keeps the params and their adapters alive, so unloading an
 * adapter during the request is safe. Returns at once.
 * @param[in] params borrowed for the call. @param[in] tokens copied; count prompt ids.
 * @param[out] out_request owned; release with mlora_request_release.
 * Params (and their adapters) of the engine's model are used as they are; params of the unprepared folder the
 * model was prepared from (the same LoRA inputs in the same order, vocabulary and context) are accepted too:
 * each such adapter set is built once for the engine's model from the same adapters and weights.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (count 0, NULL tokens, an id outside the vocabulary, params
 *          of another model, per-row adapter sets, batch_size != 1), SHAPE_MISMATCH (the prompt is longer than
 *          the context length, or leaves no room for a new token within max_length), BUSY (the queue is
 *          full), CLOSED.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_engine_submit(mlora_engine_t* engine, const mlora_generator_params_t* params, const int32_t* tokens, size_t count, mlora_request_t** out_request);

/**
 * Counters: requests waiting, requests holding a row, requests finished, steps run, tokens decoded and
 * prompt tokens prefilled since creation. Any out pointer may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: safe from any thread (a snapshot).
 */
MLORA_API mlora_status_t mlora_engine_stats(const mlora_engine_t* engine, uint64_t* out_queued, uint64_t* out_running, uint64_t* out_finished, uint64_t* out_steps, uint64_t* out_decode_tokens, uint64_t* out_prefill_tokens);

/**
 * Reads the request's new token ids: waits up to timeout_ms (0 = do not wait, a poll; < 0 = no limit) until
 * at least one token is available or the request finished, then moves up to capacity tokens into buf.
 * @param[out] buf borrowed for the call; capacity ints; may be NULL when capacity is 0.
 * @param[out] out_count tokens written. @param[out] out_done may be NULL; 1 when the request finished and
 *             every token was read.
 * Returns: OK (also on timeout, with *out_count 0), INVALID_HANDLE (NULL or released request),
 *          INVALID_ARGUMENT (NULL buf with capacity > 0, NULL out_count).
 * Thread-safety: safe from any thread; concurrent readers of one request split its tokens between them.
 */
MLORA_API mlora_status_t mlora_request_read(mlora_request_t* request, int32_t* buf, size_t capacity, int32_t timeout_ms, size_t* out_count, int32_t* out_done);

/**
 * Cancels the request; its row is freed at the next step and it finishes with MLORA_FINISH_CANCELLED.
 * Tokens already produced stay readable. Cancelling a finished or already cancelled request does nothing.
 * @param[out] out_cancelled may be NULL; 1 if this call cancelled it, 0 if it was finished or cancelled.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_request_cancel(mlora_request_t* request, int32_t* out_cancelled);

/**
 * Why the request finished (MLORA_FINISH_*), MLORA_FINISH_NONE while it runs or waits.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (NULL out_reason).
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_request_finish_reason(const mlora_request_t* request, mlora_finish_reason_t* out_reason);

/**
 * Usage: prompt tokens, tokens generated so far, seconds from submit to admission (so far, while queued),
 * seconds from submit to the first token (-1 before it). Any out pointer may be NULL.
 * Returns: OK, INVALID_HANDLE.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_request_usage(const mlora_request_t* request, uint64_t* out_prompt_tokens, uint64_t* out_generated_tokens, double* out_queue_seconds, double* out_ttft_seconds);

/**
 * The error of a request that finished with MLORA_FINISH_ERROR, or CLOSED for a request cancelled by
 * mlora_engine_close; OK (and an empty message) otherwise.
 * @param[out] out_status may be NULL. @param[out] buf borrowed for the call; receives the UTF-8 message; @param[out] out_len bytes
 *             needed/written including NUL; required.
 * Returns: OK, INVALID_HANDLE, INVALID_ARGUMENT (NULL out_len), BUFFER_TOO_SMALL.
 * Thread-safety: safe from any thread.
 */
MLORA_API mlora_status_t mlora_request_error(const mlora_request_t* request, mlora_status_t* out_status, char* buf, size_t capacity, size_t* out_len);

/**
 * Releases the request handle. A request that has not finished is cancelled (nobody can read it any more).
 * Accepts NULL; never fails. @param[in] request owned.
 */
MLORA_API void mlora_request_release(mlora_request_t* request);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MULTILORA_H_ */
