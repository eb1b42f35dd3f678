/* tensor/census.c: the memory census (include/weft/tensor.h, "memory census").
 *
 * Every storage made while the census is on is counted in a row keyed by its label (the
 * thread's context prefix and name, the op being dispatched), dtype and device; the storage
 * remembers its row so that its free takes the bytes off again. At each new peak of live
 * bytes on a device, every row of that device copies its live totals into its peak totals:
 * the rows' peak totals then say what was alive at the peak. A copy per new peak costs
 * O(rows), a few hundred, and only while the live bytes climb.
 *
 * The tables come from plain malloc, not weft's allocator: the census must not count itself,
 * nor change the allocator's statistics it is read next to. */
#include "tensor_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

atomic_bool wf__census_on;
const char wf__census_none[] = "";

/* thread's labels: static strings, or the user's pointer (wf_memory_set_label) */
static _Thread_local const char *t_op, *t_prefix, *t_name;

#define SLOTS 17                 /* the CPU, cuda:0 .. cuda:15 */
#define MAX_ROWS 65536u

typedef struct row {
    const char *prefix, *name, *op;      /* identity (pointers); text is the copy */
    char text[WF_MEMORY_LABEL_MAX];
    wf_dtype dtype;
    int slot;
    size_t live_bytes, peak_bytes;
    int64_t live_count, peak_count;
} row;

static struct {
    pthread_mutex_t lock;
    uint32_t gen;                        /* bumped at each start and stop */
    row *rows;
    uint32_t n, cap;
    uint32_t *hash;                      /* open addressing: row index + 1, 0 empty */
    uint32_t hcap;
    size_t live[SLOTS], peak[SLOTS];
} C = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int slot_of(wf_device d) {
    if (d.type == WF_DEV_CPU) return 0;
    if (d.type == WF_DEV_CUDA && d.index >= 0 && d.index < SLOTS - 1) return 1 + d.index;
    return -1;   /* meta holds no memory */
}
static wf_device device_of(int slot) { return slot == 0 ? WF_CPU : WF_CUDA(slot - 1); }

void wf__census_dispatch(const char *op) {
    static const char bw[] = "_backward";
    size_t n = op ? strlen(op) : 0;
    if (!t_prefix && n >= sizeof bw - 1 && !strcmp(op + n - (sizeof bw - 1), bw)) return;
    t_op = op;
}

const char *wf__census_swap_op(const char *op) {
    const char *old = t_op;
    t_op = op;
    return old;
}

void wf__census_swap_context(const char *prefix, const char *name, const char **old_prefix, const char **old_name) {
    if (old_prefix) *old_prefix = t_prefix;
    if (old_name) *old_name = t_name;
    t_prefix = prefix;
    t_name = name;
}

const char *wf_memory_set_label(const char *label) {
    const char *old = t_name;
    t_prefix = NULL;
    t_name = label;
    return old;
}

static void label_text(char *out, const char *prefix, const char *name, const char *op) {
    snprintf(out, WF_MEMORY_LABEL_MAX, "%s%s%s%s", prefix ? prefix : "", name ? name : "",
             (name || prefix) && op ? " / " : "", op ? op : (name || prefix ? "" : "(no op)"));
}

static uint32_t hash_key(const char *p, const char *n, const char *o, wf_dtype dt, int slot) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)(uintptr_t)n * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)(uintptr_t)o * 0x165667B19E3779F9ull;
    h ^= (uint64_t)dt * 31u + (uint64_t)slot * 131u;
    return (uint32_t)(h ^ (h >> 29));
}

static bool same_key(const row *r, const char *p, const char *n, const char *o, wf_dtype dt, int slot,
                     const char *text) {
    return r->prefix == p && r->name == n && r->op == o && r->dtype == dt && r->slot == slot &&
           strcmp(r->text, text) == 0;   /* a reused label buffer with new text is a new row */
}

static bool grow_hash(void) {
    uint32_t ncap = C.hcap ? C.hcap * 2 : 1024;
    uint32_t *h = calloc(ncap, sizeof *h);
    if (!h) return false;
    for (uint32_t i = 0; i < C.n; i++) {
        row *r = &C.rows[i];
        uint32_t j = hash_key(r->prefix, r->name, r->op, r->dtype, r->slot) & (ncap - 1);
        while (h[j]) j = (j + 1) & (ncap - 1);
        h[j] = i + 1;
    }
    free(C.hash);
    C.hash = h;
    C.hcap = ncap;
    return true;
}

/* the row of the calling thread's label for dt on slot; UINT32_MAX when out of memory */
static uint32_t find_row(wf_dtype dt, int slot) {
    char text[WF_MEMORY_LABEL_MAX];
    label_text(text, t_prefix, t_name, t_op);
    if (!C.hcap && !grow_hash()) return UINT32_MAX;
    uint32_t j = hash_key(t_prefix, t_name, t_op, dt, slot) & (C.hcap - 1);
    for (; C.hash[j]; j = (j + 1) & (C.hcap - 1))
        if (same_key(&C.rows[C.hash[j] - 1], t_prefix, t_name, t_op, dt, slot, text)) return C.hash[j] - 1;
    if (C.n >= MAX_ROWS || C.n + 1 >= C.hcap) return UINT32_MAX;   /* the probe above must find a hole */
    if (C.n == C.cap) {
        uint32_t ncap = C.cap ? C.cap * 2 : 256;
        row *r = realloc(C.rows, ncap * sizeof *r);
        if (!r) return UINT32_MAX;
        C.rows = r;
        C.cap = ncap;
    }
    row *r = &C.rows[C.n];
    memset(r, 0, sizeof *r);
    r->prefix = t_prefix;
    r->name = t_name;
    r->op = t_op;
    memcpy(r->text, text, sizeof text);
    r->dtype = dt;
    r->slot = slot;
    C.hash[j] = ++C.n;
    if (C.n * 2 > C.hcap && !grow_hash()) { /* still findable: the table is at most full */ }
    return C.n - 1;
}

static void take_peak(int slot) {
    C.peak[slot] = C.live[slot];
    for (uint32_t i = 0; i < C.n; i++) {
        row *r = &C.rows[i];
        if (r->slot != slot) continue;
        r->peak_bytes = r->live_bytes;
        r->peak_count = r->live_count;
    }
}

void wf__census_alloc(wf_storage *s, wf_dtype dt) {
    int slot = slot_of(s->device);
    if (slot < 0) return;
    pthread_mutex_lock(&C.lock);
    if (atomic_load_explicit(&wf__census_on, memory_order_relaxed)) {
        uint32_t i = find_row(dt, slot);
        if (i != UINT32_MAX) {   /* out of memory for a row: the storage goes uncounted */
            row *r = &C.rows[i];
            r->live_bytes += s->nbytes;
            r->live_count++;
            s->census_group = i + 1;
            s->census_gen = C.gen;
            C.live[slot] += s->nbytes;
            if (C.live[slot] > C.peak[slot]) take_peak(slot);
        }
    }
    pthread_mutex_unlock(&C.lock);
}

void wf__census_free(wf_storage *s) {
    pthread_mutex_lock(&C.lock);
    if (s->census_gen == C.gen && s->census_group && s->census_group <= C.n) {
        row *r = &C.rows[s->census_group - 1];
        r->live_bytes -= s->nbytes;
        r->live_count--;
        C.live[r->slot] -= s->nbytes;
    }
    s->census_group = 0;
    pthread_mutex_unlock(&C.lock);
}

static void forget(void) {
    free(C.rows);
    free(C.hash);
    C.rows = NULL;
    C.hash = NULL;
    C.n = C.cap = C.hcap = 0;
    memset(C.live, 0, sizeof C.live);
    memset(C.peak, 0, sizeof C.peak);
    C.gen++;   /* storages counted by the old recording are not taken off the new one */
}

int wf_memory_record_history(bool enabled) {
    pthread_mutex_lock(&C.lock);
    forget();
    int rc = 0;
    if (enabled && !grow_hash()) rc = WF_ENOMEM;
    atomic_store(&wf__census_on, enabled && !rc);
    pthread_mutex_unlock(&C.lock);
    if (rc) return wf__error(rc, "wf_memory_record_history: out of memory for the census's table");
    return 0;
}

bool wf_memory_is_recording(void) { return atomic_load(&wf__census_on); }

int wf_memory_history_reset_peak(void) {
    pthread_mutex_lock(&C.lock);
    bool on = atomic_load(&wf__census_on);
    if (on)
        for (int s = 0; s < SLOTS; s++) take_peak(s);
    pthread_mutex_unlock(&C.lock);
    if (!on) return wf__error(WF_ESTATE, "wf_memory_history_reset_peak: the memory census is off "
                              "(call wf_memory_record_history(true) first)");
    return 0;
}

static int by_bytes_desc(const void *a, const void *b) {
    const wf_memory_census_row *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return strcmp(x->label, y->label);   /* a stable order for equal sizes */
}

/* All rows of slot with bytes (at the peak or now), sorted; malloc'd, *n rows. Lock held. */
static wf_memory_census_row *collect(int slot, bool at_peak, int *n, size_t *total) {
    *n = 0;
    *total = 0;
    wf_memory_census_row *out = malloc(((size_t)C.n + 1) * sizeof *out);
    if (!out) return NULL;
    for (uint32_t i = 0; i < C.n; i++) {
        const row *r = &C.rows[i];
        size_t b = at_peak ? r->peak_bytes : r->live_bytes;
        int64_t c = at_peak ? r->peak_count : r->live_count;
        if (r->slot != slot || (!b && !c)) continue;
        wf_memory_census_row *o = &out[(*n)++];
        memcpy(o->label, r->text, sizeof o->label);
        o->dtype = r->dtype;
        o->device = device_of(slot);
        o->bytes = b;
        o->count = c;
        *total += b;
    }
    qsort(out, (size_t)*n, sizeof *out, by_bytes_desc);
    return out;
}

static int check_device(const char *fn, wf_device dev) {
    char d[32];
    if (slot_of(dev) < 0)
        return wf__error(WF_EDEVICE, "%s: the census counts the CPU and cuda:0..%d, not %s", fn, SLOTS - 2,
                         wf_device_str(dev, d, sizeof d));
    return 0;
}

int wf_memory_snapshot(wf_device dev, bool at_peak, wf_memory_census_row *rows, int cap, size_t *total_bytes) {
    if (cap < 0) return wf__error(WF_EINVAL, "wf_memory_snapshot: cap is %d (a count of rows, 0 or more)", cap);
    if (!rows && cap > 0) return wf__error(WF_ENULL, "wf_memory_snapshot: rows is NULL but cap is %d", cap);
    int rc = check_device("wf_memory_snapshot", dev);
    if (rc) return rc;
    pthread_mutex_lock(&C.lock);
    if (!atomic_load(&wf__census_on)) {
        pthread_mutex_unlock(&C.lock);
        return wf__error(WF_ESTATE, "wf_memory_snapshot: the memory census is off "
                         "(call wf_memory_record_history(true) first)");
    }
    int n;
    size_t total;
    wf_memory_census_row *all = collect(slot_of(dev), at_peak, &n, &total);
    pthread_mutex_unlock(&C.lock);
    if (!all) return wf__error(WF_ENOMEM, "wf_memory_snapshot: out of memory sorting the census");
    if (n && cap > 0) memcpy(rows, all, (size_t)(n < cap ? n : cap) * sizeof *all);   /* rows may be NULL when cap is 0 */
    if (total_bytes) *total_bytes = total;
    free(all);
    return n;
}

static void fmt_bytes(char *b, size_t n, size_t v) {
    if (v >= (size_t)1 << 30) snprintf(b, n, "%.2f GiB", (double)v / (1u << 30));
    else if (v >= (size_t)1 << 20) snprintf(b, n, "%.2f MiB", (double)v / (1u << 20));
    else if (v >= 1024) snprintf(b, n, "%.2f KiB", (double)v / 1024);
    else snprintf(b, n, "%zu B", v);
}

/* appends to a growing text; false when out of memory */
typedef struct { char *p; size_t len, cap; } text;
static bool put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool put(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return false;
        if (t->p && t->len + (size_t)k < t->cap) { t->len += (size_t)k; return true; }
        size_t ncap = (t->cap ? t->cap * 2 : 4096) + (size_t)k;
        char *q = realloc(t->p, ncap);
        if (!q) return false;
        t->p = q;
        t->cap = ncap;
    }
}

#define SUMMARY_ROWS 40

int wf_memory_summary(wf_device dev, char *buf, size_t n) {
    if (!buf) return wf__error(WF_ENULL, "wf_memory_summary: buf is NULL");
    if (!n) return wf__error(WF_EINVAL, "wf_memory_summary: a buffer of 0 bytes");
    int rc = check_device("wf_memory_summary", dev);
    if (rc) return rc;
    int slot = slot_of(dev);
    pthread_mutex_lock(&C.lock);
    if (!atomic_load(&wf__census_on)) {
        pthread_mutex_unlock(&C.lock);
        return wf__error(WF_ESTATE, "wf_memory_summary: the memory census is off "
                         "(call wf_memory_record_history(true) first)");
    }
    int nr;
    size_t total;
    wf_memory_census_row *rows = collect(slot, true, &nr, &total);
    size_t live = C.live[slot];
    pthread_mutex_unlock(&C.lock);
    if (!rows) return wf__error(WF_ENOMEM, "wf_memory_summary: out of memory sorting the census");
    text t = { 0 };
    char d[32], b1[32], b2[32];
    int64_t count = 0;
    for (int i = 0; i < nr; i++) count += rows[i].count;
    fmt_bytes(b1, sizeof b1, total);
    fmt_bytes(b2, sizeof b2, live);
    bool ok = put(&t, "memory census of %s: at the peak %s (%zu bytes) in %lld storages; live now %s\n",
                  wf_device_str(dev, d, sizeof d), b1, total, (long long)count, b2) &&
              put(&t, "%12s %6s %7s %-9s %s\n", "bytes", "share", "count", "dtype", "label (what allocated it)");
    size_t rest = total;
    int64_t rest_count = count;
    for (int i = 0; ok && i < nr && i < SUMMARY_ROWS; i++) {
        fmt_bytes(b1, sizeof b1, rows[i].bytes);
        ok = put(&t, "%12s %5.1f%% %7lld %-9s %s\n", b1, total ? 100.0 * (double)rows[i].bytes / (double)total : 0.0,
                 (long long)rows[i].count, wf_dtype_name(rows[i].dtype), rows[i].label);
        rest -= rows[i].bytes;
        rest_count -= rows[i].count;
    }
    if (ok && nr > SUMMARY_ROWS) {
        fmt_bytes(b1, sizeof b1, rest);
        ok = put(&t, "%12s %5.1f%% %7lld %-9s (%d more labels)\n", b1, total ? 100.0 * (double)rest / (double)total : 0.0,
                 (long long)rest_count, "", nr - SUMMARY_ROWS);
    }
    free(rows);
    if (!ok) { free(t.p); return wf__error(WF_ENOMEM, "wf_memory_summary: out of memory formatting the table"); }
    if (t.len + 1 > n) {
        size_t need = t.len + 1;
        free(t.p);
        return wf__error(WF_EINVAL, "wf_memory_summary: the buffer holds %zu bytes, the table needs %zu", n, need);
    }
    memcpy(buf, t.p, t.len + 1);
    free(t.p);
    return (int)t.len;
}
