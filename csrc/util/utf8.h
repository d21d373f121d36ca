// UTF-8 well-formedness: every name and path crosses the C ABI as UTF-8, and adapter files store UTF-8.
#pragma once

#include <cstddef>

namespace mlora {

// Whether [s, s + n) is well-formed UTF-8 (no overlong forms, surrogates or code points beyond U+10FFFF).
bool valid_utf8(const char* s, size_t n) noexcept;

}  // namespace mlora
