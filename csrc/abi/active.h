// Resolving (adapters, names, weights, count) into an active set — shared by run options, generator
// params and generators so all three follow the same rules.
#pragma once

#include <memory>

#include "abi/abi.h"

namespace mlora::abi {

// count == 0 -> nullptr (base model; adapters may be NULL). Throws INVALID_HANDLE, INVALID_ARGUMENT,
// NOT_FOUND.
std::shared_ptr<const ActiveSet> resolve_active(const mlora_adapters_t* adapters, const char* const* names,
                                                const float* weights, size_t count);

}  // namespace mlora::abi
