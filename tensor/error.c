/* tensor/error.c: the thread-local error record (code + message owned by weft). */
#include "tensor_impl.h"

#include <stdio.h>
#include <string.h>

static _Thread_local int err_code;
static _Thread_local char err_msg[1024];

int wf_error(void) { return err_code; }
const char *wf_error_message(void) { return err_code ? err_msg : ""; }
void wf_clear_error(void) { err_code = 0; err_msg[0] = 0; }

static _Thread_local unsigned err_seq;   /* counts errors recorded on this thread */

static int set_verror(int code, const char *fmt, va_list ap) {
    err_code = code;
    err_seq++;
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    return code;
}

int wf_set_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_verror(code, fmt, ap);
    va_end(ap);
    return code;
}

int wf__error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_verror(code, fmt, ap);
    va_end(ap);
    return code;
}

unsigned wf__error_seq(void) { return err_seq; }

/* Whether msg names fn as a whole identifier ("wf_sum" is not named by "wf_sum_all: ..."). */
static bool names_fn(const char *msg, const char *fn) {
    size_t n = strlen(fn);
    for (const char *p = strstr(msg, fn); p; p = strstr(p + 1, fn)) {
        char c = p[n];
        bool ident = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ident && (p == msg || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))) return true;
    }
    return false;
}

int wf__error_context(const char *fn, unsigned seq_before) {
    if (!err_code || err_seq == seq_before || names_fn(err_msg, fn)) return err_code;
    char old[sizeof err_msg];
    memcpy(old, err_msg, sizeof old);
    int k = snprintf(err_msg, sizeof err_msg, "%s: ", fn);
    if (k > 0 && (size_t)k < sizeof err_msg) snprintf(err_msg + k, sizeof err_msg - (size_t)k, "%.*s", (int)(sizeof err_msg - (size_t)k - 1), old);
    return err_code;
}

bool wf__any_null(const char *op, int n, ...) {
    va_list ap;
    va_start(ap, n);
    bool any = false;
    for (int i = 0; i < n; i++)
        if (!va_arg(ap, const void *)) any = true;
    va_end(ap);
    /* Propagate the first error: only record one if nothing is recorded yet. */
    if (any && !err_code) wf__error(WF_ENULL, "%s: an input is NULL", op);
    return any;
}

const char *wf_error_name(int code) {
    switch (code) {
    case WF_OK: return "WF_OK";
    case WF_EINVAL: return "WF_EINVAL";
    case WF_ESHAPE: return "WF_ESHAPE";
    case WF_EDTYPE: return "WF_EDTYPE";
    case WF_EDEVICE: return "WF_EDEVICE";
    case WF_EINDEX: return "WF_EINDEX";
    case WF_ENOMEM: return "WF_ENOMEM";
    case WF_EIO: return "WF_EIO";
    case WF_ECORRUPT: return "WF_ECORRUPT";
    case WF_ESTATE: return "WF_ESTATE";
    case WF_EAUTOGRAD: return "WF_EAUTOGRAD";
    case WF_ENOTSUP: return "WF_ENOTSUP";
    case WF_ENULL: return "WF_ENULL";
    case WF_ENOTFOUND: return "WF_ENOTFOUND";
    case WF_EDIST: return "WF_EDIST";
    case WF_ETIMEOUT: return "WF_ETIMEOUT";
    case WF_EDEVICEFAIL: return "WF_EDEVICEFAIL";
    case WF_ENONFINITE: return "WF_ENONFINITE";
    default: return "WF_E?";
    }
}
