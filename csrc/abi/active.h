// Translating (adapters, names, weights, count[, row_counts]) into an adapter selection — shared by run
// options, generator params and generators. The rules themselves live in run/adapter_selection.h.
#pragma once

#include "abi/abi.h"

namespace mlora::abi {

// count == 0 -> the base model (adapters may be NULL). Throws INVALID_HANDLE, INVALID_ARGUMENT, NOT_FOUND.
AdapterSelection single_selection(const mlora_adapters_t* adapters, const char* const* names, const float* weights,
                                  size_t count);

// Per-row sets: row i uses the next row_counts[i] names. Throws INVALID_HANDLE, INVALID_ARGUMENT (not prepared,
// batch 0, too many distinct sets), NOT_FOUND (naming the row).
AdapterSelection per_row_selection(const mlora_adapters_t* adapters, const char* const* names, const float* weights,
                                   const size_t* row_counts, size_t batch_size);

}  // namespace mlora::abi
