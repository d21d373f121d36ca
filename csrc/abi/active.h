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

// Per-row sets (mlora_run_options_set_active_adapters_per_row and its generation twins): row i uses the next
// row_counts[i] names. Throws INVALID_HANDLE, INVALID_ARGUMENT (not prepared, batch 0, too many distinct sets),
// NOT_FOUND (naming the row).
std::shared_ptr<const BatchSet> resolve_per_row(const mlora_adapters_t* adapters, const char* const* names,
                                                const float* weights, const size_t* row_counts, size_t batch_size);

}  // namespace mlora::abi
