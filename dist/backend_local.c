/* dist/backend_local.c: the "local" backend, a world of one process. Every collective is
 * the identity (all_reduce with avg divides by 1), so only the ops with a separate output
 * copy anything; they complete at once. Host memory, and CUDA memory in CUDA builds. */
#include "dist/dist_impl.h"

#include <string.h>

#ifdef WEFT_HAVE_CUDA
#include "tensor/cuda/cuda_api.h"
#endif

static int local_init(wf_process_group *pg, const wf_cluster_info *ci, const wf_dist_options *o) {
    (void)o;
    if (ci->world_size != 1)
        return wf__error(WF_EINVAL, "wf_dist_init: the local backend is a world of one, but the environment (%s) says "
                         "world size %d; use \"mpi\" or \"nccl\"", ci->env_name, ci->world_size);
    pg->rank = 0;
    pg->size = 1;
    pg->impl = NULL;
    return 0;
}

static bool local_supports(const wf_process_group *pg, wf_device dev) {
    (void)pg;
    if (dev.type == WF_DEV_CPU) return true;
#ifdef WEFT_HAVE_CUDA
    if (dev.type == WF_DEV_CUDA) return true;
#endif
    return false;
}

static int copy_bytes(void *dst, const void *src, size_t n, wf_device dev) {
    if (dst == src || n == 0) return 0;
#ifdef WEFT_HAVE_CUDA
    if (dev.type == WF_DEV_CUDA) {
        wf_cuda_view y = {.data = dst, .ndim = 1, .shape = {(int64_t)n}, .stride = {1}, .dtype = WF_U8};
        wf_cuda_view x = {.data = (void *)src, .ndim = 1, .shape = {(int64_t)n}, .stride = {1}, .dtype = WF_U8};
        return wf__cuda_copy(&y, &x, dev.index, dev.index);
    }
#endif
    (void)dev;
    if (dst != src) memcpy(dst, src, n);   /* in place (out is in's slice): nothing to move */
    return 0;
}

static int local_start(wf_process_group *pg, const wf__coll *c, wf_work *w) {
    (void)pg;
    w->test = NULL;   /* done at once */
    size_t n = (size_t)c->count * wf_dtype_size(c->dtype);
    switch (c->kind) {
    case WF_COLL_ALL_GATHER:
    case WF_COLL_REDUCE_SCATTER:   /* one rank: the reduction of one slice is the slice */
    case WF_COLL_GATHER:
        return copy_bytes(c->recv, c->send, n, c->device);
    case WF_COLL_SEND:
    case WF_COLL_RECV:   /* the front-end refuses a peer equal to the own rank */
        return wf__error(WF_EINVAL, "local backend: no peer for %s", wf__coll_name(c->kind));
    default:
        return 0;
    }
}

static int local_subgroup(wf_process_group *parent, const int *ranks, int n, wf_process_group *child) {
    (void)parent;
    (void)ranks;
    child->rank = 0;
    child->size = n;
    child->impl = NULL;
    return 0;
}

static void local_free(wf_process_group *pg) { (void)pg; }

static int local_exchange(wf_process_group *pg, const int64_t *mine, int n, int64_t *all, double deadline) {
    (void)pg;
    (void)deadline;
    memcpy(all, mine, sizeof(int64_t) * (size_t)n);
    return 0;
}

const wf__pg_backend wf__backend_local = {
    .name = "local",
    .init = local_init,
    .supports = local_supports,
    .start = local_start,
    .subgroup = local_subgroup,
    .free = local_free,
    .exchange = local_exchange,
};
