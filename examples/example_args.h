/* examples/example_args.h: strict parsing of the examples' numeric flags.
 *
 * atoi("x") is 0 and atof("1e") is 1: a typo would train with a value nobody asked for.
 * These accept only a whole number (optional sign, no spaces, no trailing characters) that
 * fits [lo, hi], or a finite decimal; the caller prints its usage and exits 2 otherwise. */
#ifndef WEFT_EXAMPLE_ARGS_H
#define WEFT_EXAMPLE_ARGS_H

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static inline bool ex_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = (int64_t)v;
    return true;
}

static inline bool ex_parse_int(const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (!ex_parse_i64(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

/* A seed: a non-negative whole number up to 2^64 - 1 (strtoull would take "-1"). */
static inline bool ex_parse_u64(const char *s, uint64_t *out) {
    if (!s || !isdigit((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = (uint64_t)v;
    return true;
}

/* A finite number (strtod's syntax) that is > 0 when positive is set. */
static inline bool ex_parse_double(const char *s, bool positive, double *out) {
    if (!s || !*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || (positive && !(v > 0))) return false;
    *out = v;
    return true;
}

#endif
