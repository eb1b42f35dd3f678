/* examples/embedded/embedded.h: train a small MLP inside one fixed arena (see main.c).
 * Split from main() so that tests/embedded can run the same code in-process. */
#ifndef EMBEDDED_EMBEDDED_H
#define EMBEDDED_EMBEDDED_H

#include "arena.h"

#include <stddef.h>

#define EMBEDDED_ARENA_MAX_KB 1024        /* the static buffer; --arena-kb may ask for less */

typedef struct embedded_opts {
    size_t arena_kb;      /* arena size in KiB, 1..EMBEDDED_ARENA_MAX_KB */
    int steps;            /* optimizer steps, >= 1 */
    int log_every;        /* print the loss every this many steps; 0 = never */
} embedded_opts;

typedef struct embedded_report {
    double first_loss, last_loss;     /* mean loss of the first and last 10 steps */
    int steps_done;
    arena arena;                      /* the arena's counters after teardown */
    char error[512];                  /* why the run failed; empty on success */
} embedded_report;

/* Set the arena as weft's allocator, make a synthetic dataset, train, free everything and
 * restore weft's default allocator. Returns 0, or 1 with rep->error set (the arena was too
 * small, or something was left in it). The caller owns rep; nothing else is returned. */
int embedded_run(const embedded_opts *o, embedded_report *rep);

/* The command line: [--arena-kb N] [--steps N] [--quiet]. Returns the exit status. */
int embedded_main(int argc, char **argv);

#endif
