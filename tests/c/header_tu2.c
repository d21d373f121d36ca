#include "multilora/multilora.h"
int mlora_header_tu2(void) { return MLORA_STATUS_OK; }
