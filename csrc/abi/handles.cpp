#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "abi/abi.h"
#include "util/utf8.h"

namespace mlora::abi {

namespace {

struct Entry {
  HandleType type;
  std::shared_ptr<void> box;  // the table's strong reference
};

struct HandleTable {
  std::shared_mutex mutex;
  std::unordered_map<const void*, Entry> live;
};

// Intentionally leaked: handles may be released from finalizers running during process exit, after
// static destructors would have run.
HandleTable& table() {
  static HandleTable* t = new HandleTable();
  return *t;
}

const char* type_name(HandleType type) {
  switch (type) {
    case HandleType::kTensor:
      return "tensor";
    case HandleType::kModelOptions:
      return "model options";
    case HandleType::kModel:
      return "model";
    case HandleType::kAdapter:
      return "adapter";
    case HandleType::kAdapters:
      return "adapters";
    case HandleType::kRunOptions:
      return "run options";
    case HandleType::kGeneratorParams:
      return "generator params";
    case HandleType::kGenerator:
      return "generator";
    case HandleType::kEngineOptions:
      return "engine options";
    case HandleType::kEngine:
      return "engine";
    case HandleType::kRequest:
      return "request";
  }
  return "handle";
}

thread_local std::string t_last_message;
thread_local mlora_status_t t_last_status = MLORA_STATUS_OK;

}  // namespace

void register_handle(const void* handle, HandleType type, std::shared_ptr<void> box) {
  auto& t = table();
  std::unique_lock<std::shared_mutex> lock(t.mutex);
  t.live[handle] = Entry{type, std::move(box)};
}

std::shared_ptr<void> unregister_handle(const void* handle, HandleType type) {
  auto& t = table();
  std::shared_ptr<void> box;
  std::unique_lock<std::shared_mutex> lock(t.mutex);
  auto it = t.live.find(handle);
  if (it == t.live.end() || it->second.type != type) return nullptr;
  box = std::move(it->second.box);
  t.live.erase(it);
  return box;  // destroyed by the caller, outside the lock (a payload's destructor may take a while)
}

bool is_live(const void* handle, HandleType type) {
  auto& t = table();
  std::shared_lock<std::shared_mutex> lock(t.mutex);
  auto it = t.live.find(handle);
  return it != t.live.end() && it->second.type == type;
}

size_t live_handle_count() {
  auto& t = table();
  std::shared_lock<std::shared_mutex> lock(t.mutex);
  return t.live.size();
}

std::shared_ptr<void> hold_handle(const void* handle, HandleType type, const char* what) {
  if (!handle) fail(MLORA_STATUS_INVALID_HANDLE, std::string(what) + " is NULL");
  {
    auto& t = table();
    std::shared_lock<std::shared_mutex> lock(t.mutex);
    auto it = t.live.find(handle);
    if (it != t.live.end() && it->second.type == type) return it->second.box;
  }
  fail(MLORA_STATUS_INVALID_HANDLE,
       std::string(what) + " is not a live " + type_name(type) + " handle (released, or not made by multilora)");
}

OneAtATime::Use::~Use() {
  if (!gate_) return;
  if (exclusive_) {
    gate_->writer_.store(nullptr);
    gate_->mutex_.unlock();
  } else {
    gate_->mutex_.unlock_shared();
  }
}

namespace {
[[noreturn]] void busy(const std::atomic<const char*>& writer, const char* fn, const char* what) {
  const char* other = writer.load();
  fail(MLORA_STATUS_BUSY, std::string(what) + " is busy: another thread is in " +
                              (other ? std::string(other) : std::string("a call")) + " on it (" + fn +
                              " does not wait; a " + what + " is used by one thread at a time)");
}
}  // namespace

OneAtATime::Use OneAtATime::exclusive(const char* fn, const char* what) {
  if (!mutex_.try_lock()) busy(writer_, fn, what);
  writer_.store(fn);
  return Use(this, true);
}

OneAtATime::Use OneAtATime::shared(const char* fn, const char* what) {
  if (!mutex_.try_lock_shared()) busy(writer_, fn, what);
  return Use(this, false);
}

mlora_status_t set_error(mlora_status_t status, const std::string& message) noexcept {
  t_last_status = status;
  try {
    t_last_message = message;
  } catch (...) {
    t_last_message.clear();  // out of memory while recording the message: keep the status
  }
  return status;
}

const char* last_message() noexcept { return t_last_message.c_str(); }
mlora_status_t last_status() noexcept { return t_last_status; }

// ---- argument helpers ---------------------------------------------------------------------------------

std::string str_arg(const char* s, const char* what) {
  if (!s) fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " is NULL");
  if (!valid_utf8(s, std::strlen(s))) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " is not valid UTF-8");
  }
  return s;
}

void array_arg(const void* p, size_t count, const char* what) {
  if (!p && count)
    fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " is NULL but its count is " + std::to_string(count));
}

std::vector<std::string> str_array_arg(const char* const* names, size_t count, const char* what) {
  array_arg(names, count, what);
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(str_arg(names[i], (std::string(what) + "[" + std::to_string(i) + "]").c_str()));
  }
  return out;
}

void write_string(const std::string& value, char* buf, size_t capacity, size_t* out_len, const char* what) {
  out_arg(out_len, "out_len");
  const size_t needed = value.size() + 1;
  *out_len = needed;
  if (capacity < needed) {
    fail(MLORA_STATUS_BUFFER_TOO_SMALL, std::string("buffer of ") + std::to_string(capacity) +
                                            " bytes is too small for " + what + " (needs " + std::to_string(needed) +
                                            ")");
  }
  if (!buf) fail(MLORA_STATUS_INVALID_ARGUMENT, "buf is NULL but capacity is " + std::to_string(capacity));
  std::memcpy(buf, value.c_str(), needed);
}

void index_arg(size_t index, size_t count, const char* what) {
  if (index >= count) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + " index " + std::to_string(index) +
                                            " is out of range (count " + std::to_string(count) + ")");
  }
}

}  // namespace mlora::abi
