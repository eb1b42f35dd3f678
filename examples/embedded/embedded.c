/* examples/embedded/embedded.c: a 2-layer MLP learns "inside or outside a circle" from 256
 * synthetic points, with every byte weft allocates taken from one fixed arena.
 *
 * Start-up (before wf_set_allocator) allocates nothing; after it, weft's tensors, graph nodes,
 * modules and optimizer state all come from the arena, and the program itself never calls
 * malloc. tests/embedded proves it by counting libc allocator calls during a run. */
#include "embedded.h"

#include "weft/weft.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_POINTS 256
#define BATCH 32
#define HIDDEN 32

/* The arena's memory and state are static: a board has no heap to take them from, and weft
 * may hand a cached block back to the arena after embedded_run returns (at thread exit). */
static _Alignas(ARENA_ALIGN) unsigned char arena_memory[(size_t)EMBEDDED_ARENA_MAX_KB * 1024];
static arena the_arena;

/* the dataset's host copy (wf_from_data copies it into the arena) */
static float points[N_POINTS][2];
static int64_t labels[N_POINTS];

/* points uniform in [-1, 1]^2 from a fixed LCG; label 1 inside the circle of radius 0.8
 * (about half of the square's area, so the classes are balanced) */
static void make_dataset(void) {
    uint32_t s = 12345;
    for (int i = 0; i < N_POINTS; i++) {
        for (int d = 0; d < 2; d++) {
            s = s * 1664525u + 1013904223u;
            points[i][d] = (float)((double)(s >> 8) / (double)(1u << 24) * 2.0 - 1.0);
        }
        float r2 = points[i][0] * points[i][0] + points[i][1] * points[i][1];
        labels[i] = r2 < 0.64f;
    }
}

/* one optimizer step on batch b; the loss goes to *loss. Returns 0 or a weft error code. */
static int train_step(wf_module *model, wf_optimizer *opt, wf_tensor *x, wf_tensor *y, int b,
                      double *loss) {
    int rc;
    wf_scope_begin();   /* this step's temporaries (activations, graph, gradients' inputs) */
    int64_t start = (int64_t)(b % (N_POINTS / BATCH)) * BATCH;
    wf_tensor *logits = wf_module_forward(model, wf_narrow(x, 0, start, BATCH));
    wf_tensor *l = wf_cross_entropy(logits, wf_narrow(y, 0, start, BATCH), NULL);
    rc = l ? wf_optimizer_zero_grad(opt, true) : (wf_error() ? wf_error() : WF_ENOMEM);
    if (!rc) rc = wf_backward(l, NULL, false);
    if (!rc) rc = wf_optimizer_step(opt);
    if (!rc) *loss = wf_item(l);
    wf_scope_end();
    return rc;
}

int embedded_run(const embedded_opts *o, embedded_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!o || o->arena_kb < 1 || o->arena_kb > EMBEDDED_ARENA_MAX_KB || o->steps < 1) {
        snprintf(rep->error, sizeof rep->error,
                 "embedded: arena_kb must be 1..%d (got %zu) and steps >= 1 (got %d)",
                 EMBEDDED_ARENA_MAX_KB, o ? o->arena_kb : 0, o ? o->steps : 0);
        return 1;
    }
    arena_init(&the_arena, arena_memory, o->arena_kb * 1024);
    wf_allocator alloc = { arena_wf_alloc, arena_wf_free, &the_arena };
    if (wf_set_allocator(&alloc)) {
        snprintf(rep->error, sizeof rep->error, "embedded: could not install the arena: %s",
                 wf_error_message());
        return 1;
    }
    make_dataset();
    wf_manual_seed(7);

    /* owned here (no scope is open): freed below whatever happens */
    wf_tensor *x = wf_from_data(points, WF_SHAPE(N_POINTS, 2), WF_F32);
    wf_tensor *y = wf_from_data(labels, WF_SHAPE(N_POINTS), WF_I64);
    wf_module *model = wf_sequential_new(3, wf_linear_new(2, HIDDEN, true), wf_tanh_new(),
                                         wf_linear_new(HIDDEN, 2, true));
    wf_optimizer *opt = NULL;
    int rc = x && y && model ? 0 : (wf_error() ? wf_error() : WF_ENOMEM);
    if (!rc) {
        wf_tensor *params[8];
        int n = wf_module_parameters(model, params, NULL, 8);
        opt = n > 0 ? wf_adam_new(params, n, &(wf_adam_opts){ .lr = 0.05 }) : NULL;
        if (!opt) rc = wf_error() ? wf_error() : WF_ENOMEM;
    }
    double first = 0, last = 0;
    int step = 0;
    for (; !rc && step < o->steps; step++) {
        double loss = 0;
        rc = train_step(model, opt, x, y, step, &loss);
        if (rc) break;
        if (step < 10) first += loss / 10;
        if (step >= o->steps - 10) last += loss / (o->steps < 10 ? o->steps : 10);
        if (o->log_every && (step % o->log_every == 0 || step == o->steps - 1))
            printf("step %4d  loss %.4f  arena in use %zu bytes\n", step, loss, the_arena.in_use);
    }
    rep->steps_done = step;
    rep->first_loss = o->steps < 10 ? first * 10 / o->steps : first;
    rep->last_loss = last;
    if (rc) {
        if (the_arena.n_failed)
            snprintf(rep->error, sizeof rep->error,
                     "embedded: the %zu KiB arena is too small: a %zu-byte allocation did not fit "
                     "(step %d, high-water %zu of %zu bytes); weft: %s",
                     o->arena_kb, the_arena.failed_size, step, the_arena.high_water,
                     the_arena.size, wf_error_message());
        else
            snprintf(rep->error, sizeof rep->error, "embedded: training failed at step %d: %s",
                     step, wf_error_message());
    }

    /* teardown: everything weft made goes back to the arena, then weft's default allocator */
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_tensor_free(x);
    wf_tensor_free(y);
    wf_empty_cache();           /* weft's cached blocks, so that the arena can be checked */
    if (wf_set_allocator(NULL) && !rep->error[0]) {   /* refused while weft's tensors live */
        snprintf(rep->error, sizeof rep->error,
                 "embedded: could not restore weft's allocator: %s", wf_error_message());
        rc = 1;
    }
    wf_clear_error();
    rep->arena = the_arena;
    if (!rc && (the_arena.in_use || the_arena.n_bad_frees)) {
        snprintf(rep->error, sizeof rep->error,
                 "embedded: after teardown %zu bytes are still allocated in the arena and %zu "
                 "frees were not the arena's (a leak or a stray free)",
                 the_arena.in_use, the_arena.n_bad_frees);
        rc = 1;
    }
    return rc ? 1 : 0;
}

int embedded_main(int argc, char **argv) {
    embedded_opts o = { .arena_kb = 128, .steps = 300, .log_every = 50 };
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--arena-kb") && i + 1 < argc) {
            unsigned long long v = strtoull(argv[++i], &end, 10);
            o.arena_kb = *end || v > EMBEDDED_ARENA_MAX_KB ? 0 : (size_t)v;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            o.steps = *end || v > 1000000 ? 0 : (int)v;
        } else if (!strcmp(argv[i], "--quiet")) {
            o.log_every = 0;
        } else {
            fprintf(stderr, "usage: %s [--arena-kb 1..%d] [--steps N] [--quiet]\n", argv[0],
                    EMBEDDED_ARENA_MAX_KB);
            return 2;
        }
    }
    if (o.arena_kb == 0 || o.steps < 1) {
        fprintf(stderr, "embedded: --arena-kb must be 1..%d and --steps at least 1\n",
                EMBEDDED_ARENA_MAX_KB);
        return 2;
    }
    embedded_report rep;
    int rc = embedded_run(&o, &rep);
    if (rc) {
        fprintf(stderr, "%s\n", rep.error);
        return rc;
    }
    printf("loss %.4f -> %.4f over %d steps\n", rep.first_loss, rep.last_loss, rep.steps_done);
    printf("arena: %zu bytes, high-water %zu bytes (%.1f KiB), peak in use %zu bytes, "
           "%zu allocations\n", rep.arena.size, rep.arena.high_water,
           (double)rep.arena.high_water / 1024.0, rep.arena.peak_in_use, rep.arena.n_allocs);
    return 0;
}
