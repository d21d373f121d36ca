/*
 * multilora.hpp — a thin, header-only C++17 RAII wrapper over the C ABI in multilora.h.
 *
 * Every class owns one handle (detail::Handle, an atomic pointer released with the matching mlora_*_release),
 * so objects are move-only and release their handle exactly once. Every fallible call checks its status
 * and, on failure, reads mlora_last_error_message() at once on the same thread and throws
 * multilora::Error(status, message) — the message is the library's text, verbatim.
 *
 * Depends on nothing but multilora.h and the C++ standard library. Lifetimes follow the C ABI: handles
 * may be released in any order (a registry keeps its model alive, run options keep their adapters).
 * Thread-safety is the C ABI's (see multilora.h): const methods map to const handles.
 */
#ifndef MULTILORA_HPP_
#define MULTILORA_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "multilora.h"

namespace multilora {

// ================================================================================================
// Errors
// ================================================================================================

/** A failed C call: its status, the status's symbolic name, and the library's message verbatim. */
class Error : public std::runtime_error {
 public:
  Error(mlora_status_t status, const std::string& message) : std::runtime_error(message), status_(status) {}
  mlora_status_t status() const noexcept { return status_; }
  /** "MLORA_STATUS_NOT_FOUND" etc. (static string from the library). */
  const char* status_name() const noexcept { return mlora_status_name(status_); }
  /** The library's message (same text as what()). */
  std::string message() const { return what(); }

 private:
  mlora_status_t status_;
};

namespace detail {

/** Throws Error with the calling thread's last error message when status is not OK. */
inline void check(mlora_status_t status) {
  if (status != MLORA_STATUS_OK) {
    throw Error(status, mlora_last_error_message());
  }
}

/**
 * Reads a caller-buffer string: a size query, then a fill; repeats if the size grew in between.
 * fill(char* buf, size_t capacity, size_t* out_len) -> mlora_status_t.
 */
template <class Fill>
std::string read_string(Fill&& fill) {
  size_t len = 0;
  mlora_status_t status = fill(nullptr, 0, &len);
  for (int attempt = 0; status == MLORA_STATUS_BUFFER_TOO_SMALL && attempt < 8; ++attempt) {
    std::string buf(len, '\0');
    size_t needed = 0;
    status = fill(&buf[0], buf.size(), &needed);
    if (status == MLORA_STATUS_OK) {
      buf.resize(needed > 0 ? needed - 1 : 0);  // drop the terminating NUL
      return buf;
    }
    len = needed;
  }
  check(status);
  return std::string();  // only reachable if the library wrote an empty string into no buffer
}

/** As read_string for NUL-separated lists (count strings, each with its terminator). */
template <class Fill>
std::vector<std::string> read_string_list(Fill&& fill) {
  size_t len = 0;
  size_t count = 0;
  mlora_status_t status = fill(nullptr, 0, &len, &count);
  std::string buf;
  for (int attempt = 0; status == MLORA_STATUS_BUFFER_TOO_SMALL && attempt < 8; ++attempt) {
    buf.assign(len, '\0');
    size_t needed = 0;
    status = fill(&buf[0], buf.size(), &needed, &count);
    len = needed;
  }
  check(status);
  std::vector<std::string> out;
  out.reserve(count);
  size_t pos = 0;
  for (size_t i = 0; i < count && pos < len; ++i) {
    const size_t end = buf.find('\0', pos);
    const size_t stop = end == std::string::npos ? len : end;
    out.emplace_back(buf, pos, stop - pos);
    pos = stop + 1;
  }
  return out;
}

/**
 * Owns one handle and releases it exactly once. The pointer is atomic, so reset() (close) on one thread
 * while another thread is inside a call that read get() is no data race here: the library keeps the object
 * alive for that call, which completes or returns MLORA_STATUS_INVALID_HANDLE.
 */
template <class T, void (*Release)(T*)>
class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(T* owned) noexcept : p_(owned) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept : p_(other.release()) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  T* get() const noexcept { return p_.load(std::memory_order_acquire); }
  T* release() noexcept { return p_.exchange(nullptr, std::memory_order_acq_rel); }
  void reset(T* owned = nullptr) noexcept {
    T* old = p_.exchange(owned, std::memory_order_acq_rel);
    if (old != nullptr) Release(old);
  }
  bool operator==(std::nullptr_t) const noexcept { return get() == nullptr; }
  bool operator!=(std::nullptr_t) const noexcept { return get() != nullptr; }

 private:
  std::atomic<T*> p_{nullptr};
};

/**
 * s.c_str() for the C ABI, which ends strings at the first NUL: a std::string holding a NUL byte would be
 * silently cut there (another file, another adapter name), so it is refused with INVALID_ARGUMENT naming
 * `what` and the text before the NUL.
 */
inline const char* c_str(const std::string& s, const char* what) {
  const size_t nul = s.find('\0');
  if (nul != std::string::npos) {
    throw Error(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " '" + s.substr(0, nul) +
                                                   "\\0...' contains a NUL byte at offset " + std::to_string(nul));
  }
  return s.c_str();
}

inline std::vector<const char*> c_strings(const std::vector<std::string>& strings, const char* what = "name") {
  std::vector<const char*> out;
  out.reserve(strings.size());
  for (const std::string& s : strings) out.push_back(c_str(s, what));
  return out;
}

}  // namespace detail

// ================================================================================================
// Library
// ================================================================================================

/** Version of the loaded library, "MAJOR.MINOR.PATCH". */
inline std::string version_string() { return mlora_version_string(); }
/** ABI version of the loaded library (compare with MLORA_ABI_VERSION). */
inline int32_t abi_version() noexcept { return mlora_abi_version(); }
/** Symbolic name of a status, e.g. "MLORA_STATUS_NOT_FOUND". */
inline std::string status_name(mlora_status_t status) { return mlora_status_name(status); }

/** Throws Error(VERSION_MISMATCH) naming both numbers if the loaded library has another ABI version. */
inline void check_abi_version() {
  const int32_t loaded = mlora_abi_version();
  if (loaded != MLORA_ABI_VERSION) {
    throw Error(MLORA_STATUS_VERSION_MISMATCH, "multilora: the loaded library has ABI version " +
                                                   std::to_string(loaded) + ", but these bindings were built for " +
                                                   std::to_string(MLORA_ABI_VERSION));
  }
}

/** Sets the libonnxruntime path to load (before the first model is created). */
inline void set_ort_library_path(const std::string& path) {
  detail::check(mlora_set_ort_library_path(detail::c_str(path, "path")));
}

struct OrtInfo {
  std::string path;     // the libonnxruntime file loaded
  std::string version;  // e.g. "1.32.0"
};

/** Loads ONNX Runtime if needed and reports which library file and version are in use. */
inline OrtInfo ort_info() {
  size_t path_len = 0;
  size_t version_len = 0;
  mlora_status_t status = mlora_ort_info(nullptr, 0, &path_len, nullptr, 0, &version_len);
  OrtInfo info;
  for (int attempt = 0; status == MLORA_STATUS_BUFFER_TOO_SMALL && attempt < 8; ++attempt) {
    info.path.assign(path_len > 0 ? path_len : 1, '\0');
    info.version.assign(version_len > 0 ? version_len : 1, '\0');
    status =
        mlora_ort_info(&info.path[0], info.path.size(), &path_len, &info.version[0], info.version.size(), &version_len);
  }
  detail::check(status);
  info.path.resize(path_len > 0 ? path_len - 1 : 0);
  info.version.resize(version_len > 0 ? version_len - 1 : 0);
  return info;
}

/** Releases the ONNX Runtime environment early (every handle must have been released). */
inline void shutdown() { detail::check(mlora_shutdown()); }

/**
 * How ONNX Runtime's intra-op threads are shared (before the first model only): intra_op_threads -1 = a pool
 * per session, 0 = one global pool of ONNX Runtime's default size (default), n = one global pool of n;
 * allow_spinning 1 (default) or 0 (faster on machines shared with other busy processes). See
 * mlora_set_global_threads.
 */
inline void set_global_threads(int32_t intra_op_threads, bool allow_spinning) {
  detail::check(mlora_set_global_threads(intra_op_threads, allow_spinning ? 1 : 0));
}

// ================================================================================================
// Tensor
// ================================================================================================

/** Size in bytes of one element of dtype (mlora_dtype_size); 0 for an unknown dtype. */
inline size_t dtype_size(mlora_dtype_t dtype) noexcept {
  size_t size = 0;
  return mlora_dtype_size(dtype, &size) == MLORA_STATUS_OK ? size : 0;
}

/** Name of dtype (mlora_dtype_name): "float32", ..., "bfloat16"; "unknown" for an unknown dtype. */
inline std::string dtype_name(mlora_dtype_t dtype) { return mlora_dtype_name(dtype); }

/** A tensor: element type, shape and a contiguous row-major buffer. */
class Tensor {
 public:
  Tensor() = default;
  /** Takes ownership of a tensor handle (may be NULL). */
  explicit Tensor(mlora_tensor_t* owned) noexcept : handle_(owned) {}

  /** A tensor holding a copy of data (data_bytes must equal element count * element size). */
  static Tensor copy(mlora_dtype_t dtype, const std::vector<int64_t>& shape, const void* data, size_t data_bytes) {
    mlora_tensor_t* out = nullptr;
    detail::check(mlora_tensor_create(dtype, shape.data(), shape.size(), data, data_bytes, &out));
    return Tensor(out);
  }

  /** A tensor over caller memory, not copied: data must outlive the tensor and every run using it. */
  static Tensor borrow(mlora_dtype_t dtype, const std::vector<int64_t>& shape, const void* data, size_t data_bytes) {
    mlora_tensor_t* out = nullptr;
    detail::check(mlora_tensor_create_borrowed(dtype, shape.data(), shape.size(), data, data_bytes, &out));
    return Tensor(out);
  }

  mlora_dtype_t dtype() const {
    mlora_dtype_t dtype = 0;
    detail::check(mlora_tensor_dtype(get(), &dtype));
    return dtype;
  }

  std::vector<int64_t> shape() const {
    size_t ndim = 0;
    mlora_status_t status = mlora_tensor_shape(get(), nullptr, 0, &ndim);
    if (status == MLORA_STATUS_OK) return {};
    if (status != MLORA_STATUS_BUFFER_TOO_SMALL) detail::check(status);
    std::vector<int64_t> shape(ndim);
    detail::check(mlora_tensor_shape(get(), shape.data(), shape.size(), &ndim));
    shape.resize(ndim);
    return shape;
  }

  /** Borrowed pointer to the contents, valid while this tensor lives. Never write through it. */
  const void* data() const {
    const void* data = nullptr;
    size_t bytes = 0;
    detail::check(mlora_tensor_data(get(), &data, &bytes));
    return data;
  }

  size_t bytes() const {
    const void* data = nullptr;
    size_t bytes = 0;
    detail::check(mlora_tensor_data(get(), &data, &bytes));
    return bytes;
  }

  template <class T>
  const T* data_as() const {
    return static_cast<const T*>(data());
  }

  mlora_tensor_t* get() const noexcept { return handle_.get(); }
  /** Gives up ownership of the handle. */
  mlora_tensor_t* release() noexcept { return handle_.release(); }
  /** Releases the handle now (idempotent). */
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_tensor_t, mlora_tensor_release> handle_;
};

// ================================================================================================
// Model options and model
// ================================================================================================

class ModelOptions {
 public:
  ModelOptions() {
    mlora_model_options_t* out = nullptr;
    detail::check(mlora_model_options_create(&out));
    handle_.reset(out);
  }

  ModelOptions& set_log_level(int32_t level) {
    detail::check(mlora_model_options_set_log_level(get(), level));
    return *this;
  }
  ModelOptions& set_intra_op_threads(int32_t threads) {
    detail::check(mlora_model_options_set_intra_op_threads(get(), threads));
    return *this;
  }
  ModelOptions& set_config_entry(const std::string& key, const std::string& value) {
    detail::check(mlora_model_options_set_config_entry(get(), detail::c_str(key, "config key"),
                                                       detail::c_str(value, "config value")));
    return *this;
  }
  /**
   * Slot-table size S (slot 0 = the base model) of a model prepared for per-row adapters (`multilora
   * prepare-batching`): S-1 adapter sets stay resident, least recently used out. Default 17; 2..4097.
   */
  ModelOptions& set_batch_slots(size_t slots) {
    detail::check(mlora_model_options_set_batch_slots(get(), slots));
    return *this;
  }
  /**
   * Lets a model folder's genai_config.json name files outside the folder (absolute, or with ".."); refused
   * by default because a model folder may come from someone else.
   */
  ModelOptions& set_allow_external_paths(bool allow) {
    detail::check(mlora_model_options_set_allow_external_paths(get(), allow ? 1 : 0));
    return *this;
  }
  /**
   * Whether to open the base graph a prepared model names (default true): runs in which no row has an
   * adapter go to it (see mlora_model_options_set_base_graph).
   */
  ModelOptions& set_base_graph(bool use) {
    detail::check(mlora_model_options_set_base_graph(get(), use ? 1 : 0));
    return *this;
  }

  mlora_model_options_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_model_options_t, mlora_model_options_release> handle_;
};

/** Element type and declared shape of a regular input or output; symbolic dims are -1. */
struct TensorInfo {
  std::string name;
  mlora_dtype_t dtype = 0;
  std::vector<int64_t> shape;
};

/** A LoRA input: dtype, its two dims (the rank axis reads 0) and which axis is the rank axis. */
struct LoraInputInfo {
  std::string name;
  mlora_dtype_t dtype = 0;
  int64_t dim0 = 0;
  int64_t dim1 = 0;
  int32_t rank_axis = 1;  // 1 for A [in, r], 0 for B [r, out]
  int64_t fixed_dim() const noexcept { return rank_axis == 0 ? dim1 : dim0; }
};

/** A model's slot table for per-row adapters: its size S (0 = not prepared) and the sets resident now. */
struct BatchSlots {
  size_t slots = 0;     // S, slot 0 being the base model; 0 when the model is not prepared for batching
  size_t resident = 0;  // adapter sets resident now (0..S-1); may change right after the call
};

/** Counters of a model's slot table since the model was created (all 0 when it is not prepared). */
struct BatchSlotStats {
  uint64_t hits = 0;       // a batch's adapter set was resident
  uint64_t misses = 0;     // it was written into a slot
  uint64_t evictions = 0;  // ... that held another set (the least recently used one not pinned by a run)
};

/** Runs a model made on each of its sessions: the LoRA graph's and the base graph's (0 without one). */
struct SessionRuns {
  uint64_t lora = 0;
  uint64_t base = 0;
};

class RunOptions;

class Model {
 public:
  Model() = default;
  /** Loads an .onnx model with LoRA inputs, or a GenAI model folder. options may be NULL. */
  explicit Model(const std::string& path, const ModelOptions* options = nullptr) {
    mlora_model_t* out = nullptr;
    detail::check(mlora_model_create(detail::c_str(path, "path"), options != nullptr ? options->get() : nullptr, &out));
    handle_.reset(out);
  }

  size_t input_count() const {
    size_t n = 0;
    detail::check(mlora_model_input_count(get(), &n));
    return n;
  }
  size_t output_count() const {
    size_t n = 0;
    detail::check(mlora_model_output_count(get(), &n));
    return n;
  }
  std::string input_name(size_t index) const {
    return detail::read_string(
        [&](char* buf, size_t cap, size_t* len) { return mlora_model_input_name(get(), index, buf, cap, len); });
  }
  std::string output_name(size_t index) const {
    return detail::read_string(
        [&](char* buf, size_t cap, size_t* len) { return mlora_model_output_name(get(), index, buf, cap, len); });
  }
  TensorInfo input_info(size_t index) const {
    TensorInfo info = io_info(index, mlora_model_input_info);
    info.name = input_name(index);
    return info;
  }
  TensorInfo output_info(size_t index) const {
    TensorInfo info = io_info(index, mlora_model_output_info);
    info.name = output_name(index);
    return info;
  }
  std::vector<std::string> input_names() const {
    std::vector<std::string> out;
    for (size_t i = 0, n = input_count(); i < n; ++i) out.push_back(input_name(i));
    return out;
  }
  std::vector<std::string> output_names() const {
    std::vector<std::string> out;
    for (size_t i = 0, n = output_count(); i < n; ++i) out.push_back(output_name(i));
    return out;
  }

  size_t lora_count() const {
    size_t n = 0;
    detail::check(mlora_model_lora_count(get(), &n));
    return n;
  }
  std::string lora_name(size_t index) const {
    return detail::read_string(
        [&](char* buf, size_t cap, size_t* len) { return mlora_model_lora_name(get(), index, buf, cap, len); });
  }
  LoraInputInfo lora_info(size_t index) const {
    LoraInputInfo info;
    detail::check(mlora_model_lora_info(get(), index, &info.dtype, &info.dim0, &info.dim1, &info.rank_axis));
    info.name = lora_name(index);
    return info;
  }
  /** The model version adapters record: a fingerprint of the LoRA input signature. */
  int32_t version() const {
    int32_t v = 0;
    detail::check(mlora_model_version(get(), &v));
    return v;
  }
  /** The slot table for per-row adapters (slots 0 when the model is not prepared for batching). */
  BatchSlots batch_slots() const {
    BatchSlots b;
    detail::check(mlora_model_batch_slots(get(), &b.slots, &b.resident));
    return b;
  }
  /** Hits, misses and evictions of the slot table since the model was created. */
  BatchSlotStats batch_slot_stats() const {
    BatchSlotStats s;
    detail::check(mlora_model_batch_slot_stats(get(), &s.hits, &s.misses, &s.evictions));
    return s;
  }
  /** Runs on the LoRA graph's session and on the base graph's since the model was created. */
  SessionRuns session_runs() const {
    SessionRuns r;
    detail::check(mlora_model_session_runs(get(), &r.lora, &r.base));
    return r;
  }
  std::vector<LoraInputInfo> lora_inputs() const {
    std::vector<LoraInputInfo> out;
    for (size_t i = 0, n = lora_count(); i < n; ++i) out.push_back(lora_info(i));
    return out;
  }

  /**
   * Runs the model once (ONNX Runtime's argument order). options may be NULL (base model); an empty
   * output_names means every output in model order. Returns one owned tensor per output.
   */
  inline std::vector<Tensor> run(const RunOptions* options, const std::vector<std::string>& input_names,
                                 const std::vector<const Tensor*>& inputs,
                                 const std::vector<std::string>& output_names) const;
  inline std::vector<Tensor> run(const RunOptions* options, const std::vector<std::string>& input_names,
                                 const std::vector<Tensor>& inputs, const std::vector<std::string>& output_names) const;

  mlora_model_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  template <class InfoFn>
  TensorInfo io_info(size_t index, InfoFn fn) const {
    TensorInfo info;
    size_t ndim = 0;
    mlora_status_t status = fn(get(), index, &info.dtype, nullptr, 0, &ndim);
    if (status == MLORA_STATUS_BUFFER_TOO_SMALL) {
      info.shape.resize(ndim);
      status = fn(get(), index, &info.dtype, info.shape.data(), info.shape.size(), &ndim);
      info.shape.resize(ndim);
    }
    detail::check(status);
    return info;
  }

  detail::Handle<mlora_model_t, mlora_model_release> handle_;
};

// ================================================================================================
// Adapter (one file's contents) and the adapter registry
// ================================================================================================

struct AdapterVersions {
  int32_t format_version = 0;
  int32_t adapter_version = 0;
  int32_t model_version = 0;
};

struct AdapterBytes {
  uint64_t mapped = 0;  // bytes of the file mapping (0 for a buffer)
  uint64_t copied = 0;  // bytes the library had to copy
};

class Adapter {
 public:
  Adapter() = default;
  /** Takes ownership of an adapter handle (may be NULL). */
  explicit Adapter(mlora_adapter_t* owned) noexcept : handle_(owned) {}

  /** Opens an .onnx_adapter file without a model (mapped read-only and verified). */
  static Adapter open(const std::string& path) {
    mlora_adapter_t* out = nullptr;
    detail::check(mlora_adapter_open(detail::c_str(path, "path"), &out));
    return Adapter(out);
  }
  /** As open, from a buffer (copied). */
  static Adapter open_from_memory(const void* data, size_t size) {
    mlora_adapter_t* out = nullptr;
    detail::check(mlora_adapter_open_from_memory(data, size, &out));
    return Adapter(out);
  }

  AdapterVersions versions() const {
    AdapterVersions v;
    detail::check(mlora_adapter_versions(get(), &v.format_version, &v.adapter_version, &v.model_version));
    return v;
  }
  AdapterBytes bytes() const {
    AdapterBytes b;
    detail::check(mlora_adapter_bytes(get(), &b.mapped, &b.copied));
    return b;
  }
  int64_t rank() const {
    int64_t rank = 0;
    detail::check(mlora_adapter_rank(get(), &rank));
    return rank;
  }
  size_t param_count() const {
    size_t n = 0;
    detail::check(mlora_adapter_param_count(get(), &n));
    return n;
  }
  std::string param_name(size_t index) const {
    return detail::read_string(
        [&](char* buf, size_t cap, size_t* len) { return mlora_adapter_param_name(get(), index, buf, cap, len); });
  }
  std::vector<std::string> param_names() const {
    std::vector<std::string> out;
    for (size_t i = 0, n = param_count(); i < n; ++i) out.push_back(param_name(i));
    return out;
  }
  /** Parameter index as a view over the adapter's memory; keeps that memory alive. */
  Tensor param_tensor(size_t index) const {
    mlora_tensor_t* out = nullptr;
    detail::check(mlora_adapter_param_tensor(get(), index, &out));
    return Tensor(out);
  }

  /** Writes an .onnx_adapter file (atomically) that ONNX Runtime loads. */
  static void write(const std::string& path, const std::vector<std::string>& names,
                    const std::vector<const Tensor*>& tensors, int32_t adapter_version = 0, int32_t model_version = 0) {
    if (names.size() != tensors.size()) {
      throw Error(MLORA_STATUS_INVALID_ARGUMENT, "write adapter '" + path + "': " + std::to_string(names.size()) +
                                                     " names but " + std::to_string(tensors.size()) + " tensors");
    }
    std::vector<const char*> c_names = detail::c_strings(names, "parameter name");
    std::vector<const mlora_tensor_t*> handles;
    handles.reserve(tensors.size());
    for (const Tensor* t : tensors) handles.push_back(t != nullptr ? t->get() : nullptr);
    detail::check(mlora_adapter_write(detail::c_str(path, "path"), c_names.data(), handles.data(), handles.size(),
                                      adapter_version, model_version));
  }

  mlora_adapter_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_adapter_t, mlora_adapter_release> handle_;
};

/** A registry of named adapters validated against one model (keeps the model alive). */
class Adapters {
 public:
  Adapters() = default;
  explicit Adapters(const Model& model) {
    mlora_adapters_t* out = nullptr;
    detail::check(mlora_adapters_create(model.get(), &out));
    handle_.reset(out);
  }

  /**
   * Loads an .onnx_adapter file (or a PEFT folder) under name; flags are MLORA_LOAD_* bits. The file is
   * mapped: it must not be truncated or rewritten in place while loaded (SIGBUS); pass MLORA_LOAD_COPY for
   * files that may change under a running process.
   */
  void load(const std::string& path, const std::string& name, int32_t flags = MLORA_LOAD_DEFAULT) {
    detail::check(mlora_adapters_load(get(), detail::c_str(path, "path"), detail::c_str(name, "adapter name"), flags));
  }
  /** As load, from a buffer holding an .onnx_adapter file (copied). */
  void load_from_memory(const void* data, size_t size, const std::string& name, int32_t flags = MLORA_LOAD_DEFAULT) {
    detail::check(mlora_adapters_load_from_memory(get(), data, size, detail::c_str(name, "adapter name"), flags));
  }
  /** Removes a name; holders keep the adapter they use. */
  void unload(const std::string& name) {
    detail::check(mlora_adapters_unload(get(), detail::c_str(name, "adapter name")));
  }

  /** Loaded names, sorted. */
  std::vector<std::string> names() const {
    return detail::read_string_list([&](char* buf, size_t cap, size_t* len, size_t* count) {
      return mlora_adapters_names(get(), buf, cap, len, count);
    });
  }
  /** The adapter loaded under name (mlora_adapters_get; that version stays alive while the result lives); throws
   * NOT_FOUND. (get() without an argument is the raw handle, as on every class here.) */
  Adapter get(const std::string& name) const {
    mlora_adapter_t* out = nullptr;
    detail::check(mlora_adapters_get(get(), detail::c_str(name, "adapter name"), &out));
    return Adapter(out);
  }

  mlora_adapters_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_adapters_t, mlora_adapters_release> handle_;
};

namespace detail {

/** Calls a set_active_adapters-shaped C function with names and optional weights (NULL = all 1.0). */
template <class Receiver, class SetFn>
void set_active(Receiver* receiver, SetFn fn, const Adapters* adapters, const std::vector<std::string>& names,
                const std::vector<float>* weights) {
  if (weights != nullptr && weights->size() != names.size()) {
    throw Error(MLORA_STATUS_INVALID_ARGUMENT, "set_active_adapters: " + std::to_string(names.size()) +
                                                   " adapter names but " + std::to_string(weights->size()) +
                                                   " weights; give one weight per name");
  }
  std::vector<const char*> c_names = c_strings(names, "adapter name");
  check(fn(receiver, adapters != nullptr ? adapters->get() : nullptr, c_names.data(),
           weights != nullptr ? weights->data() : nullptr, c_names.size()));
}

/**
 * Calls a set_active_adapters_per_row-shaped C function: rows of names (an empty row = the base model) and,
 * when given, one weight list per row matching its names, flattened row by row with one count per row.
 */
template <class Receiver, class SetFn>
void set_active_per_row(Receiver* receiver, SetFn fn, const Adapters& adapters,
                        const std::vector<std::vector<std::string>>& rows,
                        const std::vector<std::vector<float>>* weights) {
  if (weights != nullptr && weights->size() != rows.size()) {
    throw Error(MLORA_STATUS_INVALID_ARGUMENT, "set_active_adapters_per_row: " + std::to_string(rows.size()) +
                                                   " rows but " + std::to_string(weights->size()) + " weight rows");
  }
  std::vector<std::string> flat;
  std::vector<float> flat_weights;
  std::vector<size_t> counts;
  counts.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (weights != nullptr && (*weights)[i].size() != rows[i].size()) {
      throw Error(MLORA_STATUS_INVALID_ARGUMENT, "set_active_adapters_per_row: row " + std::to_string(i) + " has " +
                                                     std::to_string(rows[i].size()) + " adapter names but " +
                                                     std::to_string((*weights)[i].size()) + " weights");
    }
    flat.insert(flat.end(), rows[i].begin(), rows[i].end());
    if (weights != nullptr) flat_weights.insert(flat_weights.end(), (*weights)[i].begin(), (*weights)[i].end());
    counts.push_back(rows[i].size());
  }
  std::vector<const char*> c_names = c_strings(flat, "adapter name");
  check(fn(receiver, adapters.get(), c_names.data(), weights != nullptr ? flat_weights.data() : nullptr, counts.data(),
           counts.size()));
}

}  // namespace detail

// ================================================================================================
// Run options
// ================================================================================================

class RunOptions {
 public:
  RunOptions() {
    mlora_run_options_t* out = nullptr;
    detail::check(mlora_run_options_create(&out));
    handle_.reset(out);
  }

  /** Activates names from adapters, each with weight 1.0 (an empty list = the base model). */
  RunOptions& set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names) {
    detail::set_active(get(), mlora_run_options_set_active_adapters, &adapters, names, nullptr);
    return *this;
  }
  /** Activates names with one weight each; the weighted sum of their deltas applies. */
  RunOptions& set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names,
                                  const std::vector<float>& weights) {
    detail::set_active(get(), mlora_run_options_set_active_adapters, &adapters, names, &weights);
    return *this;
  }
  /** Back to the base model. */
  RunOptions& clear_active_adapters() {
    detail::check(mlora_run_options_set_active_adapters(get(), nullptr, nullptr, nullptr, 0));
    return *this;
  }
  /**
   * One adapter set per batch row (an empty row = the base model), on a model prepared with
   * `multilora prepare-batching`; weights, when given, has one list per row matching its names.
   */
  RunOptions& set_active_adapters_per_row(const Adapters& adapters, const std::vector<std::vector<std::string>>& rows,
                                          const std::vector<std::vector<float>>* weights = nullptr) {
    detail::set_active_per_row(get(), mlora_run_options_set_active_adapters_per_row, adapters, rows, weights);
    return *this;
  }
  size_t active_count() const {
    size_t n = 0;
    detail::check(mlora_run_options_active_count(get(), &n));
    return n;
  }

  mlora_run_options_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_run_options_t, mlora_run_options_release> handle_;
};

inline std::vector<Tensor> Model::run(const RunOptions* options, const std::vector<std::string>& input_names,
                                      const std::vector<const Tensor*>& inputs,
                                      const std::vector<std::string>& output_names) const {
  if (input_names.size() != inputs.size()) {
    throw Error(MLORA_STATUS_INVALID_ARGUMENT, "run: " + std::to_string(input_names.size()) + " input names but " +
                                                   std::to_string(inputs.size()) + " input tensors");
  }
  std::vector<const char*> c_inputs = detail::c_strings(input_names, "input name");
  std::vector<const char*> c_outputs = detail::c_strings(output_names, "output name");
  std::vector<const mlora_tensor_t*> handles;
  handles.reserve(inputs.size());
  for (const Tensor* t : inputs) handles.push_back(t != nullptr ? t->get() : nullptr);
  const size_t n_out = output_names.empty() ? output_count() : output_names.size();
  std::vector<mlora_tensor_t*> raw(n_out, nullptr);
  detail::check(mlora_model_run(get(), options != nullptr ? options->get() : nullptr, c_inputs.data(), handles.data(),
                                handles.size(), c_outputs.data(), c_outputs.size(), raw.data()));
  std::vector<Tensor> out;
  out.reserve(n_out);
  for (mlora_tensor_t* t : raw) out.emplace_back(t);
  return out;
}

inline std::vector<Tensor> Model::run(const RunOptions* options, const std::vector<std::string>& input_names,
                                      const std::vector<Tensor>& inputs,
                                      const std::vector<std::string>& output_names) const {
  std::vector<const Tensor*> ptrs;
  ptrs.reserve(inputs.size());
  for (const Tensor& t : inputs) ptrs.push_back(&t);
  return run(options, input_names, ptrs, output_names);
}

// ================================================================================================
// Generation
// ================================================================================================

/** Search options and the starting adapter set for generators (reference-counted in the library). */
class GeneratorParams {
 public:
  GeneratorParams() = default;
  explicit GeneratorParams(const Model& model) {
    mlora_generator_params_t* out = nullptr;
    detail::check(mlora_generator_params_create(model.get(), &out));
    handle_.reset(out);
  }

  /** "max_length", "min_length", "top_k", "top_p", "temperature", "repetition_penalty", "random_seed", ... */
  GeneratorParams& set_search_number(const std::string& name, double value) {
    detail::check(mlora_generator_params_set_search_number(get(), detail::c_str(name, "search option"), value));
    return *this;
  }
  /** "do_sample". */
  GeneratorParams& set_search_bool(const std::string& name, bool value) {
    detail::check(mlora_generator_params_set_search_bool(get(), detail::c_str(name, "search option"), value ? 1 : 0));
    return *this;
  }
  double get_search_number(const std::string& name) const {
    double value = 0.0;
    detail::check(mlora_generator_params_get_search_number(get(), detail::c_str(name, "search option"), &value));
    return value;
  }
  GeneratorParams& set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names) {
    detail::set_active(get(), mlora_generator_params_set_active_adapters, &adapters, names, nullptr);
    return *this;
  }
  GeneratorParams& set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names,
                                       const std::vector<float>& weights) {
    detail::set_active(get(), mlora_generator_params_set_active_adapters, &adapters, names, &weights);
    return *this;
  }
  /** Token ids that end a sequence (kept in it, like eos); empty clears them. */
  GeneratorParams& set_stop_tokens(const std::vector<int32_t>& tokens) {
    detail::check(mlora_generator_params_set_stop_tokens(get(), tokens.data(), tokens.size()));
    return *this;
  }
  GeneratorParams& clear_active_adapters() {
    detail::check(mlora_generator_params_set_active_adapters(get(), nullptr, nullptr, nullptr, 0));
    return *this;
  }
  /**
   * One adapter set per sequence (an empty row = the base model) for generators made from these params, on a
   * model prepared with `multilora prepare-batching`; rows.size() must equal the "batch_size" search option
   * when a generator is created. weights, when given, has one list per row matching its names.
   */
  GeneratorParams& set_active_adapters_per_row(const Adapters& adapters,
                                               const std::vector<std::vector<std::string>>& rows,
                                               const std::vector<std::vector<float>>* weights = nullptr) {
    detail::set_active_per_row(get(), mlora_generator_params_set_active_adapters_per_row, adapters, rows, weights);
    return *this;
  }

  mlora_generator_params_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_generator_params_t, mlora_generator_params_release> handle_;
};

/** A generation in progress; used by one thread at a time. */
class Generator {
 public:
  Generator() = default;
  Generator(const Model& model, const GeneratorParams& params) {
    mlora_generator_t* out = nullptr;
    detail::check(mlora_generator_create(model.get(), params.get(), &out));
    handle_.reset(out);
  }

  void append_tokens(const int32_t* tokens, size_t count) {
    detail::check(mlora_generator_append_tokens(get(), tokens, count));
  }
  void append_tokens(const std::vector<int32_t>& tokens) { append_tokens(tokens.data(), tokens.size()); }
  /** One prompt per sequence (the batch size must equal the params' "batch_size"). */
  void append_token_sequences(const std::vector<std::vector<int32_t>>& sequences) {
    std::vector<int32_t> flat;
    std::vector<size_t> lengths;
    lengths.reserve(sequences.size());
    for (const std::vector<int32_t>& s : sequences) {
      flat.insert(flat.end(), s.begin(), s.end());
      lengths.push_back(s.size());
    }
    detail::check(mlora_generator_append_token_sequences(get(), flat.data(), lengths.data(), lengths.size()));
  }
  void generate_next_token() { detail::check(mlora_generator_generate_next_token(get())); }
  /** onnxruntime-genai's rewind_to (batch size 1): keeps the first new_length tokens; 0 starts over. */
  void rewind_to(size_t new_length) { detail::check(mlora_generator_rewind_to(get(), new_length)); }
  bool is_done() const {
    int32_t done = 0;
    detail::check(mlora_generator_is_done(get(), &done));
    return done != 0;
  }
  size_t batch_size() const {
    size_t n = 0;
    detail::check(mlora_generator_batch_size(get(), &n));
    return n;
  }
  std::vector<int32_t> get_sequence(size_t index) const {
    return read_tokens([&](int32_t* buf, size_t cap, size_t* len) {
      return mlora_generator_get_sequence(get(), index, buf, cap, len);
    });
  }
  std::vector<int32_t> get_next_tokens() const {
    return read_tokens(
        [&](int32_t* buf, size_t cap, size_t* len) { return mlora_generator_get_next_tokens(get(), buf, cap, len); });
  }
  /** float32 [batch, vocab] logits the next generate_next_token() chooses from (a copy; may run the pending
   * pass, as onnxruntime-genai's get_logits does). */
  Tensor get_logits() const {
    mlora_tensor_t* out = nullptr;
    detail::check(mlora_generator_get_logits(get(), &out));
    return Tensor(out);
  }
  void set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names) {
    detail::set_active(get(), mlora_generator_set_active_adapters, &adapters, names, nullptr);
  }
  void set_active_adapters(const Adapters& adapters, const std::vector<std::string>& names,
                           const std::vector<float>& weights) {
    detail::set_active(get(), mlora_generator_set_active_adapters, &adapters, names, &weights);
  }
  void clear_active_adapters() {
    detail::check(mlora_generator_set_active_adapters(get(), nullptr, nullptr, nullptr, 0));
  }
  /**
   * Switches to one adapter set per sequence between steps (rows.size() must equal batch_size()); tokens
   * already processed keep the KV cache computed with the previous sets.
   */
  void set_active_adapters_per_row(const Adapters& adapters, const std::vector<std::vector<std::string>>& rows,
                                   const std::vector<std::vector<float>>* weights = nullptr) {
    detail::set_active_per_row(get(), mlora_generator_set_active_adapters_per_row, adapters, rows, weights);
  }

  mlora_generator_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  template <class Fill>
  static std::vector<int32_t> read_tokens(Fill&& fill) {
    size_t len = 0;
    mlora_status_t status = fill(nullptr, 0, &len);
    std::vector<int32_t> out;
    for (int attempt = 0; status == MLORA_STATUS_BUFFER_TOO_SMALL && attempt < 8; ++attempt) {
      out.resize(len);
      status = fill(out.data(), out.size(), &len);
    }
    detail::check(status);
    out.resize(len);
    return out;
  }

  detail::Handle<mlora_generator_t, mlora_generator_release> handle_;
};

// ================================================================================================
// Engine
// ================================================================================================

/** Options of an Engine (defaults: max_batch_size 16, max_tokens_per_step 64, max_queue 1024, worker on). */
class EngineOptions {
 public:
  EngineOptions() {
    mlora_engine_options_t* out = nullptr;
    detail::check(mlora_engine_options_create(&out));
    handle_.reset(out);
  }
  EngineOptions& set_max_batch_size(size_t n) {
    detail::check(mlora_engine_options_set_max_batch_size(get(), n));
    return *this;
  }
  EngineOptions& set_max_tokens_per_step(size_t n) {
    detail::check(mlora_engine_options_set_max_tokens_per_step(get(), n));
    return *this;
  }
  EngineOptions& set_max_queue(size_t n) {
    detail::check(mlora_engine_options_set_max_queue(get(), n));
    return *this;
  }
  /** false: no worker thread; the host calls Engine::step(). */
  EngineOptions& set_worker(bool enable) {
    detail::check(mlora_engine_options_set_worker(get(), enable ? 1 : 0));
    return *this;
  }
  mlora_engine_options_t* get() const noexcept { return handle_.get(); }

 private:
  detail::Handle<mlora_engine_options_t, mlora_engine_options_release> handle_;
};

struct RequestUsage {
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  double queue_seconds = 0;  // submit -> admission
  double ttft_seconds = -1;  // submit -> first token; -1 before it
};

struct EngineStats {
  uint64_t queued = 0, running = 0, finished = 0, steps = 0, decode_tokens = 0, prefill_tokens = 0;
};

/** A submitted request; its methods are safe from any thread. Destroying it cancels it if unfinished. */
class Request {
 public:
  Request() = default;
  explicit Request(mlora_request_t* handle) : handle_(handle) {}

  /**
   * Appends up to max_tokens new token ids to `out`, waiting up to timeout_ms (0 = poll, < 0 = forever) for
   * at least one. Returns false once the request finished and every token was read.
   */
  bool read(std::vector<int32_t>& out, int32_t timeout_ms = -1, size_t max_tokens = 256) {
    const size_t old = out.size();
    out.resize(old + max_tokens);
    size_t n = 0;
    int32_t done = 0;
    const mlora_status_t status = mlora_request_read(get(), out.data() + old, max_tokens, timeout_ms, &n, &done);
    out.resize(old + (status == MLORA_STATUS_OK ? n : 0));
    detail::check(status);
    return done == 0;
  }
  /** Every remaining token, blocking until the request finishes. */
  std::vector<int32_t> read_all() {
    std::vector<int32_t> out;
    while (read(out)) {
    }
    return out;
  }
  /** true if this call cancelled it; false if it had finished or was cancelled already. */
  bool cancel() {
    int32_t cancelled = 0;
    detail::check(mlora_request_cancel(get(), &cancelled));
    return cancelled != 0;
  }
  mlora_finish_reason_t finish_reason() const {
    mlora_finish_reason_t r = MLORA_FINISH_NONE;
    detail::check(mlora_request_finish_reason(get(), &r));
    return r;
  }
  bool is_done() const { return finish_reason() != MLORA_FINISH_NONE; }
  RequestUsage usage() const {
    RequestUsage u;
    detail::check(mlora_request_usage(get(), &u.prompt_tokens, &u.generated_tokens, &u.queue_seconds, &u.ttft_seconds));
    return u;
  }
  /** OK, the error status of a request that finished with an error, or CLOSED. */
  mlora_status_t error_status() const {
    mlora_status_t s = MLORA_STATUS_OK;
    size_t len = 0;
    const mlora_status_t status = mlora_request_error(get(), &s, nullptr, 0, &len);
    if (status != MLORA_STATUS_BUFFER_TOO_SMALL) detail::check(status);
    return s;
  }
  std::string error_message() const {
    return detail::read_string(
        [&](char* buf, size_t cap, size_t* len) { return mlora_request_error(get(), nullptr, buf, cap, len); });
  }

  mlora_request_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_request_t, mlora_request_release> handle_;
};

/** Continuous batching over one prepared model; every method is safe from any thread. */
class Engine {
 public:
  Engine() = default;
  explicit Engine(const Model& model, const EngineOptions* options = nullptr) {
    mlora_engine_t* out = nullptr;
    detail::check(mlora_engine_create(model.get(), options != nullptr ? options->get() : nullptr, &out));
    handle_.reset(out);
  }
  Request submit(const GeneratorParams& params, const std::vector<int32_t>& prompt) {
    mlora_request_t* out = nullptr;
    detail::check(mlora_engine_submit(get(), params.get(), prompt.data(), prompt.size(), &out));
    return Request(out);
  }
  /** One step (engines without a worker). Returns whether requests are still queued or running. */
  bool step() {
    int32_t more = 0;
    detail::check(mlora_engine_step(get(), &more));
    return more != 0;
  }
  void close() { detail::check(mlora_engine_close(get())); }
  EngineStats stats() const {
    EngineStats s;
    detail::check(
        mlora_engine_stats(get(), &s.queued, &s.running, &s.finished, &s.steps, &s.decode_tokens, &s.prefill_tokens));
    return s;
  }

  mlora_engine_t* get() const noexcept { return handle_.get(); }
  void reset() noexcept { handle_.reset(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  detail::Handle<mlora_engine_t, mlora_engine_release> handle_;
};

}  // namespace multilora

#endif  // MULTILORA_HPP_
