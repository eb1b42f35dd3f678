/* dist/collectives_stub.c: the collectives in the minimal (embedded) preset, which runs one
 * process (no launcher, no MPI or NCCL, no multi-process strategy: nothing ever meets another
 * rank) and whose library must stay under 1 MB. Every function fails naming itself, never
 * pretends (as store_stub.c). */
#include "dist/dist_impl.h"

#define MINIMAL(fn) wf__error(WF_ENOTSUP, fn ": not in the minimal build of weft (one process: no collectives)")

int wf_dist_all_reduce(wf_process_group *pg, wf_tensor *t, wf_dist_reduce_op op, wf_work **work) {
    (void)pg; (void)t; (void)op; if (work) *work = NULL;
    return MINIMAL("wf_dist_all_reduce");
}
int wf_dist_broadcast(wf_process_group *pg, wf_tensor *t, int src, wf_work **work) {
    (void)pg; (void)t; (void)src; if (work) *work = NULL;
    return MINIMAL("wf_dist_broadcast");
}
int wf_dist_reduce(wf_process_group *pg, wf_tensor *t, int dst, wf_dist_reduce_op op, wf_work **work) {
    (void)pg; (void)t; (void)dst; (void)op; if (work) *work = NULL;
    return MINIMAL("wf_dist_reduce");
}
int wf_dist_all_gather(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_work **work) {
    (void)pg; (void)out; (void)in; if (work) *work = NULL;
    return MINIMAL("wf_dist_all_gather");
}
wf_tensor *wf_dist_all_gather_uneven(wf_process_group *pg, wf_tensor *in) {
    (void)pg; (void)in;
    MINIMAL("wf_dist_all_gather_uneven");
    return NULL;
}
int wf_dist_reduce_scatter(wf_process_group *pg, wf_tensor *out, wf_tensor *in, wf_dist_reduce_op op, wf_work **work) {
    (void)pg; (void)out; (void)in; (void)op; if (work) *work = NULL;
    return MINIMAL("wf_dist_reduce_scatter");
}
int wf_dist_barrier(wf_process_group *pg) { (void)pg; return MINIMAL("wf_dist_barrier"); }
int wf_dist_send(wf_process_group *pg, wf_tensor *t, int dst, int tag) {
    (void)pg; (void)t; (void)dst; (void)tag;
    return MINIMAL("wf_dist_send");
}
int wf_dist_recv(wf_process_group *pg, wf_tensor *t, int src, int tag) {
    (void)pg; (void)t; (void)src; (void)tag;
    return MINIMAL("wf_dist_recv");
}
int wf_dist_broadcast_bytes(wf_process_group *pg, void *buf, size_t n, int src) {
    (void)pg; (void)buf; (void)n; (void)src;
    return MINIMAL("wf_dist_broadcast_bytes");
}
int wf_dist_gather_bytes(wf_process_group *pg, const void *buf, size_t n, void *out, int dst) {
    (void)pg; (void)buf; (void)n; (void)out; (void)dst;
    return MINIMAL("wf_dist_gather_bytes");
}
int wf_work_wait(wf_work *w) { (void)w; return MINIMAL("wf_work_wait"); }
int wf_work_test(wf_work *w, bool *done) {
    (void)w; if (done) *done = true;
    return MINIMAL("wf_work_test");
}
void wf_work_free(wf_work *w) { (void)w; }   /* no work is ever made here */
