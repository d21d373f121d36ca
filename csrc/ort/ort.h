// ONNX Runtime access: the library is dlopen'ed lazily (never linked), the OrtApi is requested for the
// API version of the headers we compiled with, and one OrtEnv is created lazily and thread-safely.
#pragma once

#include <onnxruntime_c_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace mlora {

// The OrtApi; loads libonnxruntime on first use. Throws RUNTIME listing every path tried.
const OrtApi& ort();
// The process-wide environment (created on first use, log level from MULTILORA_ORT_LOG_LEVEL, default error).
OrtEnv* ort_env();
// As ort_env(), and counts one more user (a live model) that ort_shutdown() must wait for; every successful
// call is paired with one ort_env_release() once the user's sessions are released.
OrtEnv* ort_env_acquire();
void ort_env_release() noexcept;
// CPU memory info for tensors over our own memory.
const OrtMemoryInfo* ort_cpu_memory();
// Converts a non-null OrtStatus into Error(RUNTIME, context + ": " + ORT message) and releases it.
void ort_check(OrtStatus* status, const std::string& context);
// Library location and version (loads it if needed).
std::string ort_library_path();
std::string ort_version();
// Sets the library path before first use; throws IN_USE if another library is already loaded.
void set_ort_library_path(const std::string& path);
// Thread policy (docs/design.md, "Threads"). Process-wide, fixed when the environment is created:
// intra_op_threads -1 = every session has its own intra-op pool; >= 0 = one global intra-op pool shared by
// every session of the process (0 = ONNX Runtime's default size). allow_spinning 0/1: whether idle pool
// workers spin before sleeping. Throws INVALID_ARGUMENT (out of range), IN_USE once the environment exists.
void set_global_threads(int32_t intra_op_threads, int32_t allow_spinning);
// The current policy (the defaults until set_global_threads).
void global_threads(int32_t* intra_op_threads, int32_t* allow_spinning);
// Applies the policy to one session: with a global pool and no thread count of the model's own
// (model_threads 0), the session uses the global pool; otherwise its own pool of model_threads (0 = ORT's
// default) with the policy's spinning.
void apply_thread_policy(OrtSessionOptions* options, int32_t model_threads);
// Whether `status` (of creating a session) says the process's environment has no global thread pool — it was
// created by another user of the library (onnxruntime-genai, say) before ours. Then the global pool is
// given up for the process (later sessions get pools of their own) and true is returned: build the
// session options again and retry. Does not release `status`.
bool thread_policy_fell_back(OrtStatus* status);
// Releases the environment if no model holds it (see ort_env_acquire); throws IN_USE otherwise. A later model
// creates a new environment. The library itself stays loaded.
void ort_shutdown();

struct OrtValueDeleter {
  void operator()(OrtValue* v) const noexcept;
};
struct OrtSessionDeleter {
  void operator()(OrtSession* v) const noexcept;
};
struct OrtSessionOptionsDeleter {
  void operator()(OrtSessionOptions* v) const noexcept;
};
struct OrtTypeInfoDeleter {
  void operator()(OrtTypeInfo* v) const noexcept;
};
struct OrtTensorTypeAndShapeInfoDeleter {
  void operator()(OrtTensorTypeAndShapeInfo* v) const noexcept;
};
using OrtValuePtr = std::unique_ptr<OrtValue, OrtValueDeleter>;
using OrtSessionPtr = std::unique_ptr<OrtSession, OrtSessionDeleter>;
using OrtSessionOptionsPtr = std::unique_ptr<OrtSessionOptions, OrtSessionOptionsDeleter>;
using OrtTypeInfoPtr = std::unique_ptr<OrtTypeInfo, OrtTypeInfoDeleter>;
using OrtTensorTypeAndShapeInfoPtr = std::unique_ptr<OrtTensorTypeAndShapeInfo, OrtTensorTypeAndShapeInfoDeleter>;

}  // namespace mlora
