// Header section "Library: versions, errors, ONNX Runtime location".
#include <cstring>

#include "abi/abi.h"
#include "ort/ort.h"
#include "util/utf8.h"

using namespace mlora;
using namespace mlora::abi;

extern "C" {

MLORA_API const char* mlora_version_string(void) { return MLORA_VERSION_STRING; }

MLORA_API int32_t mlora_abi_version(void) { return MLORA_ABI_VERSION; }

MLORA_API const char* mlora_status_name(mlora_status_t status) {
  switch (status) {
    case MLORA_STATUS_OK:
      return "MLORA_STATUS_OK";
    case MLORA_STATUS_INVALID_ARGUMENT:
      return "MLORA_STATUS_INVALID_ARGUMENT";
    case MLORA_STATUS_INVALID_HANDLE:
      return "MLORA_STATUS_INVALID_HANDLE";
    case MLORA_STATUS_NOT_FOUND:
      return "MLORA_STATUS_NOT_FOUND";
    case MLORA_STATUS_ALREADY_EXISTS:
      return "MLORA_STATUS_ALREADY_EXISTS";
    case MLORA_STATUS_IN_USE:
      return "MLORA_STATUS_IN_USE";
    case MLORA_STATUS_IO:
      return "MLORA_STATUS_IO";
    case MLORA_STATUS_FORMAT:
      return "MLORA_STATUS_FORMAT";
    case MLORA_STATUS_SHAPE_MISMATCH:
      return "MLORA_STATUS_SHAPE_MISMATCH";
    case MLORA_STATUS_OUT_OF_MEMORY:
      return "MLORA_STATUS_OUT_OF_MEMORY";
    case MLORA_STATUS_BUFFER_TOO_SMALL:
      return "MLORA_STATUS_BUFFER_TOO_SMALL";
    case MLORA_STATUS_VERSION_MISMATCH:
      return "MLORA_STATUS_VERSION_MISMATCH";
    case MLORA_STATUS_RUNTIME:
      return "MLORA_STATUS_RUNTIME";
    case MLORA_STATUS_INTERNAL:
      return "MLORA_STATUS_INTERNAL";
    case MLORA_STATUS_TYPE_MISMATCH:
      return "MLORA_STATUS_TYPE_MISMATCH";
    case MLORA_STATUS_BUSY:
      return "MLORA_STATUS_BUSY";
    case MLORA_STATUS_CLOSED:
      return "MLORA_STATUS_CLOSED";
    default:
      return "MLORA_STATUS_UNKNOWN";
  }
}

// Messages quote file contents, names and ONNX Runtime's text: the places that build them escape what they
// quote, and this last line of defence keeps the header's promise (UTF-8) for anything that slipped through.
MLORA_API const char* mlora_last_error_message(void) {
  const char* raw = last_message();
  const size_t n = std::strlen(raw);
  if (valid_utf8(raw, n)) return raw;
  // Rebuilt only when the message changed, so a pointer handed out stays valid until the next failing call.
  thread_local std::string source, escaped;
  try {
    if (source.size() != n || source.compare(0, n, raw, n) != 0) {
      source.assign(raw, n);
      escaped = escape_invalid_utf8(source);
    }
  } catch (...) {
    return "(error message lost: out of memory)";
  }
  return escaped.c_str();
}

MLORA_API mlora_status_t mlora_last_error_status(void) { return last_status(); }

MLORA_API mlora_status_t mlora_set_ort_library_path(const char* path) {
  return guard(__func__, [&] { set_ort_library_path(str_arg(path, "path")); });
}

MLORA_API mlora_status_t mlora_ort_info(char* path_buf, size_t path_capacity, size_t* out_path_len, char* version_buf,
                                        size_t version_capacity, size_t* out_version_len) {
  return guard(__func__, [&] {
    out_arg(out_path_len, "out_path_len");
    out_arg(out_version_len, "out_version_len");
    const std::string path = ort_library_path();
    const std::string version = ort_version();
    // Report both sizes even when one buffer is short.
    *out_path_len = path.size() + 1;
    *out_version_len = version.size() + 1;
    write_string(path, path_buf, path_capacity, out_path_len, "the library path");
    write_string(version, version_buf, version_capacity, out_version_len, "the version");
  });
}

MLORA_API mlora_status_t mlora_shutdown(void) {
  return guard(__func__, [&] {
    const size_t live = live_handle_count();
    if (live) {
      fail(MLORA_STATUS_IN_USE, std::to_string(live) + " handles are still alive; release them first");
    }
    ort_shutdown();
  });
}

MLORA_API mlora_status_t mlora_set_global_threads(int32_t intra_op_threads, int32_t allow_spinning) {
  return guard(__func__, [&] { set_global_threads(intra_op_threads, allow_spinning); });
}

}  // extern "C"
