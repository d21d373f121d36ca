#include "multilora/multilora.h"
#include "multilora/multilora.h"
int mlora_header_tu3() { return MLORA_ABI_VERSION; }
