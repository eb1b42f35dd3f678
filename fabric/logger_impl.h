/* fabric/logger_impl.h: helpers shared by the loggers. Not installed. */
#ifndef WEFT_LOGGER_IMPL_H
#define WEFT_LOGGER_IMPL_H
#include "fabric/fabric_impl.h"

/* mkdir -p; 0 or WF_EIO naming the directory. */
int wf__mkdirs(const char *op, const char *path);
/* A logger with root/name/version_N created (vt->free must call wf__logger_release). */
wf_logger *wf__logger_new(const char *op, const wf_logger_vtable *vt, const char *root, const wf_logger_opts *o);
void wf__logger_release(wf_logger *l);
#endif
