// Shared machinery of the extern "C" layer: handle boxes, the live-handle table, the exception guard,
// argument helpers. Only csrc/abi/*.cpp include this.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "model/model.h"
#include "multilora/multilora.h"
#include "run/adapter_selection.h"
#include "util/error.h"

namespace mlora {
class Registry;
class GeneratorParams;
class Adapter;
class Tensor;
class SlotTable;
}  // namespace mlora

// ---- handle boxes: shared ownership of the payload, plus what a box needs to be used by several threads ----
enum class HandleType : uint32_t {
  kTensor = 1,
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
  mutable std::mutex mutex;  // setters and mlora_model_create (which copies the options) may race
  mlora::ModelOptions options;
};
struct mlora_model {
  std::shared_ptr<const mlora::Model> model;
  std::shared_ptr<mlora::SlotTable> slots;  // null unless the model is prepared for adapter-aware batching
};
struct mlora_adapter {
  std::shared_ptr<const mlora::Adapter> adapter;
};
struct mlora_adapters {
  mlora::Resolver resolver;  // the registry, its cache of composed sets, the model's slot table
};
struct mlora_run_options {
  mlora::SharedSelection selection;  // set by set_active_adapters*, snapshotted by each run
};

namespace mlora::abi {

// The table of live handles. Every handle the ABI gives out is registered with its type and the table
// holds the box's only long-lived strong reference; release unregisters it (under the table's lock) and
// drops that reference. Each call copies the reference under the same lock (hold() below) and keeps it
// until it returns, so a box — and everything it owns — dies when the last call using it returns, never
// under a running call. A released, foreign or wrongly typed pointer is detected without reading its
// memory. (A handle value released and then reused by a new box of the same type is indistinguishable
// from the new box: that is inherent to raw pointers and not a memory-safety issue.)
void register_handle(const void* handle, HandleType type, std::shared_ptr<void> box);
// Returns the table's reference (null if the handle was not live); the caller drops it outside the lock.
std::shared_ptr<void> unregister_handle(const void* handle, HandleType type);
bool is_live(const void* handle, HandleType type);
size_t live_handle_count();

// A strong reference to a live box; throws INVALID_HANDLE naming `what` unless `handle` is a live handle
// of `type`.
std::shared_ptr<void> hold_handle(const void* handle, HandleType type, const char* what);

template <class Box>
std::shared_ptr<Box> hold(Box* handle, HandleType type, const char* what) {
  return std::static_pointer_cast<Box>(hold_handle(handle, type, what));
}

// Creates a box, registers it, and stores it into *out. `out` must have been checked non-null.
template <class Box, class... Args>
void emit(Box** out, HandleType type, Args&&... args) {
  std::shared_ptr<Box> box;
  if constexpr (sizeof...(Args) == 0) {
    box = std::make_shared<Box>();  // a box whose members default-construct (options, run options)
  } else {
    box = std::make_shared<Box>(Box{std::forward<Args>(args)...});
  }
  Box* raw = box.get();
  register_handle(raw, type, std::move(box));
  *out = raw;
}

template <class Box>
void release(Box* handle, HandleType type) noexcept {
  if (!handle) return;
  try {
    std::shared_ptr<void> last = unregister_handle(handle, type);
    (void)last;  // the box dies here unless a running call still holds it
  } catch (...) {
    // release never fails; unregistering only allocates nothing, destructors do not throw
  }
}

// Refuses calls that must not overlap on one object (two threads stepping one generator, changing it
// while it runs): a call that finds the object in use by another call fails with MLORA_STATUS_BUSY
// naming that call, instead of waiting or racing. Reading calls may overlap each other.
class OneAtATime {
 public:
  class Use {
   public:
    Use(Use&& other) noexcept : gate_(other.gate_), exclusive_(other.exclusive_) { other.gate_ = nullptr; }
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    Use& operator=(Use&&) = delete;

   private:
    friend class OneAtATime;
    Use(OneAtATime* gate, bool exclusive) noexcept : gate_(gate), exclusive_(exclusive) {}
    OneAtATime* gate_;
    bool exclusive_;
  };
  // A call that changes the object. Throws BUSY while any other call uses it.
  Use exclusive(const char* fn, const char* what);
  // A call that only reads it. Throws BUSY while a changing call runs.
  Use shared(const char* fn, const char* what);

 private:
  std::shared_mutex mutex_;
  std::atomic<const char*> writer_{nullptr};  // the changing call in progress, for the message
};

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
