// An adapter's contents: immutable after construction, shared as std::shared_ptr<const Adapter>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mlora {

// A parameter's shape. Up to kInline dims live in place (every LoRA parameter: 2-D, or 3-D MatMulNBits
// weights), more on the heap: loading builds one per parameter and is on the request path.
class Dims {
 public:
  static constexpr size_t kInline = 4;

  Dims() noexcept = default;
  Dims(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.size()); }
  explicit Dims(const std::vector<int64_t>& dims) { assign(dims.data(), dims.size()); }
  Dims(const Dims& o) { assign(o.data(), o.size_); }
  Dims(Dims&& o) noexcept : size_(o.size_), heap_(std::move(o.heap_)) {
    std::memcpy(inline_, o.inline_, sizeof inline_);
    o.size_ = 0;
  }
  Dims& operator=(const Dims& o) {
    if (this != &o) assign(o.data(), o.size_);
    return *this;
  }
  Dims& operator=(Dims&& o) noexcept {
    size_ = o.size_;
    heap_ = std::move(o.heap_);
    std::memcpy(inline_, o.inline_, sizeof inline_);
    o.size_ = 0;
    return *this;
  }

  // `count` int64 values from `src`, which need not be aligned (a FlatBuffers vector is 4-aligned).
  void assign(const void* src, size_t count) {
    int64_t* dst = inline_;
    if (count > kInline) {
      heap_.reset(new int64_t[count]);
      dst = heap_.get();
    } else {
      heap_.reset();
    }
    if (count) std::memcpy(dst, src, count * sizeof(int64_t));
    size_ = count;
  }

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const int64_t* data() const noexcept { return heap_ ? heap_.get() : inline_; }
  const int64_t* begin() const noexcept { return data(); }
  const int64_t* end() const noexcept { return data() + size_; }
  int64_t operator[](size_t i) const noexcept { return data()[i]; }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }
  bool operator==(const std::vector<int64_t>& o) const noexcept {
    return o.size() == size_ && (size_ == 0 || std::memcmp(o.data(), data(), size_ * sizeof(int64_t)) == 0);
  }
  bool operator!=(const std::vector<int64_t>& o) const noexcept { return !(*this == o); }
  bool operator==(const Dims& o) const noexcept {
    return o.size_ == size_ && (size_ == 0 || std::memcmp(o.data(), data(), size_ * sizeof(int64_t)) == 0);
  }
  bool operator!=(const Dims& o) const noexcept { return !(*this == o); }

 private:
  size_t size_ = 0;
  int64_t inline_[kInline] = {};
  std::unique_ptr<int64_t[]> heap_;  // more than kInline dims
};

struct Param {
  // User-provided (not `= default`): `params.emplace_back()` then runs the member initializers below instead
  // of first zeroing the whole record (a `rep stos` per parameter of every load).
  Param() noexcept {}

  // Points into the adapter's bytes (the file mapping, or its copy of them) or, in a renamed or rebuilt view,
  // into the view's own copy of the names: valid while the adapter is.
  std::string_view name;
  int32_t dtype = 0;           // ONNX TensorProto numbering
  Dims dims;                   // may contain 0 (zero-width)
  const void* data = nullptr;  // points into the mapping / owned buffer; aligned to the element size
  size_t nbytes = 0;           // == element_count(dims) * dtype_size(dtype)
  // A float32 [K, N] parameter dequantized from a MatMulNBits block of at most 4 bits (adapter/dequantize.h):
  // the file's scales as float32 [ceil(K / scale_block), N], so int8 slots hold the blocks exactly
  // (int8 = q - zero point). Null otherwise.
  const float* block_scales = nullptr;
  int64_t scale_block = 0;
};

// Where a parameter name says which half of a LoRA pair it is: the positions of its last "lora_A" and last
// "lora_B" (npos when it has none). One pass over the name, eight bytes at a time: loading asks this of every
// parameter (the rank, and each half's partner).
struct LoraHalves {
  size_t last_a = std::string_view::npos;
  size_t last_b = std::string_view::npos;
};
LoraHalves lora_halves(std::string_view name) noexcept;

class Adapter {
 public:
  // Maps and verifies an .onnx_adapter file (flatbuffers verifier + our checks). Throws NOT_FOUND, IO,
  // FORMAT with the path and, where it applies, the parameter name and expected vs actual value.
  // copy: read the file into private memory instead of mapping it (MLORA_LOAD_COPY).
  static std::shared_ptr<const Adapter> open_file(const std::string& path, bool copy = false);
  // Same, but when `path` is a directory sets *is_directory and returns null instead of failing (the registry
  // loads a directory as a PEFT folder; finding out costs no extra system call on the file path).
  static std::shared_ptr<const Adapter> open_file(const std::string& path, bool copy, bool* is_directory);
  // Same from a buffer; the bytes are copied into an 8-aligned buffer first. `label` names it in errors.
  static std::shared_ptr<const Adapter> open_memory(const void* data, size_t size, const std::string& label);
  // A view of `base` whose parameter i is named names[i] (same bytes, versions, source; keeps base alive).
  static std::shared_ptr<const Adapter> renamed(std::shared_ptr<const Adapter> base,
                                                const std::vector<std::string>& names);

  // A view of `base` with `params` instead of its own (pointing into base's bytes or into `owned`, which the
  // view keeps alive; owned_bytes counts as copied), e.g. quantized parameters replaced by dequantized ones.
  // The view keeps its own copy of the parameters' names (they may point anywhere that lives through the call).
  static std::shared_ptr<const Adapter> with_params(std::shared_ptr<const Adapter> base, std::vector<Param> params,
                                                    std::vector<std::shared_ptr<void>> owned, uint64_t owned_bytes);

  int32_t format_version() const noexcept;
  int32_t adapter_version() const noexcept;
  int32_t model_version() const noexcept;
  const std::vector<Param>& params() const noexcept;  // file order
  const Param* find(std::string_view name) const noexcept;
  // name_hash(params()[i].name) (util/name_hash.h), computed once when the adapter was read: the registry
  // looks the model's LoRA inputs up with it.
  uint64_t param_hash(size_t i) const noexcept;
  // lora_halves(params()[i].name), likewise computed once.
  const LoraHalves& param_halves(size_t i) const noexcept;
  // Largest rank: dim 1 of params named *lora_A*, dim 0 of *lora_B*; 0 if none.
  int64_t rank() const noexcept;
  uint64_t bytes_mapped() const noexcept;      // size of the file mapping (0 for memory-loaded)
  uint64_t bytes_copied() const noexcept;      // bytes copied (memory-loaded buffer, misaligned params)
  const std::string& source() const noexcept;  // path, or the label for memory-loaded adapters

  ~Adapter();

  struct NameInfo {  // per parameter, from its name
    uint64_t hash = 0;
    LoraHalves halves;
  };
  struct Storage;  // defined in adapter.cpp (mapping + owned buffers)
  Adapter(std::unique_ptr<Storage> storage);

 private:
  std::unique_ptr<Storage> storage_;
};

struct ParamView {  // input to the writer
  std::string name;
  int32_t dtype;
  std::vector<int64_t> dims;
  const void* data;
  size_t nbytes;
};

// Serialises an .onnx_adapter buffer (format_version 1, raw_data aligned to 8). Throws INVALID_ARGUMENT
// on empty/duplicate/non-UTF-8 names, unsupported dtype, or nbytes != dims * dtype size (naming the parameter),
// and on what ONNX Runtime's loader refuses: bool parameters and scalars (empty dims).
std::vector<uint8_t> serialize_adapter(const std::vector<ParamView>& params, int32_t adapter_version,
                                       int32_t model_version);
// Writes serialize_adapter(...) to `path` atomically (temp file beside it + rename). Throws IO.
void write_adapter_file(const std::string& path, const std::vector<ParamView>& params, int32_t adapter_version,
                        int32_t model_version);

}  // namespace mlora
