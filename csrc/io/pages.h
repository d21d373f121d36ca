// Zeroed anonymous memory for large, long-lived buffers that kernels stream through (the slot table's
// stacked adapter slots): one mapping, aligned to and advised for transparent huge pages.
#pragma once

#include <cstddef>
#include <memory>

namespace mlora {

// The huge page size the mappings are aligned to (x86-64 and arm64 with 4 KiB base pages: 2 MiB).
constexpr size_t kHugePageBytes = size_t{2} << 20;

// `bytes` of zeroed memory (at least one page), page-aligned; when `bytes` is at least a huge page, the mapping
// is aligned to kHugePageBytes and advised MADV_HUGEPAGE, so the kernel backs it with huge pages where
// transparent huge pages are enabled ("always" or "madvise"; plain pages otherwise — the advice is not an
// error). Why: a decode row reads each slot's A and B as short streams spread over the whole table; with 4 KiB
// pages nearly every 4 KiB costs a TLB miss (docs/design.md §6, the slot table). The memory is resident
// where it is touched, in huge pages: a table touched at all is resident at (nearly) its full size.
// Throws std::bad_alloc when the mapping fails. The deleter unmaps; the pointer is freed with it.
std::shared_ptr<void> zeroed_pages(size_t bytes);

}  // namespace mlora
