/* dist/trace.h: the timeline for learners (WF_TRACE=path). Not installed.
 *
 * When WF_TRACE is set, each rank records spans on three lanes (host, compute stream,
 * communication stream) and writes them at teardown as a Chrome/Perfetto trace-event JSON
 * file, "<path>.rank<r>.json" (one process per rank: pid = rank, one thread per lane), that
 * chrome://tracing and ui.perfetto.dev open. Time zero is taken just after a barrier
 * (wf__trace_start), so the ranks' timelines line up. With WF_TRACE unset every call costs
 * one branch. Spans are buffered in memory and never block the caller. */
#ifndef WEFT_DIST_TRACE_H
#define WEFT_DIST_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum wf_trace_lane {
    WF_TRACE_HOST = 0,     /* forward, backward, optimizer, waits */
    WF_TRACE_COMPUTE = 1,  /* GPU compute stream (CPU runs: same as host) */
    WF_TRACE_COMM = 2      /* collectives: MPI progress or the NCCL stream */
} wf_trace_lane;

/* Is WF_TRACE set? (read once) */
bool wf__trace_enabled(void);
/* Begin recording for rank/world_size; called right after a barrier, so now is time zero on
 * every rank. Idempotent. 0 or a code (the path cannot be written: WF_EIO naming it). */
int wf__trace_start(int rank, int world_size);
/* Microseconds since time zero (monotonic). */
double wf__trace_now_us(void);
/* A complete span ("ph":"X"). name and cat are copied; args_json is a JSON object body
 * without braces ("\"bucket\":3,\"bytes\":4096") or NULL. */
void wf__trace_span(wf_trace_lane lane, const char *name, const char *cat, double start_us, double dur_us,
                    const char *args_json);
/* Write the file (rank's own) and free the buffer; safe to call twice. 0 or a code. */
int wf__trace_finish(void);

#endif
