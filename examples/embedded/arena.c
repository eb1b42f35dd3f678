/* examples/embedded/arena.c: the first-fit arena described in arena.h. */
#include "arena.h"

#include <stdint.h>

struct arena_free_block {
    size_t size;                  /* bytes in this free block, a multiple of ARENA_ALIGN */
    arena_free_block *next;       /* next free block at a higher address, or NULL */
};
_Static_assert(sizeof(arena_free_block) <= ARENA_ALIGN, "a free block's header fits in the smallest block");

/* size rounded up to whole 64-byte units; 0 when that would overflow */
static size_t round_up(size_t size) {
    if (size == 0) size = 1;
    if (size > SIZE_MAX - (ARENA_ALIGN - 1)) return 0;
    return (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

int arena_init(arena *a, void *buf, size_t size) {
    uintptr_t start = (uintptr_t)buf;
    uintptr_t aligned = (start + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    size_t skip = (size_t)(aligned - start);
    *a = (arena){ 0 };
    if (!buf || size < skip + ARENA_ALIGN) return -1;
    a->base = (unsigned char *)aligned;
    a->size = (size - skip) & ~(size_t)(ARENA_ALIGN - 1);
    return 0;
}

void *arena_alloc(arena *a, size_t size) {
    size_t need = round_up(size);
    unsigned char *p = NULL;
    if (need) {
        /* first fit in the free list */
        for (arena_free_block **link = &a->free_list; *link; link = &(*link)->next) {
            arena_free_block *b = *link;
            if (b->size < need) continue;
            if (b->size > need) {          /* split: the rest (>= 64 bytes) stays free */
                arena_free_block *rest = (arena_free_block *)((unsigned char *)b + need);
                rest->size = b->size - need;
                rest->next = b->next;
                *link = rest;
            } else {
                *link = b->next;
            }
            p = (unsigned char *)b;
            break;
        }
        /* else bump from the top */
        if (!p && a->size - a->top >= need) {
            p = a->base + a->top;
            a->top += need;
            if (a->top > a->high_water) a->high_water = a->top;
        }
    }
    if (!p) {
        a->n_failed++;
        a->failed_size = size;
        return NULL;
    }
    a->in_use += need;
    if (a->in_use > a->peak_in_use) a->peak_in_use = a->in_use;
    a->n_allocs++;
    return p;
}

void arena_free(arena *a, void *ptr, size_t size) {
    unsigned char *p = ptr;
    size_t len = round_up(size);
    if (!p) return;
    if (p < a->base || p >= a->base + a->top || (size_t)(p - a->base) % ARENA_ALIGN ||
        len == 0 || len > a->top - (size_t)(p - a->base) || len > a->in_use) {
        a->n_bad_frees++;   /* not ours: touching it could corrupt the list */
        return;
    }
    a->in_use -= len;
    a->n_frees++;

    /* find the neighbours: prev is the last free block below p, *link the first above it */
    arena_free_block **prev_link = NULL, *prev = NULL, **link = &a->free_list;
    while (*link && (unsigned char *)*link < p) {
        prev_link = link;
        prev = *link;
        link = &(*link)->next;
    }
    arena_free_block *b = (arena_free_block *)p;
    b->size = len;
    b->next = *link;
    *link = b;
    arena_free_block **b_link = link;
    if (b->next && p + b->size == (unsigned char *)b->next) {       /* merge with the next */
        b->size += b->next->size;
        b->next = b->next->next;
    }
    if (prev && (unsigned char *)prev + prev->size == p) {          /* merge into the previous */
        prev->size += b->size;
        prev->next = b->next;
        b = prev;
        b_link = prev_link;
    }
    /* a free block that ends at the top is the last one: hand its bytes back to the top */
    if ((unsigned char *)b + b->size == a->base + a->top) {
        a->top -= b->size;
        *b_link = NULL;
    }
}

void *arena_wf_alloc(void *ud, size_t size) { return arena_alloc(ud, size); }
void arena_wf_free(void *ud, void *p, size_t size) { arena_free(ud, p, size); }
