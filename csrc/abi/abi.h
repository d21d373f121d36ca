// Shared machinery of the extern "C" layer: handle boxes, the live-handle table, the exception guard,
// argument helpers. Only csrc/abi/*.cpp include this.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "multilora/multilora.h"
#include "util/error.h"

namespace mlora {
class Model;
class Registry;
class ActiveSet;
class BatchSet;
class GeneratorParams;
class Adapter;
class Tensor;
struct ModelOptions;
}  // namespace mlora

// ---- handle boxes: {type tag, shared ownership of the payload} ----------------------------------------
enum class HandleType : uint32_t {
  kTensor = 0x6d6c0001,
  kModelOptions,
  kModel,
  kAdapter,
  kAdapters,
  kRunOptions,
  kGeneratorParams,
  kGenerator,
  kEngineOptions,
  kEngine,
  kRequest,
};

struct mlora_tensor {
  std::shared_ptr<const mlora::Tensor> tensor;
};
struct mlora_model_options {
  std::unique_ptr<mlora::ModelOptions> options;
};
struct mlora_model {
  std::shared_ptr<const mlora::Model> model;
};
struct mlora_adapter {
  std::shared_ptr<const mlora::Adapter> adapter;
};
struct mlora_adapters {
  std::shared_ptr<mlora::Registry> registry;
};
struct mlora_run_options {
  std::shared_ptr<const mlora::ActiveSet> active;  // null = base model
  std::shared_ptr<const mlora::BatchSet> per_row;  // set instead of `active` by set_active_adapters_per_row
};

namespace mlora::abi {

// The table of live handles. Every handle the ABI gives out is registered with its type; release
// unregisters it before freeing, so a released, foreign or wrongly typed pointer is detected without
// reading its memory (no use-after-free even when a binding passes a stale handle).
void register_handle(const void* handle, HandleType type);
// Returns false if the handle was not live (then the caller must not free it).
bool unregister_handle(const void* handle, HandleType type);
bool is_live(const void* handle, HandleType type);
size_t live_handle_count();

// Throws INVALID_HANDLE naming `what` unless `handle` is a live handle of `type`.
void check_handle(const void* handle, HandleType type, const char* what);

template <class Box>
Box* checked(Box* handle, HandleType type, const char* what) {
  check_handle(handle, type, what);
  return handle;
}

// Creates a box, registers it, and stores it into *out. `out` must have been checked non-null.
template <class Box, class... Args>
void emit(Box** out, HandleType type, Args&&... args) {
  std::unique_ptr<Box> box;
  if constexpr (sizeof...(Args) == 1 && std::is_null_pointer_v<std::decay_t<Args>...>) {
    box = std::make_unique<Box>();  // an empty box (run options): value-initialized
  } else {
    box = std::make_unique<Box>(Box{std::forward<Args>(args)...});
  }
  register_handle(box.get(), type);
  *out = box.release();
}

template <class Box>
void release(Box* handle, HandleType type) noexcept {
  if (handle && unregister_handle(handle, type)) delete handle;
}

// Records the error for this thread and returns its status.
mlora_status_t set_error(mlora_status_t status, const std::string& message) noexcept;
const char* last_message() noexcept;
mlora_status_t last_status() noexcept;

// Runs `body`, converting every exception into a status + last error prefixed with `fn`.
template <class F>
mlora_status_t guard(const char* fn, F&& body) noexcept {
  try {
    body();
    return MLORA_STATUS_OK;
  } catch (const Error& e) {
    return set_error(e.status(), std::string(fn) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return set_error(MLORA_STATUS_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return set_error(MLORA_STATUS_INTERNAL, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return set_error(MLORA_STATUS_INTERNAL, std::string(fn) + ": internal error: unknown exception");
  }
}

// ---- argument helpers (all throw Error) --------------------------------------------------------------
// A required, valid UTF-8 string argument.
std::string str_arg(const char* s, const char* what);
// A required output pointer.
template <class T>
void out_arg(T* p, const char* what) {
  if (!p) fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " is NULL");
}
// An array argument: NULL is only allowed with count 0.
void array_arg(const void* p, size_t count, const char* what);
// count strings.
std::vector<std::string> str_array_arg(const char* const* names, size_t count, const char* what);
// Copies `value` + NUL into a caller buffer; sets *out_len to the size needed in every case.
void write_string(const std::string& value, char* buf, size_t capacity, size_t* out_len, const char* what);
// The params behind a generator params handle (engine submit). Throws INVALID_HANDLE.
std::shared_ptr<const GeneratorParams> params_ref(const mlora_generator_params_t* params);
// Index check against a count.
void index_arg(size_t index, size_t count, const char* what);

}  // namespace mlora::abi
