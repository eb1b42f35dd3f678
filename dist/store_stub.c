/* dist/store_stub.c: the TCP rendezvous store in the minimal (embedded) preset, which runs one
 * process (no launcher, no MPI or NCCL: nothing ever meets another rank) and whose library
 * must stay under 1 MB. Every function fails naming itself, never pretends. */
#include "dist/dist_impl.h"
#include "dist/store_proto.h"

#define MINIMAL(fn) wf__error(WF_ENOTSUP, fn ": not in the minimal build of weft (one process: no rendezvous store)")

wf_store *wf_store_new(const char *host, int port, bool is_server, const wf_store_opts *o) {
    (void)host; (void)port; (void)is_server; (void)o;
    MINIMAL("wf_store_new");
    return NULL;
}
int wf_store_port(const wf_store *s) { (void)s; return MINIMAL("wf_store_port"); }
int wf_store_set(wf_store *s, const char *key, const void *value, size_t n) {
    (void)s; (void)key; (void)value; (void)n;
    return MINIMAL("wf_store_set");
}
int wf_store_get(wf_store *s, const char *key, void **value, size_t *n) {
    (void)s; (void)key; (void)value; (void)n;
    return MINIMAL("wf_store_get");
}
int wf_store_wait(wf_store *s, const char *const *keys, int n, double timeout_s) {
    (void)s; (void)keys; (void)n; (void)timeout_s;
    return MINIMAL("wf_store_wait");
}
int wf_store_add(wf_store *s, const char *key, int64_t delta, int64_t *out) {
    (void)s; (void)key; (void)delta; (void)out;
    return MINIMAL("wf_store_add");
}
int wf_store_check(wf_store *s, const char *key) { (void)s; (void)key; return MINIMAL("wf_store_check"); }
int wf_store_wait_ranks(wf_store *s, const char *prefix, int rank, int world_size, double timeout_s) {
    (void)s; (void)prefix; (void)rank; (void)world_size; (void)timeout_s;
    return MINIMAL("wf_store_wait_ranks");
}
void wf_store_free(wf_store *s) { (void)s; }
int wf__store_server_start(const char *host, int port, wf__store_server **out) {
    (void)host; (void)port;
    *out = NULL;
    return MINIMAL("wf__store_server_start");
}
int wf__store_server_port(const wf__store_server *sv) { (void)sv; return MINIMAL("wf__store_server_port"); }
void wf__store_server_stop(wf__store_server *sv) { (void)sv; }
