// Reading and writing ONNX Runtime's .onnx_adapter files (docs/design.md §4).
//
// Reading maps the file and keeps every parameter's bytes where they are: Param::data points into the mapping.
// The only copies are parameters whose payload is not aligned to its element size (ONNX Runtime's own writer
// aligns raw_data to 4 bytes only, so float64/int64 payloads are often misaligned) and, for memory-loaded
// adapters, the caller's buffer itself. Both are counted in bytes_copied().
#include "adapter/adapter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <unordered_set>
#include <utility>

#include "adapter_generated.h"
#include "io/mapped_file.h"
#include "io/read_file.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/name_hash.h"
#include "util/utf8.h"

// Element bytes and dims are stored little-endian and used in place.
static_assert(FLATBUFFERS_LITTLEENDIAN, "multilora reads .onnx_adapter payloads in place: little-endian hosts only");

namespace mlora {

namespace {

constexpr int32_t kFormatVersion = 1;
constexpr size_t kRawDataAlignment = 8;  // what the schema asks for raw_data (force_align: 8)
constexpr size_t kBufferAlignment = 64;  // owned buffers: cache-line aligned, enough for every dtype
// The largest buffer FlatBuffers can address (32-bit signed offsets).
constexpr uint64_t kMaxBufferSize = FLATBUFFERS_MAX_BUFFER_SIZE;
// The smallest possible buffer: root offset, table's vtable offset, vtable header (FLATBUFFERS_MIN_BUFFER_SIZE
// spelled with qualified names; the macro itself only compiles inside namespace flatbuffers).
constexpr size_t kMinBufferSize =
    sizeof(flatbuffers::uoffset_t) + sizeof(flatbuffers::soffset_t) + 2 * sizeof(flatbuffers::voffset_t);

// ---- owned, 64-byte aligned byte buffers -----------------------------------------------------------------

struct AlignedDelete {
  void operator()(uint8_t* p) const noexcept { ::operator delete(p, std::align_val_t(kBufferAlignment)); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], AlignedDelete>;

// A 64-aligned buffer of `size` bytes holding a copy of `src` (uninitialised when src is NULL).
AlignedBytes aligned_copy(const void* src, size_t size) {
  if (size == 0) return nullptr;
  // GCC's aligned operator new rounds the size up to the alignment without an overflow check: SIZE_MAX
  // would "succeed" with a tiny block. Nothing this large can be allocated anyway.
  if (size > static_cast<size_t>(PTRDIFF_MAX) - kBufferAlignment) throw std::bad_alloc();
  AlignedBytes buf(static_cast<uint8_t*>(::operator new(size, std::align_val_t(kBufferAlignment))));
  if (src) std::memcpy(buf.get(), src, size);
  return buf;
}

// ---- reading --------------------------------------------------------------------------------------------

// Bytes 4..7 for an error message: printable ASCII as is, anything else as \xNN.
std::string identifier_text(const uint8_t* p) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    const unsigned char c = p[4 + i];
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      s += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      s += hex;
    }
  }
  return s;
}

// A name for an error message: control characters escaped so the message stays one readable line.
std::string printable(std::string_view name) {
  std::string s;
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      s += hex;
    } else {
      s += ch;
    }
  }
  return s;
}

// Largest LoRA rank among the parameters: dim 1 of A [in, r], dim 0 of B [r, out]. Quantized pairs (the
// MatMulNBits tensors of int4 models: weight [N, blocks, bytes], scales, zero points): dim 0 (N) of A's weight;
// their scales and zero points and B's weight (whose K, the rank, is padded to whole blocks) say nothing more.
int64_t lora_rank(const std::vector<Param>& params, const std::vector<Adapter::NameInfo>& info) {
  int64_t rank = 0;
  auto ends_with = [](std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    if (p.dims.size() < 2) continue;
    if (ends_with(p.name, "_scales") || ends_with(p.name, "_zero_points")) continue;
    const LoraHalves& halves = info[i].halves;
    const bool a = halves.last_a != std::string_view::npos, b = halves.last_b != std::string_view::npos;
    if (p.dims.size() == 3) {
      if (a) rank = std::max(rank, p.dims[0]);
      continue;
    }
    if (a) rank = std::max(rank, p.dims[1]);
    if (b) rank = std::max(rank, p.dims[0]);
  }
  return rank;
}

}  // namespace

LoraHalves lora_halves(std::string_view name) noexcept {
  constexpr size_t kLen = 6;  // "lora_A"
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  constexpr uint64_t kL = kOnes * static_cast<unsigned char>('l');
  LoraHalves out;
  const char* s = name.data();
  const size_t n = name.size();
  if (n < kLen) return out;
  // Checks a candidate position (a byte equal to 'l'); positions only grow, so the last match stays.
  auto check = [&](size_t pos) {
    if (pos + kLen > n || std::memcmp(s + pos, "lora_", 5) != 0) return;
    if (s[pos + 5] == 'A') out.last_a = pos;
    if (s[pos + 5] == 'B') out.last_b = pos;
  };
  // Candidates eight bytes at a time: the zero-byte trick on (word ^ "llllllll"). It may also flag a byte
  // above a true match; every candidate is checked, so that only costs a comparison.
  auto scan = [&](uint64_t w, size_t base, size_t from) {
    const uint64_t x = w ^ kL;
    for (uint64_t m = (x - kOnes) & ~x & kHigh; m; m &= m - 1) {
      const size_t pos = base + static_cast<size_t>(__builtin_ctzll(m)) / 8;
      if (pos >= from) check(pos);
    }
  };
  if (n < 8) {
    for (size_t pos = 0; pos + kLen <= n; ++pos) {
      if (s[pos] == 'l') check(pos);
    }
    return out;
  }
  size_t base = 0;
  for (; base + 8 <= n; base += 8) {
    uint64_t w;
    std::memcpy(&w, s + base, 8);
    scan(w, base, base);
  }
  if (base < n) {  // the last eight bytes again, positions from `base` on (whole-word loads only)
    uint64_t w;
    std::memcpy(&w, s + n - 8, 8);
    scan(w, n - 8, base);
  }
  return out;
}

struct Adapter::Storage {
  std::string source;                // path, or the label of a memory-loaded adapter
  MappedFile file;                   // file-backed adapters
  AlignedBytes buffer;               // memory-loaded adapters: the copy of the caller's bytes
  std::vector<AlignedBytes> copies;  // payloads that were misaligned in the file/buffer
  int32_t format_version = 0;
  int32_t adapter_version = 0;
  int32_t model_version = 0;
  std::vector<Param> params;
  // Each parameter's name_hash and lora_halves (one pass over its name for the rank and the registry's partner
  // checks), and the names' positions in a table keyed by the hash: two allocations per adapter, no string
  // copied (loading is on the request path; a hash map of std::string cost a quarter of a warm load, a sorted
  // index of names most of another tenth).
  std::vector<NameInfo> info;
  NameTable by_name;
  std::unique_ptr<char[]> names;  // renamed / rebuilt views: their copy of the parameters' names
  int64_t rank = 0;
  uint64_t bytes_mapped = 0;
  uint64_t bytes_copied = 0;
  std::shared_ptr<const Adapter> base;       // renamed views: the adapter whose bytes params point into
  std::vector<std::shared_ptr<void>> owned;  // with_params views: buffers of the new parameters
};

namespace {

// Fills st.info and st.by_name; on a name that appears twice returns its first two positions (the pair
// whose second position comes first, as a reader going through the file meets it), else {-1, -1}.
std::pair<int64_t, int64_t> index_names(Adapter::Storage& st) {
  const auto& params = st.params;
  st.info.resize(params.size());
  st.by_name.reset(params.size());
  auto name_of = [&](uint32_t i) { return params[i].name; };
  for (size_t i = 0; i < params.size(); ++i) {
    st.info[i] = {name_hash(params[i].name), lora_halves(params[i].name)};
    const uint32_t first = st.by_name.insert(params[i].name, st.info[i].hash, static_cast<uint32_t>(i), name_of);
    if (first != NameTable::kNone) return {first, static_cast<int64_t>(i)};
  }
  return {-1, -1};
}

// Verifies `buf` (which `st` keeps alive) and fills st's header fields and params. Every message starts with
// "adapter file '<st.source>'" (is_file) or "adapter '<st.source>'" (composed only on failure).
void parse(const uint8_t* buf, size_t size, bool is_file, Adapter::Storage& st) {
  auto subject = [&] { return (is_file ? "adapter file '" : "adapter '") + st.source + "'"; };
  if (size < kMinBufferSize) {
    fail(MLORA_STATUS_FORMAT, subject() + ": too small to be an .onnx_adapter file (" + std::to_string(size) +
                                  " bytes, at least " + std::to_string(kMinBufferSize) + " needed)");
  }
  if (!fbs::AdapterBufferHasIdentifier(buf)) {
    fail(MLORA_STATUS_FORMAT, subject() + ": not an .onnx_adapter file (file identifier at bytes 4..7 is '" +
                                  identifier_text(buf) + "', expected '" + fbs::AdapterIdentifier() + "')");
  }
  if (size >= kMaxBufferSize) {
    fail(MLORA_STATUS_FORMAT, subject() + ": " + std::to_string(size) +
                                  " bytes is beyond the 2 GiB FlatBuffers limit of the .onnx_adapter format");
  }
  flatbuffers::Verifier verifier(buf, size);
  if (!fbs::VerifyAdapterBuffer(verifier)) {
    fail(MLORA_STATUS_FORMAT, subject() + ": corrupt or truncated .onnx_adapter file (" + std::to_string(size) +
                                  " bytes; FlatBuffers verification failed)");
  }

  const fbs::Adapter* root = fbs::GetAdapter(buf);
  st.format_version = root->format_version();
  st.adapter_version = root->adapter_version();
  st.model_version = root->model_version();
  if (st.format_version != kFormatVersion) {
    fail(MLORA_STATUS_FORMAT, subject() + ": unsupported format_version " + std::to_string(st.format_version) +
                                  ", expected " + std::to_string(kFormatVersion));
  }

  // Structural rules beyond the verifier follow ONNX Runtime's own loader (1.32), so that whatever we accept
  // ORT accepts too: the parameters vector, each name, dims (non-empty) and raw_data must be present.
  const auto* fparams = root->parameters();
  if (!fparams) {
    fail(MLORA_STATUS_FORMAT, subject() + ": no parameters vector (an adapter without parameters has an empty one)");
  }
  const size_t count = fparams->size();
  st.params.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const fbs::Parameter* fp = fparams->Get(static_cast<flatbuffers::uoffset_t>(i));
    // Messages are composed only on failure: loading is on the request path.
    auto nth = [&] { return subject() + ": parameter #" + std::to_string(i); };
    const flatbuffers::String* fname = fp->name();
    if (!fname || fname->size() == 0) fail(MLORA_STATUS_FORMAT, nth() + " has no name");

    // In place: the name and everything else below are read where they are, into a record of the one
    // params allocation (no string or vector per parameter).
    Param& p = st.params.emplace_back();
    p.name = std::string_view(fname->c_str(), fname->size());
    // Checked before the name appears in any message: messages are UTF-8 C strings.
    if (p.name.find('\0') != std::string_view::npos) fail(MLORA_STATUS_FORMAT, nth() + ": name contains a NUL byte");
    if (!valid_utf8(p.name.data(), p.name.size())) fail(MLORA_STATUS_FORMAT, nth() + ": name is not valid UTF-8");
    auto what = [&] { return subject() + ": parameter '" + printable(p.name) + "'"; };

    p.dtype = fp->data_type();
    const size_t elem_size = dtype_size(p.dtype);
    if (elem_size == 0) {
      fail(MLORA_STATUS_FORMAT, what() + ": unsupported data_type " + std::to_string(p.dtype) +
                                    " (ONNX TensorProto numbering; multilora reads float32, float16, bfloat16, "
                                    "float64, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool)");
    }

    const auto* fdims = fp->dims();
    if (!fdims || fdims->size() == 0) {
      fail(MLORA_STATUS_FORMAT,
           what() + (fdims ? " is a scalar (empty dims); parameters need at least one dimension" : " has no dims"));
    }
    // Copied (Dims::assign): the verifier only guarantees 4-byte alignment of the vector, the elements are int64.
    p.dims.assign(fdims->Data(), fdims->size());

    // Positive dims whose product fits: counted here (from the file's bytes, not the copy just written); anything
    // else (zero, negative, overflow) by element_count, which says what is wrong.
    size_t elements = 1;
    bool counted = true;
    for (size_t k = 0; k < fdims->size(); ++k) {
      int64_t d;
      std::memcpy(&d, fdims->Data() + k * sizeof(int64_t), sizeof d);
      if (d <= 0 || __builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements)) {
        counted = false;
        break;
      }
    }
    if (!counted) {
      try {
        elements = element_count(p.dims.vec(), "");
      } catch (const Error& e) {
        fail(MLORA_STATUS_FORMAT, what() + e.what());  // a shape in a file is a format problem, not a caller's
      }
    }
    if (__builtin_mul_overflow(elements, elem_size, &p.nbytes)) {
      fail(MLORA_STATUS_FORMAT,
           what() + ": byte size of " + dtype_name(p.dtype) + " " + shape_str(p.dims.vec()) + " overflows");
    }

    const auto* raw = fp->raw_data();
    if (!raw) fail(MLORA_STATUS_FORMAT, what() + " has no raw_data (even a zero-width parameter has an empty one)");
    const size_t have = raw->size();
    if (have != p.nbytes) {
      fail(MLORA_STATUS_FORMAT, what() + ": raw_data has " + std::to_string(have) + " bytes, expected " +
                                    std::to_string(p.nbytes) + " (" + dtype_name(p.dtype) + " " +
                                    shape_str(p.dims.vec()) + ")");
    }

    if (p.nbytes == 0) {
      p.data = nullptr;
    } else if (reinterpret_cast<uintptr_t>(raw->data()) % elem_size == 0) {
      p.data = raw->data();  // zero-copy: into the mapping (or the owned buffer)
    } else {
      st.copies.push_back(aligned_copy(raw->data(), p.nbytes));
      p.data = st.copies.back().get();
      st.bytes_copied += p.nbytes;
    }
  }
  const auto dup = index_names(st);
  if (dup.first >= 0) {
    fail(MLORA_STATUS_FORMAT, subject() + ": parameter '" + printable(st.params[dup.first].name) +
                                  "' appears twice (parameters #" + std::to_string(dup.first) + " and #" +
                                  std::to_string(dup.second) + ")");
  }
  st.rank = lora_rank(st.params, st.info);
}

}  // namespace

std::shared_ptr<const Adapter> Adapter::open_file(const std::string& path, bool copy) {
  return open_file(path, copy, nullptr);
}

std::shared_ptr<const Adapter> Adapter::open_file(const std::string& path, bool copy, bool* is_directory) {
  if (copy && is_directory) {
    struct stat sb;
    if (::stat(path.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode)) {
      *is_directory = true;
      return nullptr;
    }
  }
  auto st = std::make_unique<Storage>();
  st->source = path;
  if (copy) {
    // Private memory: later truncation or rewriting of the file cannot reach us (no SIGBUS, no new payload).
    const size_t size = read_regular_file(path, kMaxBufferSize, [&](size_t n) {
      st->buffer = aligned_copy(nullptr, n);
      return reinterpret_cast<char*>(st->buffer.get());
    });
    st->bytes_copied = size;
    parse(st->buffer.get(), size, true, *st);
    return std::make_shared<const Adapter>(std::move(st));
  }
  bool dir = false;
  st->file = MappedFile::open(path, is_directory ? &dir : nullptr);
  if (dir) {
    *is_directory = true;
    return nullptr;
  }
  st->bytes_mapped = st->file.size();
  parse(st->file.data(), st->file.size(), true, *st);
  return std::make_shared<const Adapter>(std::move(st));
}

std::shared_ptr<const Adapter> Adapter::open_memory(const void* data, size_t size, const std::string& label) {
  if (!data && size != 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "adapter '" + label + "': data is NULL");
  // Limits before the copy: a size that lies (SIZE_MAX, 3 GiB over a small buffer) must not be allocated or read.
  if (size >= kMaxBufferSize) {
    fail(MLORA_STATUS_FORMAT, "adapter '" + label + "': " + std::to_string(size) +
                                  " bytes is beyond the 2 GiB FlatBuffers limit of the .onnx_adapter format");
  }
  auto st = std::make_unique<Storage>();
  st->source = label;
  // Copy first: the caller's buffer may be misaligned and need not outlive the call. Offsets keep their
  // alignment in the 64-aligned copy, exactly as in a page-aligned mapping of the same bytes.
  st->buffer = aligned_copy(data, size);
  st->bytes_copied = size;
  parse(st->buffer.get(), size, false, *st);
  return std::make_shared<const Adapter>(std::move(st));
}

namespace {

// A view's storage: `from`'s header (source, versions, byte counts) with `params` indexed by name, their names
// copied into the view; FORMAT when two of them share a name. The caller sets the rank and keeps the base alive.
std::unique_ptr<Adapter::Storage> derived_storage(const Adapter::Storage& from, std::vector<Param> params) {
  auto st = std::make_unique<Adapter::Storage>();
  st->source = from.source;
  st->format_version = from.format_version;
  st->adapter_version = from.adapter_version;
  st->model_version = from.model_version;
  st->bytes_mapped = from.bytes_mapped;
  st->bytes_copied = from.bytes_copied;
  size_t total = 0;
  for (const Param& p : params) total += p.name.size();
  st->names = std::make_unique<char[]>(total + 1);
  char* out = st->names.get();
  for (Param& p : params) {
    if (!p.name.empty()) std::memcpy(out, p.name.data(), p.name.size());
    p.name = std::string_view(out, p.name.size());
    out += p.name.size();
  }
  st->params = std::move(params);
  const auto dup = index_names(*st);
  if (dup.first >= 0) {
    fail(MLORA_STATUS_FORMAT,
         "adapter '" + from.source + "': two parameters are named '" + std::string(st->params[dup.first].name) + "'");
  }
  return st;
}

}  // namespace

std::shared_ptr<const Adapter> Adapter::renamed(std::shared_ptr<const Adapter> base,
                                                const std::vector<std::string>& names) {
  const Storage& from = *base->storage_;
  if (names.size() != from.params.size()) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "renaming " + std::to_string(from.params.size()) + " parameters with " +
                                            std::to_string(names.size()) + " names");
  }
  std::vector<Param> params = from.params;
  for (size_t i = 0; i < names.size(); ++i) params[i].name = names[i];
  auto st = derived_storage(from, std::move(params));
  st->rank = from.rank;
  st->base = std::move(base);
  return std::make_shared<const Adapter>(std::move(st));
}

std::shared_ptr<const Adapter> Adapter::with_params(std::shared_ptr<const Adapter> base, std::vector<Param> params,
                                                    std::vector<std::shared_ptr<void>> owned, uint64_t owned_bytes) {
  const Storage& from = *base->storage_;
  auto st = derived_storage(from, std::move(params));
  st->bytes_copied += owned_bytes;
  st->rank = lora_rank(st->params, st->info);
  st->owned = std::move(owned);
  st->base = std::move(base);
  return std::make_shared<const Adapter>(std::move(st));
}

Adapter::Adapter(std::unique_ptr<Storage> storage) : storage_(std::move(storage)) {}
Adapter::~Adapter() = default;

int32_t Adapter::format_version() const noexcept { return storage_->format_version; }
int32_t Adapter::adapter_version() const noexcept { return storage_->adapter_version; }
int32_t Adapter::model_version() const noexcept { return storage_->model_version; }
const std::vector<Param>& Adapter::params() const noexcept { return storage_->params; }
int64_t Adapter::rank() const noexcept { return storage_->rank; }
uint64_t Adapter::bytes_mapped() const noexcept { return storage_->bytes_mapped; }
uint64_t Adapter::bytes_copied() const noexcept { return storage_->bytes_copied; }
const std::string& Adapter::source() const noexcept { return storage_->source; }

uint64_t Adapter::param_hash(size_t i) const noexcept { return storage_->info[i].hash; }
const LoraHalves& Adapter::param_halves(size_t i) const noexcept { return storage_->info[i].halves; }

const Param* Adapter::find(std::string_view name) const noexcept {
  const auto& params = storage_->params;
  const uint32_t i = storage_->by_name.find(name, name_hash(name), [&](uint32_t k) { return params[k].name; });
  return i == NameTable::kNone ? nullptr : &params[i];
}

// ---- writing --------------------------------------------------------------------------------------------

namespace {

// Checks the parameters and builds the finished buffer in `fbb`.
void build(flatbuffers::FlatBufferBuilder& fbb, const std::vector<ParamView>& params, int32_t adapter_version,
           int32_t model_version) {
  // Validate everything before building, and bound the size: FlatBuffers cannot address 2 GiB.
  std::unordered_set<std::string> names;
  names.reserve(params.size());
  uint64_t estimate = 64;
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamView& p = params[i];
    const std::string nth = "parameter #" + std::to_string(i);
    if (p.name.empty()) fail(MLORA_STATUS_INVALID_ARGUMENT, nth + " has an empty name");
    if (p.name.find('\0') != std::string::npos) fail(MLORA_STATUS_INVALID_ARGUMENT, nth + ": name contains a NUL byte");
    if (!valid_utf8(p.name.data(), p.name.size())) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, nth + ": name is not valid UTF-8");
    }
    const std::string what = "parameter '" + printable(p.name) + "'";
    if (!names.insert(p.name).second) fail(MLORA_STATUS_INVALID_ARGUMENT, what + " is given twice");
    check_dtype(p.dtype, what);
    // ONNX Runtime writes bool parameters but its loader refuses them (1.32: "not a supported LoRA parameter
    // type"); scalars likewise ("dims is missing or empty"). Refuse both rather than write unloadable files.
    if (p.dtype == MLORA_DTYPE_BOOL) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, what + ": bool parameters cannot be loaded by ONNX Runtime's adapter loader");
    }
    if (p.dims.empty()) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           what + ": a scalar (empty dims) cannot be loaded by ONNX Runtime's adapter loader");
    }
    size_t elements = 0;
    try {
      elements = element_count(p.dims, what);
    } catch (const Error& e) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, e.what());  // negative dim or overflowing shape
    }
    size_t expected = 0;
    if (__builtin_mul_overflow(elements, dtype_size(p.dtype), &expected) || p.nbytes != expected) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, what + ": " + std::to_string(p.nbytes) + " bytes of data, expected " +
                                              std::to_string(expected) + " for " + dtype_name(p.dtype) + " " +
                                              shape_str(p.dims));
    }
    if (p.nbytes != 0 && !p.data) fail(MLORA_STATUS_INVALID_ARGUMENT, what + ": data is NULL");
    // payload + alignment padding, name, dims, two vtables/tables and offsets, generously rounded.
    estimate += p.nbytes + kRawDataAlignment + p.name.size() + 8 * p.dims.size() + 96;
    if (estimate >= kMaxBufferSize) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           "adapter too large for the .onnx_adapter format (FlatBuffers' 2 GiB limit) at " + what);
    }
  }

  std::vector<flatbuffers::Offset<fbs::Parameter>> offsets;
  offsets.reserve(params.size());
  for (const ParamView& p : params) {
    const auto name = fbb.CreateString(p.name);
    const auto dims = fbb.CreateVector(p.dims);
    // What the schema's force_align: 8 does in the generated *Direct helper: pad so the payload starts on
    // an 8-byte boundary of the finished buffer.
    fbb.ForceVectorAlignment(p.nbytes, sizeof(uint8_t), kRawDataAlignment);
    const auto raw = fbb.CreateVector(static_cast<const uint8_t*>(p.data), p.nbytes);
    offsets.push_back(fbs::CreateParameter(fbb, name, dims, p.dtype, raw));
  }
  const auto vec = fbb.CreateVector(offsets);
  fbs::FinishAdapterBuffer(fbb, fbs::CreateAdapter(fbb, kFormatVersion, adapter_version, model_version, vec));

  // Alignment is relative to the start of the finished buffer (the builder pads from its end, and Finish
  // rounds the total to the largest alignment used); check it rather than trust it.
  const uint8_t* buf = fbb.GetBufferPointer();
  const auto* written = fbs::GetAdapter(buf)->parameters();
  for (flatbuffers::uoffset_t i = 0; i < written->size(); ++i) {
    const auto* raw = written->Get(i)->raw_data();
    if (raw->size() != 0 && (raw->data() - buf) % kRawDataAlignment != 0) {
      fail(MLORA_STATUS_INTERNAL, "serialize_adapter: raw_data of parameter '" + printable(params[i].name) +
                                      "' landed at offset " + std::to_string(raw->data() - buf) + ", not 8-aligned");
    }
  }
}

uint64_t estimated_size(const std::vector<ParamView>& params) {
  uint64_t size = 1024;
  for (const ParamView& p : params) size += p.nbytes + p.name.size() + 8 * p.dims.size() + 128;
  return std::min<uint64_t>(size, kMaxBufferSize);
}

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of [data, data + size) to fd, retrying short writes and EINTR. Returns 0 or an errno.
int write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

// A temp file beside `path`, deleted on scope exit unless released (after the rename).
struct TempFile {
  std::string path;
  int fd = -1;
  bool keep = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

std::vector<uint8_t> serialize_adapter(const std::vector<ParamView>& params, int32_t adapter_version,
                                       int32_t model_version) {
  flatbuffers::FlatBufferBuilder fbb(static_cast<size_t>(estimated_size(params)));
  build(fbb, params, adapter_version, model_version);
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

void write_adapter_file(const std::string& path, const std::vector<ParamView>& params, int32_t adapter_version,
                        int32_t model_version) {
  flatbuffers::FlatBufferBuilder fbb(static_cast<size_t>(estimated_size(params)));
  build(fbb, params, adapter_version, model_version);

  // Temp file in the same directory (so rename is atomic), created exclusively with mode 0666 & ~umask like
  // any new file. The random suffix avoids collisions between threads and processes.
  TempFile tmp;
  std::random_device rd;
  for (int attempt = 0; tmp.fd < 0; ++attempt) {
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%08x%08x", static_cast<long>(::getpid()), rd(), rd());
    tmp.path = path + suffix;
    tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (tmp.fd < 0) {
      const int err = errno;
      if ((err == EEXIST || err == EINTR) && attempt < 100) continue;
      tmp.path.clear();  // nothing to delete
      fail(MLORA_STATUS_IO,
           "cannot write '" + path + "': creating a temporary file beside it failed: " + errno_text(err));
    }
  }

  if (const int err = write_all(tmp.fd, fbb.GetBufferPointer(), fbb.GetSize())) {
    fail(MLORA_STATUS_IO, "cannot write '" + path + "': " + errno_text(err));
  }
  if (::fsync(tmp.fd) != 0) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot write '" + path + "': fsync failed: " + errno_text(err));
  }
  const int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot write '" + path + "': close failed: " + errno_text(err));
  }
  if (::rename(tmp.path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    fail(MLORA_STATUS_IO, "cannot write '" + path + "': " + errno_text(err));
  }
  tmp.keep = true;

  // Make the rename itself durable; a failure here leaves a complete file behind, so it is not an error.
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace mlora
