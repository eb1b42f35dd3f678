/* tensor/env_flag.h: the A/B switches read from the environment (WEFT_...=1, bench/NOTES.md),
 * one definition for the C and the CUDA files. */
#ifndef WEFT_ENV_FLAG_H
#define WEFT_ENV_FLAG_H

#include <stdbool.h>
#include <stdlib.h>

/* true when the variable name is set to a value starting with '1'. *cache starts at -1 and
 * keeps the first reading, so each switch reads the environment once per process. */
static inline bool wf__env_flag(const char *name, int *cache) {
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = e && *e == '1';
    }
    return *cache == 1;
}

/* static bool fn(void): the switch name, read once (the A/B switches' one form) */
#define WF__ENV_SWITCH(fn, name)                                                                  \
    static bool fn(void) {                                                                        \
        static int fn##_cache = -1;                                                               \
        return wf__env_flag(name, &fn##_cache);                                                   \
    }

#endif
