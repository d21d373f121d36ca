#include "util/json.h"

#include "util/error.h"
#include "util/utf8.h"

namespace mlora {

namespace {

// Scans brackets outside strings; throws at the first one past the limit. Malformed text is left to the
// parser (it reports it better); only depth is judged here.
void check_depth(const char* begin, const char* end, const std::string& who) {
  size_t depth = 0;
  bool in_string = false;
  for (const char* p = begin; p < end; ++p) {
    const char c = *p;
    if (in_string) {
      if (c == '\\') {
        ++p;  // skip the escaped character (\" does not end the string)
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        fail(MLORA_STATUS_FORMAT, who + " nests JSON deeper than " + std::to_string(kMaxJsonDepth) +
                                      " levels (at byte " + std::to_string(p - begin) + ")");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

}  // namespace

nlohmann::json parse_json(const char* begin, const char* end, const std::string& who) {
  check_depth(begin, end, who);
  try {
    return nlohmann::json::parse(begin, end);
  } catch (const nlohmann::json::exception& e) {
    fail(MLORA_STATUS_FORMAT, who + " is not valid JSON: " + escape_invalid_utf8(e.what()));
  }
}

}  // namespace mlora
