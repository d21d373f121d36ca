#include "multilora/multilora.h"
#include "multilora/multilora.h"
int mlora_header_tu1(void) { return MLORA_ABI_VERSION; }
