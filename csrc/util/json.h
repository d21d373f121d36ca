// Parsing untrusted JSON (genai_config.json, adapter_config.json, safetensors headers) with a nesting limit.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace mlora {

// Deeper nesting than this is refused before parsing: nlohmann::json copies, prints and compares values
// recursively, so ~100k nested '[' would overflow the stack. Real configs nest fewer than 10 levels.
constexpr size_t kMaxJsonDepth = 256;

// Parses [begin, end) as JSON. Throws FORMAT "<who> is not valid JSON: ..." (parser text with any invalid
// UTF-8 escaped) or "<who> nests JSON deeper than 256 levels (at byte N)".
nlohmann::json parse_json(const char* begin, const char* end, const std::string& who);
inline nlohmann::json parse_json(const std::string& text, const std::string& who) {
  return parse_json(text.data(), text.data() + text.size(), who);
}

}  // namespace mlora
