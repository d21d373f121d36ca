// Includes the header twice on purpose (include guard check): keep clang-format from merging them.
// clang-format off
#include "multilora/multilora.h"
#include "multilora/multilora.h"
// clang-format on
int mlora_header_tu1(void) { return MLORA_ABI_VERSION; }
