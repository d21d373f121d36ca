#include "peft/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/json.h"

namespace mlora {
namespace peft {

namespace {
// Header bigger than this is refused (the reference implementation caps it at 100 MB as well).
constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;
}  // namespace

size_t st_dtype_size(const std::string& d) noexcept {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile st;
  st.path_ = path;
  st.file_ = MappedFile::open(path);
  const std::string who = "safetensors file '" + path + "'";
  const uint8_t* base = st.file_.data();
  const size_t size = st.file_.size();
  if (size < 8) {
    fail(MLORA_STATUS_FORMAT, who + ": too small (" + std::to_string(size) + " bytes; at least 8 needed)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian
  if (header_len > kMaxHeader || header_len > size - 8) {
    fail(MLORA_STATUS_FORMAT, who + ": header length " + std::to_string(header_len) + " is beyond the file (" +
                                  std::to_string(size) + " bytes) or the 100 MB limit");
  }
  const char* text = reinterpret_cast<const char*>(base + 8);
  const nlohmann::json header = parse_json(text, text + header_len, who + ": header");
  if (!header.is_object()) fail(MLORA_STATUS_FORMAT, who + ": header is not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;  // free-form strings; nothing multilora uses
    const std::string what = who + ": tensor '" + name + "'";
    const nlohmann::json& e = *it;
    if (!e.is_object()) fail(MLORA_STATUS_FORMAT, what + ": entry is not a JSON object");
    StTensor t;
    t.name = name;
    if (!e.contains("dtype") || !e["dtype"].is_string()) fail(MLORA_STATUS_FORMAT, what + ": no dtype string");
    t.dtype = e["dtype"].get<std::string>();
    if (!e.contains("shape") || !e["shape"].is_array()) fail(MLORA_STATUS_FORMAT, what + ": no shape array");
    uint64_t elements = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        fail(MLORA_STATUS_FORMAT,
             what + ": shape " + e["shape"].dump() + " has a dim that is not a non-negative integer");
      }
      const auto v = d.get<int64_t>();
      t.shape.push_back(v);
      if (__builtin_mul_overflow(elements, static_cast<uint64_t>(v), &elements)) {
        fail(MLORA_STATUS_FORMAT, what + ": shape " + e["shape"].dump() + " overflows");
      }
    }
    const auto& off = e.contains("data_offsets") ? e["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      fail(MLORA_STATUS_FORMAT, what + ": data_offsets must be [begin, end] (non-negative integers)");
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      fail(MLORA_STATUS_FORMAT, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                                    "] are outside the data section (" + std::to_string(data_size) + " bytes)");
    }
    const size_t esize = st_dtype_size(t.dtype);
    uint64_t expected = 0;
    if (esize != 0 &&
        (__builtin_mul_overflow(elements, static_cast<uint64_t>(esize), &expected) || expected != end - begin)) {
      fail(MLORA_STATUS_FORMAT, what + ": " + std::to_string(end - begin) + " bytes of data, but " + t.dtype + " " +
                                    e["shape"].dump() + " needs " + std::to_string(elements * esize));
    }
    t.data = data + begin;
    t.nbytes = static_cast<size_t>(end - begin);
    if (t.nbytes) ranges.emplace_back(begin, end);
    st.tensors_.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      fail(MLORA_STATUS_FORMAT, who + ": tensors overlap in the data section (bytes " +
                                    std::to_string(ranges[i].first) + ".." + std::to_string(ranges[i - 1].second) +
                                    ")");
    }
  }
  std::sort(st.tensors_.begin(), st.tensors_.end(),
            [](const StTensor& a, const StTensor& b) { return a.name < b.name; });
  return st;
}

}  // namespace peft
}  // namespace mlora
