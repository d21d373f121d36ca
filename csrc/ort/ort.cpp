#include "ort/ort.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "util/error.h"
#include "util/utf8.h"

#ifndef MLORA_DEFAULT_ORT_LIBRARY
#define MLORA_DEFAULT_ORT_LIBRARY ""
#endif

namespace mlora {

namespace {

// Everything about the loaded runtime. Built on first use and intentionally never destroyed: releasing
// ORT objects from a static destructor races ORT's own static teardown at exit. The OS reclaims it all.
struct OrtState {
  std::mutex mutex;
  std::string requested_path;  // set_ort_library_path(); empty = not set
  void* handle = nullptr;      // dlopen handle, kept open for the life of the process
  const OrtApiBase* base = nullptr;
  std::atomic<const OrtApi*> api{nullptr};
  std::string loaded_path;  // real path of the loaded file
  OrtEnv* env = nullptr;
  size_t env_users = 0;  // live models (ort_env_acquire / ort_env_release)
  std::atomic<OrtMemoryInfo*> cpu_memory{nullptr};
};

OrtState& state() {
  static OrtState* s = new OrtState();
  return *s;
}

// ORT_API_VERSION N corresponds to ONNX Runtime 1.N.
std::string header_version() { return "1." + std::to_string(ORT_API_VERSION); }

std::string real_path_or(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

// Log severity for the environment: MULTILORA_ORT_LOG_LEVEL = 0..4, else ORT_LOGGING_LEVEL_ERROR.
OrtLoggingLevel env_log_level() {
  const char* v = std::getenv("MULTILORA_ORT_LOG_LEVEL");
  if (v && v[0] >= '0' && v[0] <= '4' && v[1] == '\0') return static_cast<OrtLoggingLevel>(v[0] - '0');
  return ORT_LOGGING_LEVEL_ERROR;
}

// Tries one candidate. On success fills the state and returns true; otherwise appends why to `tried`.
bool try_load(OrtState& s, const std::string& path, std::string& tried) {
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = ::dlerror();
    std::string why = err ? err : "dlopen failed";
    if (why.compare(0, path.size() + 2, path + ": ") == 0) why.erase(0, path.size() + 2);  // glibc repeats it
    tried += "\n  " + path + ": " + why;
    return false;
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetApiBaseFn>(::dlsym(handle, "OrtGetApiBase"));
  if (!get_base) {
    tried += "\n  " + path + ": not ONNX Runtime (no symbol OrtGetApiBase)";
    ::dlclose(handle);
    return false;
  }
  const OrtApiBase* base = get_base();
  const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
  if (!api) {
    const std::string lib_version = base ? base->GetVersionString() : "unknown";
    tried += "\n  " + path + ": ONNX Runtime " + lib_version + " does not provide C API version " +
             std::to_string(ORT_API_VERSION) + " (multilora was built with ONNX Runtime " + header_version() +
             " headers; a library of that version or newer is needed)";
    ::dlclose(handle);
    return false;
  }
  // The file actually loaded (a bare soname was resolved by the dynamic linker).
  std::string loaded = path;
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(get_base), &info) && info.dli_fname) loaded = info.dli_fname;
  s.handle = handle;
  s.base = base;
  s.loaded_path = real_path_or(loaded);
  s.api.store(api, std::memory_order_release);
  return true;
}

// Loads the library if needed. Caller holds s.mutex.
void load_locked(OrtState& s) {
  if (s.api.load(std::memory_order_acquire)) return;
  // An explicit choice (API call, then environment variable) is authoritative: if it fails we report it
  // rather than silently running another ONNX Runtime. Without one, the defaults are tried in order.
  std::vector<std::string> candidates;
  const char* env_path = std::getenv("MULTILORA_ORT_LIBRARY");
  std::string origin;
  if (!s.requested_path.empty()) {
    candidates.push_back(s.requested_path);
    origin = " (set with mlora_set_ort_library_path)";
  } else if (env_path && env_path[0]) {
    candidates.push_back(env_path);
    origin = " (from MULTILORA_ORT_LIBRARY)";
  } else {
    const std::string built_in = MLORA_DEFAULT_ORT_LIBRARY;
    if (!built_in.empty()) candidates.push_back(built_in);
    candidates.push_back("libonnxruntime.so");
    candidates.push_back("libonnxruntime.so.1");
  }
  std::string tried;
  for (const std::string& path : candidates) {
    if (try_load(s, path, tried)) return;
  }
  fail(MLORA_STATUS_RUNTIME,
       "cannot load the ONNX Runtime library" + origin + "; tried:" + tried +
           "\nset MULTILORA_ORT_LIBRARY (or call mlora_set_ort_library_path) to a libonnxruntime.so of version " +
           header_version() +
           " or newer (e.g. from the "
           "onnxruntime Python package, onnxruntime/capi/)");
}

OrtEnv* env_locked(OrtState& s) {
  load_locked(s);
  if (!s.env) {
    OrtEnv* env = nullptr;
    ort_check(s.api.load()->CreateEnv(env_log_level(), "multilora", &env), "creating the ONNX Runtime environment");
    s.env = env;
  }
  return s.env;
}

}  // namespace

const OrtApi& ort() {
  OrtState& s = state();
  if (const OrtApi* api = s.api.load(std::memory_order_acquire)) return *api;
  std::lock_guard<std::mutex> lock(s.mutex);
  load_locked(s);
  return *s.api.load(std::memory_order_acquire);
}

OrtEnv* ort_env() {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return env_locked(s);
}

OrtEnv* ort_env_acquire() {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  OrtEnv* env = env_locked(s);
  ++s.env_users;
  return env;
}

void ort_env_release() noexcept {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.env_users > 0) --s.env_users;
}

const OrtMemoryInfo* ort_cpu_memory() {
  OrtState& s = state();
  if (OrtMemoryInfo* info = s.cpu_memory.load(std::memory_order_acquire)) return info;
  const OrtApi& api = ort();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (OrtMemoryInfo* info = s.cpu_memory.load(std::memory_order_acquire)) return info;
  OrtMemoryInfo* info = nullptr;
  ort_check(api.CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &info), "creating CPU memory info");
  s.cpu_memory.store(info, std::memory_order_release);  // lives for the process (values may outlive any env)
  return info;
}

void ort_check(OrtStatus* status, const std::string& context) {
  if (!status) return;
  const OrtApi& api = ort();
  // ONNX Runtime quotes node and input names from the model file: bytes that may not be UTF-8.
  std::string message = escape_invalid_utf8(api.GetErrorMessage(status));
  api.ReleaseStatus(status);
  fail(MLORA_STATUS_RUNTIME, context + ": " + message);
}

std::string ort_library_path() {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  load_locked(s);
  return s.loaded_path;
}

std::string ort_version() {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  load_locked(s);
  return s.base->GetVersionString();
}

void set_ort_library_path(const std::string& path) {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.api.load(std::memory_order_acquire)) {
    if (!path.empty() && real_path_or(path) == s.loaded_path) return;
    fail(MLORA_STATUS_IN_USE, "ONNX Runtime is already loaded from '" + s.loaded_path +
                                  "'; its library path can only be set before first use (asked for '" + path + "')");
  }
  s.requested_path = path;  // empty clears it
}

void ort_shutdown() {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.env_users > 0) {
    fail(MLORA_STATUS_IN_USE, "cannot shut down ONNX Runtime: " + std::to_string(s.env_users) +
                                  " model(s) are still alive; release every handle first");
  }
  if (s.env) {
    s.api.load()->ReleaseEnv(s.env);
    s.env = nullptr;  // a later model creates a new environment
  }
}

void OrtValueDeleter::operator()(OrtValue* v) const noexcept {
  if (v) ort().ReleaseValue(v);
}
void OrtSessionDeleter::operator()(OrtSession* v) const noexcept {
  if (v) ort().ReleaseSession(v);
}
void OrtSessionOptionsDeleter::operator()(OrtSessionOptions* v) const noexcept {
  if (v) ort().ReleaseSessionOptions(v);
}
void OrtTypeInfoDeleter::operator()(OrtTypeInfo* v) const noexcept {
  if (v) ort().ReleaseTypeInfo(v);
}
void OrtTensorTypeAndShapeInfoDeleter::operator()(OrtTensorTypeAndShapeInfo* v) const noexcept {
  if (v) ort().ReleaseTensorTypeAndShapeInfo(v);
}

}  // namespace mlora
