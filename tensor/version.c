/* tensor/version.c: the version compiled into the library (weft/version.h). */
#include "weft/version.h"

const char *wf_version(void) { return WF_VERSION_STRING; }
