/* dist/trace.h: the timeline for learners (WF_TRACE=path). Not installed.
 *
 * When WF_TRACE is set, each rank records spans on three lanes (host, compute stream,
 * communication stream) and writes them at teardown as a Chrome/Perfetto trace-event JSON
 * file, "<path>.rank<r>.json" (one process per rank: pid = rank, one thread per lane), that
 * chrome://tracing and ui.perfetto.dev open. Time zero is taken just after a barrier
 * (wf__trace_start), so the ranks' timelines line up. With WF_TRACE unset every call costs
 * one branch. Spans are buffered in memory and never block the caller.
 *
 * The file (see dist/trace.c for the details):
 *   {"traceEvents":[
 *     {"name":"process_name","ph":"M","pid":R,"tid":0,"args":{"name":"rank R"}},
 *     {"name":"thread_name","ph":"M","pid":R,"tid":0|1|2,"args":{"name":"host"|"compute stream"|"communication"}},
 *     ... (sort indices) ...
 *     {"name":"forward","cat":"fabric","ph":"X","pid":R,"tid":0,"ts":446.825,"dur":131.085},
 *     {"name":"all_reduce","cat":"comm","ph":"X","pid":R,"tid":2,"ts":12.345,"dur":6.789,
 *      "args":{"seq":7,"bytes":4096,"dtype":"float32","group":"0","async":true,"bucket":3}},
 *     ...],
 *    "displayTimeUnit":"ms",
 *    "otherData":{"rank":R,"world_size":W,"time_zero":"...","events":N,"dropped_events":D}}
 * ts and dur are microseconds since time zero (3 decimals: nanosecond resolution). Events
 * are in the order they ended (a span is recorded when it ends), not sorted by ts.
 * Collectives (dist/collectives.c) are named by their op ("all_reduce", "broadcast", ...) and
 * span from launch to the moment the host saw them complete; args: seq (the group's
 * collective number), bytes, dtype, group (the group's name), async (a work handle was
 * returned), "error" (a failed one) and what wf__trace_tag_next_collective added. The Fabric
 * records "forward" (outermost module forward), "backward" and "optimizer_step" on the host
 * lane. One trace per process: a second Fabric in the same process rewrites the file. */
#ifndef WEFT_DIST_TRACE_H
#define WEFT_DIST_TRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum wf_trace_lane {
    WF_TRACE_HOST = 0,     /* forward, backward, optimizer, waits */
    WF_TRACE_COMPUTE = 1,  /* GPU compute stream (CPU runs: same as host) */
    WF_TRACE_COMM = 2      /* collectives: MPI progress or the NCCL stream */
} wf_trace_lane;
#define WF_TRACE_LANES 3

/* Is WF_TRACE set (or a path set by wf__trace_set_path)? WF_TRACE is read once. */
bool wf__trace_enabled(void);
/* Begin recording for rank/world_size; called right after a barrier, so now is time zero on
 * every rank. Idempotent while recording (a later call does nothing); after
 * wf__trace_finish a new call begins a new trace. Does nothing (0) when tracing is off.
 * 0 or a code: WF_EINVAL for a bad rank/world_size, WF_EIO naming the path when
 * "<path>.rank<r>.json" cannot be written (checked now, so a bad path is known before
 * training; the file then holds a valid, empty trace until wf__trace_finish). */
int wf__trace_start(int rank, int world_size);
/* wf__trace_start for the strategies: a failure is printed to stderr (naming the path) and
 * cleared, and training goes on without a trace. */
void wf__trace_start_or_warn(int rank, int world_size);
/* Microseconds since time zero (monotonic); before any start, since an arbitrary origin. */
double wf__trace_now_us(void);
/* A complete span ("ph":"X"). name and cat are copied (escaped; NULL reads "?"; bytes that
 * are not UTF-8 become '?'); args_json is a JSON object body without braces
 * ("\"bucket\":3,\"bytes\":4096"), copied verbatim (the caller writes valid JSON), or NULL.
 * Ignored unless recording. Past the cap (wf__trace_set_limit) it is counted as dropped. */
void wf__trace_span(wf_trace_lane lane, const char *name, const char *cat, double start_us, double dur_us,
                    const char *args_json);
/* Write the file (rank's own) and free the buffer; safe to call twice (the second does
 * nothing). 0 or WF_EIO naming the path (the buffer is freed either way). */
int wf__trace_finish(void);
/* wf__trace_finish for teardown paths that cannot fail: a failure is printed to stderr. */
void wf__trace_finish_or_warn(void);

/* ---------------------------------------------------------------- cheap helpers */

/* Recording now? One relaxed load: the off path of every instrumented call. */
extern atomic_bool wf__trace_on;
static inline bool wf__trace_recording(void) { return atomic_load_explicit(&wf__trace_on, memory_order_relaxed); }
/* A span's start: now, or -1 when not recording. Pair with wf__trace_end. */
static inline double wf__trace_begin(void) { return wf__trace_recording() ? wf__trace_now_us() : -1.0; }
/* Record [t0, now) when t0 came from a recording wf__trace_begin. */
static inline void wf__trace_end(wf_trace_lane lane, const char *name, const char *cat, double t0,
                                 const char *args_json) {
    if (t0 >= 0 && wf__trace_recording()) wf__trace_span(lane, name, cat, t0, wf__trace_now_us() - t0, args_json);
}

/* Extra args for the next collective this thread launches (e.g. "\"bucket\":3" from the DDP
 * reducer): copied (at most 63 bytes; longer is dropped), consumed by that collective's span.
 * NULL clears. Cheap no-op when not recording. */
void wf__trace_tag_next_collective(const char *args_json);
/* collectives.c: take (and clear) this thread's tag into buf (empty when none). */
void wf__trace_take_tag(char *buf, size_t n);

/* ---------------------------------------------------------------- for tests */

/* Override WF_TRACE (NULL or "" turns tracing off). WF_ESTATE while recording. */
int wf__trace_set_path(const char *path);
/* The most events kept in memory (default 1M; 0 restores the default). Later spans are
 * counted as dropped and reported in the file's otherData. WF_ESTATE while recording. */
int wf__trace_set_limit(size_t max_events);

#endif
