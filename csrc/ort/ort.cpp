#include "ort/ort.h"

#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "util/error.h"
#include "util/utf8.h"

#ifndef MLORA_DEFAULT_ORT_LIBRARY
#define MLORA_DEFAULT_ORT_LIBRARY ""
#endif

namespace mlora {

namespace {

// Defaults of the thread policy (docs/design.md, "Threads"): one global intra-op pool of ONNX Runtime's
// default size whose idle workers spin (measured fastest on a machine the process has to itself).
constexpr int32_t kDefaultGlobalIntra = 0;
constexpr int32_t kDefaultSpinning = 1;

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
  // Thread policy (set_global_threads), read when the environment is created.
  int32_t global_intra = kDefaultGlobalIntra;
  int32_t allow_spinning = kDefaultSpinning;
  bool env_global = false;  // the live environment has the global pools
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
bool try_load(OrtState& s, const std::string& path, std::string& tried, const std::string& label = "") {
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = ::dlerror();
    std::string why = err ? err : "dlopen failed";
    if (why.compare(0, path.size() + 2, path + ": ") == 0) why.erase(0, path.size() + 2);  // glibc repeats it
    tried += "\n  " + label + path + ": " + why;
    return false;
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetApiBaseFn>(::dlsym(handle, "OrtGetApiBase"));
  if (!get_base) {
    tried += "\n  " + label + path + ": not ONNX Runtime (no symbol OrtGetApiBase)";
    ::dlclose(handle);
    return false;
  }
  const OrtApiBase* base = get_base();
  const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
  if (!api) {
    const std::string lib_version = base ? base->GetVersionString() : "unknown";
    tried += "\n  " + label + path + ": ONNX Runtime " + lib_version + " does not provide C API version " +
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

// ---- where the library is looked for ------------------------------------------------------------------

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// libonnxruntime.so, libonnxruntime.so.1, then libonnxruntime.so.1.* (the ONNX Runtime wheel ships only
// libonnxruntime.so.<version>) that exist in `dir`, in that order.
std::vector<std::string> ort_files_in(const std::string& dir) {
  std::vector<std::string> found;
  for (const char* name : {"libonnxruntime.so", "libonnxruntime.so.1"}) {
    if (is_file(dir + "/" + name)) found.push_back(dir + "/" + name);
  }
  glob_t g;
  if (::glob((dir + "/libonnxruntime.so.1.*").c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) found.push_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return found;
}

// The folder of this library (libmultilora.so), found with dladdr.
std::string own_dir() {
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&dir_of), &info) && info.dli_fname) {
    return dir_of(real_path_or(info.dli_fname));
  }
  return "";
}

// When this process runs a Python interpreter (multilora loaded from Python, e.g. with ctypes or cffi, or
// embedded in a Python host), the folder of its `onnxruntime` package (found with importlib.util.find_spec,
// without importing it). Uses the interpreter's C API through dlsym, so the library does not link to Python.
// Empty when there is no interpreter, it is finalizing, or it has no onnxruntime package. `why` says which.
// Called without OrtState::mutex held (it may wait for the GIL).
std::string python_onnxruntime_dir(std::string& why) {
  using IntFn = int (*)();
  using VoidPtrFn = void* (*)();
  auto is_initialized = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "Py_IsInitialized"));
  if (!is_initialized || !is_initialized()) {
    why = "no Python interpreter in this process";
    return "";
  }
  auto is_finalizing = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "Py_IsFinalizing"));
  if (!is_finalizing) is_finalizing = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "_Py_IsFinalizing"));
  auto gil_ensure = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "PyGILState_Ensure"));
  auto gil_release = reinterpret_cast<void (*)(int)>(::dlsym(RTLD_DEFAULT, "PyGILState_Release"));
  auto dict_new = reinterpret_cast<VoidPtrFn>(::dlsym(RTLD_DEFAULT, "PyDict_New"));
  auto dict_set = reinterpret_cast<int (*)(void*, const char*, void*)>(::dlsym(RTLD_DEFAULT, "PyDict_SetItemString"));
  auto builtins = reinterpret_cast<VoidPtrFn>(::dlsym(RTLD_DEFAULT, "PyEval_GetBuiltins"));
  auto run =
      reinterpret_cast<void* (*)(const char*, int, void*, void*, void*)>(::dlsym(RTLD_DEFAULT, "PyRun_StringFlags"));
  auto as_utf8 = reinterpret_cast<const char* (*)(void*)>(::dlsym(RTLD_DEFAULT, "PyUnicode_AsUTF8"));
  auto decref = reinterpret_cast<void (*)(void*)>(::dlsym(RTLD_DEFAULT, "Py_DecRef"));
  auto err_clear = reinterpret_cast<void (*)()>(::dlsym(RTLD_DEFAULT, "PyErr_Clear"));
  if (!gil_ensure || !gil_release || !dict_new || !dict_set || !builtins || !run || !as_utf8 || !decref || !err_clear) {
    why = "the Python interpreter in this process lacks a C API function multilora uses";
    return "";
  }
  if (is_finalizing && is_finalizing()) {
    why = "the Python interpreter is shutting down";
    return "";
  }
  static const char* kExpr =
      "(lambda s: (list(s.submodule_search_locations or []) + [''])[0] if s else '')"
      "(__import__('importlib.util').util.find_spec('onnxruntime'))";
  constexpr int kEvalInput = 258;  // Py_eval_input
  std::string dir;
  const int gil = gil_ensure();
  void* globals = dict_new();
  if (globals && dict_set(globals, "__builtins__", builtins()) == 0) {
    void* result = run(kExpr, kEvalInput, globals, globals, nullptr);
    if (result) {
      const char* text = as_utf8(result);
      if (text) dir = text;
      decref(result);
    }
  }
  err_clear();
  if (globals) decref(globals);
  gil_release(gil);
  if (dir.empty()) why = "the Python interpreter in this process has no onnxruntime package";
  return dir.empty() ? dir : dir + "/capi";
}

// Loads the library if needed. Caller holds s.mutex. `python_dir`/`python_why`: python_onnxruntime_dir(),
// computed by the caller before taking the mutex (empty when not needed).
void load_locked(OrtState& s, const std::string& python_dir = "", const std::string& python_why = "") {
  if (s.api.load(std::memory_order_acquire)) return;
  std::string tried;
  const std::string hint =
      "\nset MULTILORA_ORT_LIBRARY (or call mlora_set_ort_library_path) to a libonnxruntime.so of version " +
      header_version() + " or newer (e.g. pip install 'onnxruntime>=" + header_version() +
      "': its onnxruntime/capi/libonnxruntime.so.*), or put one next to libmultilora.so";
  // An explicit choice (API call, then environment variable) is authoritative: if it fails we report it
  // rather than silently running another ONNX Runtime.
  if (!s.requested_path.empty()) {
    if (try_load(s, s.requested_path, tried)) return;
    fail(MLORA_STATUS_RUNTIME,
         "cannot load the ONNX Runtime library set with mlora_set_ort_library_path:" + tried + hint);
  }
  const char* env_path = std::getenv("MULTILORA_ORT_LIBRARY");
  if (env_path && env_path[0]) {
    if (try_load(s, env_path, tried)) return;
    fail(MLORA_STATUS_RUNTIME, "cannot load the ONNX Runtime library from MULTILORA_ORT_LIBRARY:" + tried + hint);
  }
  // Without one, in this order: next to libmultilora.so, the path recorded at build time, the onnxruntime
  // package of the Python interpreter running this process, the dynamic linker's search path.
  tried += "\n  MULTILORA_ORT_LIBRARY: not set";
  const std::string own = own_dir();
  if (!own.empty()) {
    const std::vector<std::string> files = ort_files_in(own);
    if (files.empty()) tried += "\n  next to libmultilora (" + own + "): no libonnxruntime.so*";
    for (const std::string& path : files) {
      if (try_load(s, path, tried, "next to libmultilora: ")) return;
    }
  }
  const std::string built_in = MLORA_DEFAULT_ORT_LIBRARY;
  if (built_in.empty()) {
    tried += "\n  recorded at build time: none";
  } else if (try_load(s, built_in, tried, "recorded at build time: ")) {
    return;
  }
  if (!python_dir.empty()) {
    const std::vector<std::string> files = ort_files_in(python_dir);
    if (files.empty()) tried += "\n  the Python onnxruntime package (" + python_dir + "): no libonnxruntime.so*";
    for (const std::string& path : files) {
      if (try_load(s, path, tried, "the Python onnxruntime package: ")) return;
    }
  } else {
    tried += "\n  the Python onnxruntime package: " + (python_why.empty() ? std::string("not looked for") : python_why);
  }
  for (const char* name : {"libonnxruntime.so", "libonnxruntime.so.1"}) {
    if (try_load(s, name, tried, "the system library path: ")) return;
  }
  fail(MLORA_STATUS_RUNTIME, "cannot load the ONNX Runtime library; looked in:" + tried + hint);
}

// Loads the library if needed; the caller does not hold s.mutex.
void ensure_loaded(OrtState& s) {
  if (s.api.load(std::memory_order_acquire)) return;
  bool explicit_choice;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    const char* env_path = std::getenv("MULTILORA_ORT_LIBRARY");
    explicit_choice = !s.requested_path.empty() || (env_path && env_path[0]);
  }
  std::string python_why;
  const std::string python_dir = explicit_choice ? std::string() : python_onnxruntime_dir(python_why);
  std::lock_guard<std::mutex> lock(s.mutex);
  load_locked(s, python_dir, python_why);
}

OrtEnv* env_locked(OrtState& s) {
  load_locked(s);
  if (!s.env) {
    const OrtApi& api = *s.api.load();
    OrtEnv* env = nullptr;
    if (s.global_intra >= 0) {
      OrtThreadingOptions* threading = nullptr;
      ort_check(api.CreateThreadingOptions(&threading), "creating the global thread pool options");
      OrtStatus* status = api.SetGlobalIntraOpNumThreads(threading, s.global_intra);
      if (!status) status = api.SetGlobalInterOpNumThreads(threading, 1);
      if (!status) status = api.SetGlobalSpinControl(threading, s.allow_spinning);
      if (!status) status = api.CreateEnvWithGlobalThreadPools(env_log_level(), "multilora", threading, &env);
      api.ReleaseThreadingOptions(threading);
      ort_check(status, "creating the ONNX Runtime environment with a global thread pool of " +
                            std::to_string(s.global_intra) + " threads");
    } else {
      ort_check(api.CreateEnv(env_log_level(), "multilora", &env), "creating the ONNX Runtime environment");
    }
    s.env = env;
    s.env_global = s.global_intra >= 0;
  }
  return s.env;
}

}  // namespace

const OrtApi& ort() {
  OrtState& s = state();
  if (const OrtApi* api = s.api.load(std::memory_order_acquire)) return *api;
  ensure_loaded(s);
  return *s.api.load(std::memory_order_acquire);
}

OrtEnv* ort_env() {
  OrtState& s = state();
  ensure_loaded(s);
  std::lock_guard<std::mutex> lock(s.mutex);
  return env_locked(s);
}

OrtEnv* ort_env_acquire() {
  OrtState& s = state();
  ensure_loaded(s);
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
  ensure_loaded(s);
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.loaded_path;
}

std::string ort_version() {
  OrtState& s = state();
  ensure_loaded(s);
  std::lock_guard<std::mutex> lock(s.mutex);
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

void set_global_threads(int32_t intra_op_threads, int32_t allow_spinning) {
  if (intra_op_threads < -1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "intra_op_threads " + std::to_string(intra_op_threads) +
                                            " is below -1 (-1 = a pool per session, 0 = ONNX Runtime's default)");
  }
  if (allow_spinning != 0 && allow_spinning != 1) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "allow_spinning " + std::to_string(allow_spinning) + " is not 0 or 1");
  }
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.env) {
    fail(MLORA_STATUS_IN_USE,
         "the thread policy is fixed once the ONNX Runtime environment exists (the first model creates it); set "
         "it before the first model, or after mlora_ort_shutdown");
  }
  s.global_intra = intra_op_threads;
  s.allow_spinning = allow_spinning;
}

void global_threads(int32_t* intra_op_threads, int32_t* allow_spinning) {
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (intra_op_threads) *intra_op_threads = s.global_intra;
  if (allow_spinning) *allow_spinning = s.allow_spinning;
}

void apply_thread_policy(OrtSessionOptions* options, int32_t model_threads) {
  OrtState& s = state();
  bool global;
  int32_t spinning;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    global = s.env_global;
    spinning = s.allow_spinning;
  }
  const OrtApi& api = ort();
  if (global && model_threads == 0) {
    ort_check(api.DisablePerSessionThreads(options), "using the global thread pool");
    return;
  }
  if (model_threads > 0) {
    ort_check(api.SetIntraOpNumThreads(options, model_threads),
              "setting " + std::to_string(model_threads) + " intra-op threads");
  }
  ort_check(api.AddSessionConfigEntry(options, "session.intra_op.allow_spinning", spinning ? "1" : "0"),
            "setting the intra-op pool's spinning");
}

bool thread_policy_fell_back(OrtStatus* status) {
  const char* message = ort().GetErrorMessage(status);
  if (!message || !std::strstr(message, "EnvCreatedWithGlobalThreadPools")) return false;
  OrtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.env_global) return false;  // already per-session: the failure is something else
  s.env_global = false;
  return true;
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
