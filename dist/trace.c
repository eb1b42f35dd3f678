/* dist/trace.c: the WF_TRACE timeline (see dist/trace.h for the API and the file format).
 *
 * Each span is formatted as one JSON object at record time, under a mutex, into one growable
 * buffer (events are short, and the file is then a single write). Formatting goes through a
 * scratch builder first and is appended whole, so an allocation failure drops one event and
 * never leaves half an object in the file. Memory is bounded by an event cap and a byte cap;
 * spans past either are counted and reported in the file's otherData.
 *
 * Numbers are printed from integers (nanoseconds split at the decimal point), so a program
 * that sets a locale with a decimal comma still writes valid JSON. */
#include "dist/trace.h"
#include "dist/dist_impl.h"

#include "io/json.h"
#include "tensor/tensor_impl.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_EVENTS ((size_t)1 << 20)
#define MAX_BYTES ((size_t)512 << 20)   /* a second bound, for spans with long args */

atomic_bool wf__trace_on;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static char *base_path;          /* WF_TRACE or wf__trace_set_path; NULL: off (owned here) */
static double t0_s;              /* monotonic seconds at time zero */
static int tr_rank, tr_world;
static char file_path[4096];     /* "<base>.rank<r>.json" while a trace is open */
static bool open_trace;          /* started and not yet finished */
static char *buf;                /* ",\n"-separated event objects (wf__malloc'd) */
static size_t buf_len, buf_cap, n_events, n_dropped;
static size_t max_events = DEFAULT_MAX_EVENTS;
static wf_sb scratch;            /* one event being formatted (under mu) */
static _Thread_local char next_tag[64];

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *p = wf__malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static void read_env(void) {
    const char *v = getenv("WF_TRACE");
    if (v && *v && !base_path) base_path = dup_str(v);
}

bool wf__trace_enabled(void) {
    pthread_once(&env_once, read_env);
    pthread_mutex_lock(&mu);
    bool on = base_path != NULL;
    pthread_mutex_unlock(&mu);
    return on;
}

int wf__trace_set_path(const char *path) {
    pthread_once(&env_once, read_env);
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (open_trace) {
        rc = wf__error(WF_ESTATE, "wf__trace_set_path: a trace is being recorded (to %s); finish it first", file_path);
    } else {
        char *p = path && *path ? dup_str(path) : NULL;
        if (path && *path && !p) rc = wf__error(WF_ENOMEM, "wf__trace_set_path: out of memory");
        else {
            if (base_path) wf__free(base_path, strlen(base_path) + 1);
            base_path = p;
        }
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int wf__trace_set_limit(size_t n) {
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (open_trace) rc = wf__error(WF_ESTATE, "wf__trace_set_limit: a trace is being recorded; finish it first");
    else max_events = n ? n : DEFAULT_MAX_EVENTS;
    pthread_mutex_unlock(&mu);
    return rc;
}

double wf__trace_now_us(void) { return (wf__dist_now() - t0_s) * 1e6; }

/* ---------------------------------------------------------------- formatting */

/* microseconds with 3 decimals, from integer nanoseconds (locale-independent) */
static void put_us(wf_sb *b, double us) {
    if (!isfinite(us)) us = 0;
    long long ns = llround(us * 1000.0);
    if (ns < 0) { wf__sb_putc(b, '-'); ns = -ns; }
    wf__sb_printf(b, "%lld.%03lld", ns / 1000, ns % 1000);
}

/* a JSON string; bytes of invalid UTF-8 become '?' so the file always parses */
static void put_str(wf_sb *b, const char *s) {
    if (!s) s = "?";
    size_t n = strlen(s);
    if (wf__utf8_valid(s, n)) { wf__sb_json_string(b, s, n); return; }
    char small[128];
    char *t = n < sizeof small ? small : wf__malloc(n + 1);
    if (!t) { wf__sb_json_string(b, "?", 1); return; }
    for (size_t i = 0; i < n; i++) t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    wf__sb_json_string(b, t, n);
    if (t != small) wf__free(t, n + 1);
}

/* append the scratch event to buf whole, or not at all */
static bool commit_scratch(void) {
    if (wf__sb_failed(&scratch)) { wf__sb_free(&scratch); wf__sb_init(&scratch); return false; }
    size_t need = buf_len + 2 + scratch.len;
    if (need > MAX_BYTES) return false;
    if (need > buf_cap) {
        size_t cap = buf_cap ? buf_cap * 2 : 1 << 16;
        while (cap < need) cap *= 2;
        char *p = wf__realloc(buf, buf_cap, cap);
        if (!p) return false;
        buf = p;
        buf_cap = cap;
    }
    if (n_events) { memcpy(buf + buf_len, ",\n", 2); buf_len += 2; }
    memcpy(buf + buf_len, scratch.buf, scratch.len);
    buf_len += scratch.len;
    n_events++;
    return true;
}

static void reset_scratch(void) {
    scratch.len = 0;
    if (scratch.buf) scratch.buf[0] = '\0';
}

void wf__trace_span(wf_trace_lane lane, const char *name, const char *cat, double start_us, double dur_us,
                    const char *args_json) {
    if (!wf__trace_recording()) return;
    if ((int)lane < 0 || (int)lane >= WF_TRACE_LANES) lane = WF_TRACE_HOST;
    if (!(dur_us >= 0)) dur_us = 0;
    pthread_mutex_lock(&mu);
    if (!open_trace) { pthread_mutex_unlock(&mu); return; }
    if (n_events >= max_events) { n_dropped++; pthread_mutex_unlock(&mu); return; }
    reset_scratch();
    wf__sb_puts(&scratch, "{\"name\":");
    put_str(&scratch, name);
    wf__sb_puts(&scratch, ",\"cat\":");
    put_str(&scratch, cat ? cat : "weft");
    wf__sb_printf(&scratch, ",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":", tr_rank, (int)lane);
    put_us(&scratch, start_us);
    wf__sb_puts(&scratch, ",\"dur\":");
    put_us(&scratch, dur_us);
    if (args_json && *args_json) {
        wf__sb_puts(&scratch, ",\"args\":{");
        wf__sb_puts(&scratch, args_json);
        wf__sb_putc(&scratch, '}');
    }
    wf__sb_putc(&scratch, '}');
    if (!commit_scratch()) n_dropped++;
    pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------------- tags */

void wf__trace_tag_next_collective(const char *args_json) {
    if (!wf__trace_recording() || !args_json) { next_tag[0] = '\0'; return; }
    size_t n = strlen(args_json);
    if (n >= sizeof next_tag) { next_tag[0] = '\0'; return; }
    memcpy(next_tag, args_json, n + 1);
}

void wf__trace_take_tag(char *out, size_t n) {
    if (!out || !n) return;
    size_t len = strlen(next_tag);
    if (len >= n) len = 0;
    memcpy(out, next_tag, len);
    out[len] = '\0';
    next_tag[0] = '\0';
}

/* ---------------------------------------------------------------- start / finish */

static const char *const lane_names[WF_TRACE_LANES] = {"host", "compute stream", "communication"};

/* The whole file: metadata, the events, and otherData. Returns 0 or WF_EIO naming path. */
static int write_file(const char *path, int rank, int world, const char *events, size_t len, size_t n, size_t dropped,
                      bool finished) {
    wf_sb h;
    wf__sb_init(&h);
    wf__sb_puts(&h, "{\"traceEvents\":[\n");
    wf__sb_printf(&h, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"rank %d\"}},\n",
                  rank, rank);
    wf__sb_printf(&h, "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}}",
                  rank, rank);
    for (int l = 0; l < WF_TRACE_LANES; l++) {
        wf__sb_printf(&h, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", rank, l);
        put_str(&h, lane_names[l]);
        wf__sb_printf(&h, "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                          "\"args\":{\"sort_index\":%d}}", rank, l, l);
    }
    if (n) wf__sb_puts(&h, ",\n");
    wf_sb t;
    wf__sb_init(&t);
    wf__sb_printf(&t, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"rank\":%d,\"world_size\":%d,"
                      "\"time_zero\":\"just after a barrier of all ranks\",\"units\":\"microseconds\","
                      "\"events\":%zu,\"dropped_events\":%zu,\"complete\":%s}}\n",
                  rank, world, n, dropped, finished ? "true" : "false");
    int rc = 0;
    if (wf__sb_failed(&h) || wf__sb_failed(&t)) {
        rc = wf__error(WF_ENOMEM, "WF_TRACE: out of memory writing %s", path);
    } else {
        FILE *f = fopen(path, "w");
        if (!f) {
            rc = wf__error(WF_EIO, "WF_TRACE: cannot write the trace file %s: %s", path, strerror(errno));
        } else {
            bool ok = fwrite(h.buf, 1, h.len, f) == h.len;
            ok = ok && (len == 0 || fwrite(events, 1, len, f) == len);
            ok = ok && fwrite(t.buf, 1, t.len, f) == t.len;
            int e = ok ? 0 : errno;
            if (fclose(f) != 0 && ok) { ok = false; e = errno; }
            if (!ok) rc = wf__error(WF_EIO, "WF_TRACE: writing the trace file %s failed: %s", path, strerror(e ? e : EIO));
        }
    }
    wf__sb_free(&h);
    wf__sb_free(&t);
    return rc;
}

int wf__trace_start(int rank, int world_size) {
    if (!wf__trace_enabled()) return 0;
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return wf__error(WF_EINVAL, "wf__trace_start: rank %d of world size %d is out of range", rank, world_size);
    pthread_mutex_lock(&mu);
    int rc = 0;
    if (open_trace || !base_path) goto done;   /* idempotent; or turned off meanwhile */
    int k = snprintf(file_path, sizeof file_path, "%s.rank%d.json", base_path, rank);
    if (k < 0 || (size_t)k >= sizeof file_path) {
        rc = wf__error(WF_EIO, "wf__trace_start: WF_TRACE path %s is too long", base_path);
        goto done;
    }
    /* write an empty, valid trace now: a bad path is an error before training, and a run
     * that dies early leaves a file that still opens */
    if ((rc = write_file(file_path, rank, world_size, NULL, 0, 0, 0, false)) != 0) goto done;
    tr_rank = rank;
    tr_world = world_size;
    buf_len = n_events = n_dropped = 0;
    t0_s = wf__dist_now();
    open_trace = true;
    atomic_store_explicit(&wf__trace_on, true, memory_order_release);
done:
    pthread_mutex_unlock(&mu);
    return rc;
}

void wf__trace_start_or_warn(int rank, int world_size) {
    if (wf__trace_start(rank, world_size) != 0) {
        fprintf(stderr, "weft: %s; training goes on without a trace\n", wf_error_message());
        wf_clear_error();
    }
}

int wf__trace_finish(void) {
    pthread_mutex_lock(&mu);
    if (!open_trace) { pthread_mutex_unlock(&mu); return 0; }
    atomic_store_explicit(&wf__trace_on, false, memory_order_release);
    open_trace = false;
    char *events = buf;
    size_t len = buf_len, cap = buf_cap, n = n_events, dropped = n_dropped;
    buf = NULL;
    buf_len = buf_cap = 0;
    wf__sb_free(&scratch);
    wf__sb_init(&scratch);
    char path[sizeof file_path];
    memcpy(path, file_path, sizeof path);
    int rank = tr_rank, world = tr_world;
    pthread_mutex_unlock(&mu);
    int rc = write_file(path, rank, world, events, len, n, dropped, true);
    wf__free(events, cap);
    return rc;
}

void wf__trace_finish_or_warn(void) {
    if (wf__trace_finish() != 0) {
        fprintf(stderr, "weft: %s\n", wf_error_message());
        wf_clear_error();
    }
}
