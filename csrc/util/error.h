// Internal error type. Core code throws mlora::Error; csrc/abi converts it to a status at the boundary.
#pragma once

#include <stdexcept>
#include <string>

#include "multilora/multilora.h"

namespace mlora {

class Error : public std::runtime_error {
 public:
  Error(mlora_status_t status, const std::string& message) : std::runtime_error(message), status_(status) {}
  mlora_status_t status() const noexcept { return status_; }

 private:
  mlora_status_t status_;
};

// Throws Error(status, message) — a one-liner for checks: `if (bad) fail(MLORA_STATUS_FORMAT, "...")`.
[[noreturn]] inline void fail(mlora_status_t status, const std::string& message) { throw Error(status, message); }

}  // namespace mlora
