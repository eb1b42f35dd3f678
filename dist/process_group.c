/* dist/process_group.c: process groups (torch.distributed's ProcessGroup): creating the world
 * group over a backend, subgroups, accessors, the history of collectives, and the timeout /
 * broken-group machinery the front-ends in collectives.c share.
 *
 * A group is broken by its first fatal error (a timeout, a failed peer): from then on every
 * call fails at once with that error, so a rank never waits twice on peers that are gone. */
#include "dist/dist_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef WEFT_HAVE_MPI
#include <mpi.h>
#endif

/* ---------------------------------------------------------------- small helpers */

double wf__dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double wf__dist_default_timeout(void) {
    const char *s = getenv("WF_DIST_TIMEOUT");
    if (s && *s) {
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno == 0 && end != s && *end == '\0' && v > 0 && isfinite(v)) return v;
        /* A bad value must not silently become "no timeout": keep the default and say so. */
        fprintf(stderr, "weft: WF_DIST_TIMEOUT=\"%s\" is not a positive number of seconds; using 1800\n", s);
    }
    return 1800.0;
}

const char *wf__coll_name(wf__coll_kind k) {
    static const char *const names[WF_COLL_COUNT] = {
        "all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter", "barrier",
        "send", "recv", "gather"};
    return (k >= 0 && k < WF_COLL_COUNT) ? names[k] : "unknown";
}

/* What only the collectives (collectives.c, backend_mpi.c) use: waiting, their history and
 * their timeouts. The minimal preset has neither (collectives_stub.c refuses every one), and
 * its library has a size budget. */
#ifndef WEFT_MINIMAL
void wf__dist_backoff(unsigned *iter) {
    unsigned i = *iter;
    if (i < UINT_MAX) *iter = i + 1;
    if (i < 1000) return;   /* the common case: done within microseconds */
    /* MPI's non-blocking collectives advance only inside MPI_Test (the shared-memory copies
     * too), so sleeping between tests would stall a large all_reduce: keep testing, but
     * yield the core, so that with more ranks than cores the rank we wait for still runs. */
    if (i < 1000 + 300000) { sched_yield(); return; }
    /* Waiting this long (a fraction of a second or more), a peer is late, not slow: sleep,
     * growing to 1 ms, so a rank left waiting does not burn a core until its timeout. */
    unsigned k = i - 301000;
    long us = k < 20 ? 50L * (long)(k + 1) : 1000L;
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- history */

void wf__pg_history_start(wf_process_group *pg, const wf_work *w, wf_dtype dtype) {
    wf__history_entry *e = &pg->history[w->seq % WF_DIST_HISTORY];
    e->seq = w->seq;
    e->kind = w->kind;
    e->dtype = dtype;
    e->bytes = w->bytes;
    e->state = 0;
}

void wf__pg_history_end(wf_process_group *pg, uint64_t seq, int state) {
    wf__history_entry *e = &pg->history[seq % WF_DIST_HISTORY];
    if (e->seq == seq) e->state = state;
}

#endif   /* !WEFT_MINIMAL: the backoff and the history's entries */

size_t wf_process_group_history(const wf_process_group *pg, char *buf, size_t n) {
    if (!buf || n == 0) return 0;
    buf[0] = '\0';
    if (!pg) return 0;
    size_t len = 0;
    uint64_t first = pg->seq >= WF_DIST_HISTORY ? pg->seq - WF_DIST_HISTORY + 1 : 1;
    for (uint64_t s = first; s <= pg->seq && s > 0; s++) {
        const wf__history_entry *e = &pg->history[s % WF_DIST_HISTORY];
        if (e->seq != s) continue;
        char state[48];
        if (e->state == 0) snprintf(state, sizeof state, "started");
        else if (e->state > 0) snprintf(state, sizeof state, "done");
        else snprintf(state, sizeof state, "failed (%s)", wf_error_name(e->state));
        int k = snprintf(buf + len, n - len, "#%llu %s %s %zu B %s\n", (unsigned long long)e->seq,
                         wf__coll_name(e->kind), e->kind == WF_COLL_BARRIER ? "-" : wf_dtype_name(e->dtype),
                         e->bytes, state);
        if (k < 0) break;
        if ((size_t)k >= n - len) { len = n - 1; break; }   /* truncated */
        len += (size_t)k;
    }
    return len;
}

/* ---------------------------------------------------------------- broken groups, timeouts */

int wf__pg_check_broken(wf_process_group *pg, const char *fn) {
    if (!pg->broken) return 0;
    return wf__error(pg->broken, "%s: the process group is broken by an earlier error: %s", fn, pg->broken_msg);
}

int wf__pg_break(wf_process_group *pg, int code, const char *msg) {
    if (!pg->broken) {
        pg->broken = code;
        snprintf(pg->broken_msg, sizeof pg->broken_msg, "%s", msg ? msg : wf_error_name(code));
    }
    return code;
}

#ifndef WEFT_MINIMAL   /* the collectives' timeouts (see wf__dist_backoff) */
/* Which ranks did not reach collective seq? Through the store: every timed-out rank posts
 * its seq, then waits a short bounded time for the others'; a rank whose key is missing or
 * lower never joined. Writes the list (or why it is unknown) into out. */
static void pg_absent_ranks(wf_process_group *pg, uint64_t seq, char *out, size_t n) {
    if (!pg->store) { snprintf(out, n, "unknown (no store)"); return; }
    enum { KEY = 96 };
    char *keys = wf__malloc((size_t)pg->size * KEY);
    const char **kp = wf__malloc(sizeof(char *) * (size_t)pg->size);
    if (!keys || !kp) {
        snprintf(out, n, "unknown (out of memory)");
        goto done;
    }
    for (int r = 0; r < pg->size; r++) {
        snprintf(keys + (size_t)r * KEY, KEY, "wf/pg%s/seq/%d", pg->name, r);
        kp[r] = keys + (size_t)r * KEY;
    }
    char val[24];
    snprintf(val, sizeof val, "%llu", (unsigned long long)seq);
    if (wf_store_set(pg->store, kp[pg->rank], val, strlen(val)) != 0) {
        snprintf(out, n, "unknown (the store failed: %.200s)", wf_error_message());
        goto done;
    }
    /* the others time out at about the same moment; a short bounded wait lets them post */
    (void)wf_store_wait(pg->store, kp, pg->size, fmin(2.0, pg->timeout_s));
    size_t len = 0;
    int absent = 0;
    out[0] = '\0';
    for (int r = 0; r < pg->size && len < n; r++) {
        if (r == pg->rank) continue;
        int has = wf_store_check(pg->store, kp[r]);
        if (has < 0) {
            snprintf(out, n, "unknown (the store failed: %.200s)", wf_error_message());
            goto done;
        }
        unsigned long long theirs = 0;
        if (has == 1) {
            void *v = NULL;
            size_t vn = 0;
            if (wf_store_get(pg->store, kp[r], &v, &vn) == 0 && v) {
                char tmp[24] = {0};
                memcpy(tmp, v, vn < sizeof tmp - 1 ? vn : sizeof tmp - 1);
                theirs = strtoull(tmp, NULL, 10);
            }
            free(v);
        }
        if (has == 1 && theirs >= seq) continue;   /* it reached this collective (or a later one) */
        int k = pg->parent && pg->world_ranks
                    ? snprintf(out + len, n - len, "%s%d (world rank %d)", absent ? ", " : "", r, pg->world_ranks[r])
                    : snprintf(out + len, n - len, "%s%d", absent ? ", " : "", r);
        if (k > 0) len += (size_t)k;
        absent++;
    }
    if (!absent) snprintf(out, n, "none (every rank reached it: the collective itself stalled)");
done:
    wf__free(keys, keys ? (size_t)pg->size * KEY : 0);
    wf__free(kp, kp ? sizeof(char *) * (size_t)pg->size : 0);
}

int wf__pg_timeout(wf_process_group *pg, const char *fn, wf__coll_kind kind, uint64_t seq, size_t bytes) {
    char absent[256];
    pg_absent_ranks(pg, seq, absent, sizeof absent);
    char msg[512];
    snprintf(msg, sizeof msg,
             "%s: timed out after %g s in collective #%llu %s (%zu B) on process group %s "
             "(rank %d of %d); ranks that did not join: %s",
             fn, pg->timeout_s, (unsigned long long)seq, wf__coll_name(kind), bytes, pg->name,
             pg->rank, pg->size, absent);
    wf__pg_history_end(pg, seq, WF_ETIMEOUT);
    /* Every rank prints what it last did: side by side, the ranks' lists show who diverged. */
    char hist[WF_DIST_HISTORY * 96];
    wf_process_group_history(pg, hist, sizeof hist);
    int world = pg->world_ranks && pg->rank >= 0 ? pg->world_ranks[pg->rank] : pg->rank;
    fprintf(stderr, "weft dist: rank %d (world rank %d): %s\nweft dist: rank %d: last collectives on group %s:\n%s",
            pg->rank, world, msg, pg->rank, pg->name, hist);
    fflush(stderr);
    wf__pg_break(pg, WF_ETIMEOUT, msg);
    return wf__error(WF_ETIMEOUT, "%s", msg);
}
#endif   /* !WEFT_MINIMAL */

/* ---------------------------------------------------------------- creation */

static bool env_flag(const char *name) {
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0 && strcmp(s, "false") != 0;
}

static const wf__pg_backend *pick_backend(const char *name, const wf_cluster_info *ci, wf_device dev) {
    if (strcmp(name, "local") == 0) return &wf__backend_local;
    if (strcmp(name, "mpi") == 0) {
#ifdef WEFT_HAVE_MPI
        return &wf__backend_mpi;
#else
        wf__error(WF_ENOTSUP, "wf_dist_init: backend \"mpi\" is not in this build (configure with -Dmpi=enabled "
                  "and Open MPI installed)");
        return NULL;
#endif
    }
    if (strcmp(name, "nccl") == 0) {
#ifdef WEFT_HAVE_NCCL
        return &wf__backend_nccl;
#else
        wf__error(WF_ENOTSUP, "wf_dist_init: backend \"nccl\" is not in this build (configure with -Dcuda=enabled "
                  "-Dnccl=enabled)");
        return NULL;
#endif
    }
    if (strcmp(name, "auto") == 0) {
#ifdef WEFT_HAVE_NCCL
        if (dev.type == WF_DEV_CUDA) return &wf__backend_nccl;
#endif
        (void)dev;
        if (ci->world_size <= 1) return &wf__backend_local;
#ifdef WEFT_HAVE_MPI
        return &wf__backend_mpi;
#else
        wf__error(WF_ENOTSUP, "wf_dist_init: world size %d needs the mpi backend, which is not in this build "
                  "(configure with -Dmpi=enabled)", ci->world_size);
        return NULL;
#endif
    }
    wf__error(WF_EINVAL, "wf_dist_init: unknown backend \"%s\" (expected \"auto\", \"mpi\", \"nccl\" or \"local\")", name);
    return NULL;
}

/* A store for naming absent ranks on timeouts (and for WF_DIST_DEBUG on backends without a
 * side channel), made when MPI runs the world and none was given: rank 0 serves on every
 * interface and sends host:port to the others with MPI_Bcast. A store that cannot be made is
 * not fatal (the group works, timeouts then say "unknown"), but all ranks agree on having one
 * so that none waits for keys that will never come. */
static int pg_make_store(wf_process_group *pg) {
#ifdef WEFT_HAVE_MPI
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (pg->store || pg->size < 2 || !inited || fin) return 0;
    int wsize = 0, wrank = -1;
    MPI_Comm_size(MPI_COMM_WORLD, &wsize);
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    if (wsize != pg->size || wrank != pg->rank) return 0;   /* MPI's world is not this group's */
    struct { char host[256]; int32_t port; } where;
    memset(&where, 0, sizeof where);
    wf_store_opts so = {.timeout_s = fmin(pg->timeout_s, 20.0), .world_size = pg->size};   /* bounds a failed connect at init */
    wf_store *s = NULL;
    char why[300] = "";
    if (pg->rank == 0) {
        s = wf_store_new("0.0.0.0", 0, true, &so);
        if (s) {
            where.port = wf_store_port(s);
            gethostname(where.host, sizeof where.host - 1);
        } else {
            snprintf(why, sizeof why, "%s", wf_error_message());
        }
    }
    if (MPI_Bcast(&where, (int)sizeof where, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) where.port = 0;
    if (pg->rank != 0 && where.port > 0) {
        char me[256] = {0};
        gethostname(me, sizeof me - 1);
        s = wf_store_new(strcmp(me, where.host) == 0 ? "127.0.0.1" : where.host, where.port, false, &so);
        if (!s) snprintf(why, sizeof why, "%s", wf_error_message());
    }
    int ok = s != NULL;
    if (MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS) ok = 0;
    if (!ok) {
        if (why[0]) fprintf(stderr, "weft: rank %d: no store for process group %s (timeouts will not name absent "
                            "ranks): %s\n", pg->rank, pg->name, why);
        wf_store_free(s);
        return 0;
    }
    pg->store = s;
    pg->owns_store = true;
#else
    (void)pg;
#endif
    return 0;
}

wf_process_group *wf_dist_init(const wf_dist_options *o_in) {
    wf_dist_options o = o_in ? *o_in : (wf_dist_options){0};
    if (o.backend && !*o.backend) {
        wf__error(WF_EINVAL, "wf_dist_init: backend \"\" is empty (NULL or \"auto\" picks one; \"mpi\", \"nccl\", "
                  "\"local\")");
        return NULL;
    }
    const char *bname = o.backend ? o.backend : "auto";
    if (!(o.timeout_s >= 0) || !isfinite(o.timeout_s)) {
        wf__error(WF_EINVAL, "wf_dist_init: timeout_s = %g must be >= 0 (0: WF_DIST_TIMEOUT or 1800 s)", o.timeout_s);
        return NULL;
    }
#ifdef WEFT_HAVE_MPI
    bool mpi_early = false;
    /* Under mpirun, MPI comes up first: the Open MPI environment finds node ranks by gathering
     * host names over MPI_COMM_WORLD, which needs MPI running. */
    if (getenv("OMPI_COMM_WORLD_SIZE") && strcmp(bname, "local") != 0) {
        if (wf__mpi_acquire() != 0) return NULL;
        mpi_early = true;
    }
#endif
    wf_process_group *pg = NULL;
    wf_cluster_info ci;
    if (o.cluster) ci = *o.cluster;
    else if (wf_cluster_detect(&ci) != 0) goto fail;   /* after MPI is up: node ranks from host names */
    if (ci.world_size < 1 || ci.global_rank < 0 || ci.global_rank >= ci.world_size) {
        wf__error(WF_EINVAL, "wf_dist_init: the cluster says rank %d of world size %d", ci.global_rank, ci.world_size);
        goto fail;
    }
    const wf__pg_backend *be = pick_backend(bname, &ci, o.device);
    if (!be) goto fail;

    pg = wf__calloc(1, sizeof *pg);
    if (!pg) { wf__error(WF_ENOMEM, "wf_dist_init: out of memory"); goto fail; }
    pg->be = be;
    pg->timeout_s = o.timeout_s > 0 ? o.timeout_s : wf__dist_default_timeout();
    pg->debug = env_flag("WF_DIST_DEBUG");
    pg->store = o.store;   /* borrowed */
    /* world groups are numbered in creation order, which every rank shares */
    static int worlds_made;
    snprintf(pg->name, sizeof pg->name, "%d", worlds_made++);
    o.timeout_s = pg->timeout_s;
    if (be->init(pg, &ci, &o) != 0) {
        wf__free(pg, sizeof *pg);
        pg = NULL;
        goto fail;
    }
    pg->world_ranks = wf__malloc(sizeof(int) * (size_t)(pg->size > 0 ? pg->size : 1));
    if (!pg->world_ranks) { wf__error(WF_ENOMEM, "wf_dist_init: out of memory"); goto fail_free; }
    for (int i = 0; i < pg->size; i++) pg->world_ranks[i] = i;
    if (pg_make_store(pg) != 0) goto fail_free;
#ifdef WEFT_HAVE_MPI
    /* The mpi backend holds its own reference. Other backends keep this one while the group
     * lives: finalizing here would forbid MPI for the rest of the process (it cannot restart). */
    if (mpi_early && be == &wf__backend_mpi) wf__mpi_release();
    else if (mpi_early) pg->holds_mpi = true;
#endif
    return pg;
fail_free:
    wf_process_group_free(pg);
    pg = NULL;
fail:
#ifdef WEFT_HAVE_MPI
    if (mpi_early) wf__mpi_release();
#endif
    return NULL;
}

wf_process_group *wf_process_group_new_subgroup(wf_process_group *pg, const int *ranks, int n) {
    static const char *fn = "wf_process_group_new_subgroup";
    if (!pg || !ranks) { wf__error(WF_ENULL, "%s: NULL %s", fn, pg ? "ranks" : "process group"); return NULL; }
    if (wf__pg_check_broken(pg, fn)) return NULL;
    if (pg->rank < 0) { wf__error(WF_EINVAL, "%s: this process is not a member of group %s", fn, pg->name); return NULL; }
    if (n < 1 || n > pg->size) {
        wf__error(WF_EINVAL, "%s: %d ranks for a subgroup of a group of size %d", fn, n, pg->size);
        return NULL;
    }
    if (!pg->be->subgroup) { wf__error(WF_ENOTSUP, "%s: the %s backend has no subgroups", fn, pg->be->name); return NULL; }
    /* ranks are world ranks; the backend wants ranks of pg */
    int *local = wf__malloc(sizeof(int) * (size_t)n);
    wf_process_group *child = wf__calloc(1, sizeof *child);
    int *world = wf__malloc(sizeof(int) * (size_t)n);
    if (!local || !child || !world) { wf__error(WF_ENOMEM, "%s: out of memory", fn); goto fail; }
    for (int i = 0; i < n; i++) {
        int r = wf_process_group_rank_of(pg, ranks[i]);
        if (r < 0) {
            wf__error(WF_EINVAL, "%s: ranks[%d] = %d is not a world rank of group %s (size %d)", fn, i, ranks[i],
                      pg->name, pg->size);
            goto fail;
        }
        for (int j = 0; j < i; j++)
            if (ranks[j] == ranks[i]) {
                wf__error(WF_EINVAL, "%s: rank %d is listed twice (ranks[%d] and ranks[%d])", fn, ranks[i], j, i);
                goto fail;
            }
        local[i] = r;
        world[i] = ranks[i];
    }
    child->be = pg->be;
    child->parent = pg;
    child->timeout_s = pg->timeout_s;
    child->debug = pg->debug;
    child->store = pg->store;   /* borrowed from the world group; keys carry the child's name */
    snprintf(child->name, sizeof child->name, "%.26s.%d", pg->name, ++pg->n_children_made);
    if (pg->be->subgroup(pg, local, n, child) != 0) {
        /* a failed rendezvous breaks the parent: its peers may be left mid-collective */
        if (wf_error() == WF_ETIMEOUT || wf_error() == WF_EDIST) wf__pg_break(pg, wf_error(), wf_error_message());
        goto fail;
    }
    child->world_ranks = world;
    child->next_sibling = pg->first_child;
    pg->first_child = child;
    pg->n_subgroups++;
    wf__free(local, sizeof(int) * (size_t)n);
    return child;
fail:
    wf__free(local, local ? sizeof(int) * (size_t)n : 0);
    wf__free(world, world ? sizeof(int) * (size_t)n : 0);
    wf__free(child, child ? sizeof *child : 0);
    return NULL;
}

/* subgroups borrow their world's store: drop it from a subtree whose world goes first */
static void forget_store(wf_process_group *g, const wf_store *store) {
    if (g->store == store && !g->owns_store) g->store = NULL;
    for (wf_process_group *c = g->first_child; c; c = c->next_sibling) forget_store(c, store);
}

void wf_process_group_free(wf_process_group *pg) {
    if (!pg) return;
    if (pg->n_subgroups > 0)
        fprintf(stderr, "weft: wf_process_group_free: group %s freed before its %d subgroup(s); they stay usable "
                "but should be freed first\n", pg->name, pg->n_subgroups);
    for (wf_process_group *c = pg->first_child; c; c = c->next_sibling) {
        c->parent = NULL;
        if (pg->owns_store) forget_store(c, pg->store);
    }
    if (pg->parent) {
        wf_process_group **pp = &pg->parent->first_child;
        while (*pp && *pp != pg) pp = &(*pp)->next_sibling;
        if (*pp) *pp = pg->next_sibling;
        pg->parent->n_subgroups--;
    }
    if (pg->be && pg->be->free) pg->be->free(pg);
    if (pg->owns_store) wf_store_free(pg->store);
    wf__free(pg->world_ranks, sizeof(int) * (size_t)(pg->size > 0 ? pg->size : 1));
#ifdef WEFT_HAVE_MPI
    if (pg->holds_mpi) wf__mpi_release();
#endif
    wf__free(pg, sizeof *pg);
}

/* ---------------------------------------------------------------- accessors */

int wf_process_group_rank(const wf_process_group *pg) {
    return pg ? pg->rank : (wf__error(WF_ENULL, "wf_process_group_rank: NULL process group"), -1);
}
int wf_process_group_size(const wf_process_group *pg) {
    return pg ? pg->size : (wf__error(WF_ENULL, "wf_process_group_size: NULL process group"), 0);
}
const char *wf_process_group_backend(const wf_process_group *pg) { return pg && pg->be ? pg->be->name : NULL; }
double wf_process_group_timeout(const wf_process_group *pg) { return pg ? pg->timeout_s : 0; }

int wf_process_group_rank_of(const wf_process_group *pg, int world_rank) {
    if (!pg) return wf__error(WF_ENULL, "wf_process_group_rank_of: NULL process group"), -1;
    for (int i = 0; pg->world_ranks && i < pg->size; i++)
        if (pg->world_ranks[i] == world_rank) return i;
    wf__error(WF_EINVAL, "wf_process_group_rank_of: world rank %d is not in group %s (size %d)", world_rank, pg->name,
              pg->size);
    return -1;
}
