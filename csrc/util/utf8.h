// UTF-8 well-formedness: every name and path crosses the C ABI as UTF-8, and adapter files store UTF-8.
#pragma once

#include <cstddef>

namespace mlora {

// Whether [s, s + n) is well-formed UTF-8 (no overlong forms, surrogates or code points beyond U+10FFFF).
bool valid_utf8(const char* s, size_t n) noexcept;

}  // namespace mlora

#include <string>

namespace mlora {

// `s` with every byte that is not part of well-formed UTF-8 written as the four characters \xNN, so a
// message quoting file contents or foreign text is always valid UTF-8. Well-formed input is returned as is.
std::string escape_invalid_utf8(const std::string& s);

}  // namespace mlora

namespace mlora {

// A name or path for an error message: control characters and invalid UTF-8 bytes as \xNN, so the message
// stays one readable line of valid UTF-8.
std::string printable_text(const std::string& s);

}  // namespace mlora
