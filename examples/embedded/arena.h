/* examples/embedded/arena.h: one fixed memory arena for weft (through wf_set_allocator).
 *
 * Every byte comes from a single buffer the caller provides (on a board: a static array or a
 * linker-script region). Nothing here calls malloc.
 *
 * Alignment: every block starts on an ARENA_ALIGN (64-byte) boundary and is a multiple of 64
 * bytes long, because wf_allocator promises 64-byte aligned memory (whole cache lines, aligned
 * SIMD loads).
 *
 * Policy: first fit over a free list kept in address order, then "bump" from the part of the
 * buffer never handed out yet (the top). A freed block merges with free neighbours, and a free
 * block that reaches the top is given back to it, so a training loop that frees what it made
 * each step keeps reusing the same bytes. There is no per-block header: weft passes the size
 * back on free (like Lua's lua_Alloc), so a 64-byte request costs exactly 64 bytes.
 *
 * Not thread-safe: the minimal build runs weft on one thread. Add a lock (or one arena per
 * thread) before sharing it. */
#ifndef EMBEDDED_ARENA_H
#define EMBEDDED_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64

typedef struct arena_free_block arena_free_block;   /* lives inside the free bytes themselves */

typedef struct arena {
    unsigned char *base;          /* first 64-byte aligned byte of the buffer */
    size_t size;                  /* usable bytes from base (a multiple of ARENA_ALIGN) */
    size_t top;                   /* bytes [top, size) have never been handed out, or came back */
    arena_free_block *free_list;  /* free blocks below top, in address order */
    size_t in_use;                /* bytes handed out and not freed yet */
    size_t peak_in_use;           /* the most bytes in use at once */
    size_t high_water;            /* the highest top so far: the arena size this run needed */
    size_t n_allocs, n_frees;     /* successful calls */
    size_t n_failed;              /* requests that did not fit */
    size_t failed_size;           /* bytes asked by the last request that did not fit */
    size_t n_bad_frees;           /* frees of pointers this arena never handed out (ignored) */
} arena;

/* Use buf[0..size) as the arena. Returns 0, or -1 when the buffer cannot hold one block. */
int arena_init(arena *a, void *buf, size_t size);
/* size bytes, 64-byte aligned, or NULL when no free block or top space is large enough. */
void *arena_alloc(arena *a, size_t size);
/* Give back a block from arena_alloc; size must be the size it was asked with. NULL ok. */
void arena_free(arena *a, void *p, size_t size);

/* Adapters with wf_allocator's signatures (ud is the arena). */
void *arena_wf_alloc(void *ud, size_t size);
void arena_wf_free(void *ud, void *p, size_t size);

#endif
