/* tensor/meta_init.c: the notes of tensors built on the meta device, and their rows
 * materialized on demand (tensor/meta_init.h). Not in the minimal preset, which has no
 * sharded strategy to defer initialization for (tensor/meta_init.h has constants there). */
#include "tensor/meta_init.h"
#include "tensor/ops_raw.h"

#include <string.h>

/* One thread builds models: the notes are not locked. */
enum { NOTE_FILL, NOTE_UNIFORM, NOTE_NORMAL, NOTE_CALL };
typedef struct meta_note {
    wf_tensor *t;                /* retained */
    int kind;
    double a, b, args[4];
    uint64_t seed, offset;
    wf__meta_replay_fn fn;
    wf_rng_state before;
    unsigned version, slack;     /* the storage's version after the note (+ slack: a fill's
                                    front-end bumps after its kernel reported it) */
} meta_note;

static meta_note *g_notes;
static int g_nnotes, g_capnotes;
static bool g_recording;

bool wf__meta_record(bool on) { bool prev = g_recording; g_recording = on; return prev; }
bool wf__meta_recording(void) { return g_recording; }

static meta_note *note_for(const wf_tensor *t) {
    for (int i = 0; i < g_nnotes; i++) if (g_notes[i].t == t) return &g_notes[i];
    return NULL;
}

/* The note of t, new or reset; NULL when not recording or t is not meta (or out of memory:
 * then the tensor simply has no note, and materializing it says so). */
static meta_note *note_new(wf_tensor *t, int kind) {
    if (!g_recording || !t || t->device.type != WF_DEV_META) return NULL;
    meta_note *n = note_for(t);
    if (!n) {
        if (g_nnotes == g_capnotes) {
            int nc = g_capnotes ? 2 * g_capnotes : 64;
            meta_note *v = wf__realloc(g_notes, (size_t)g_capnotes * sizeof *v, (size_t)nc * sizeof *v);
            if (!v) return NULL;
            g_notes = v;
            g_capnotes = nc;
        }
        n = &g_notes[g_nnotes++];
        n->t = wf_tensor_retain(t);
    }
    wf_tensor *keep = n->t;
    memset(n, 0, sizeof *n);
    n->t = keep;
    n->kind = kind;
    n->version = atomic_load(&t->storage->version);
    return n;
}

void wf__meta_note_fill(wf_tensor *t, double v) {
    /* a view's fill covers part of the tensor only: not a note of the whole */
    meta_note *n = t && wf_is_contiguous(t) && t->offset == 0 ? note_new(t, NOTE_FILL) : NULL;
    if (n) n->a = v, n->slack = 1;
}

void wf__meta_note_rand(wf_tensor *t, bool normal, double a, double b, uint64_t seed, uint64_t offset) {
    meta_note *n = t && wf_is_contiguous(t) && t->offset == 0 ? note_new(t, normal ? NOTE_NORMAL : NOTE_UNIFORM) : NULL;
    if (n) n->a = a, n->b = b, n->seed = seed, n->offset = offset;
}

void wf__meta_note_call(wf_tensor *t, wf__meta_replay_fn fn, const double *args, int nargs, wf_rng_state before) {
    meta_note *n = note_new(t, NOTE_CALL);
    if (!n) return;
    n->fn = fn;
    n->before = before;
    for (int i = 0; i < nargs && i < 4; i++) n->args[i] = args[i];
}

bool wf__meta_pending(const wf_tensor *t) { return t && note_for(t) != NULL; }

int wf__meta_adopt(wf_tensor *t, wf_device dev) {
    meta_note *n = note_for(t);
    if (!n || t->device.type != WF_DEV_META) return 0;
    if (!wf__kernels(dev)) return wf_error();
    /* the storage object stays (its version too, which the note checks); only where its
     * data will live changes, and it has none yet */
    t->storage->data = NULL;
    t->storage->device = dev;
    t->device = dev;
    return 0;
}

void wf__meta_forget(const wf_tensor *t) {
    for (int i = 0; i < g_nnotes; i++) {
        if (g_notes[i].t != t) continue;
        wf_tensor_free(g_notes[i].t);
        g_notes[i] = g_notes[--g_nnotes];
        break;
    }
    if (!g_nnotes) wf__meta_forget_all();
}

void wf__meta_forget_all(void) {
    for (int i = 0; i < g_nnotes; i++) wf_tensor_free(g_notes[i].t);
    wf__free(g_notes, (size_t)g_capnotes * sizeof *g_notes);
    g_notes = NULL;
    g_nnotes = g_capnotes = 0;
}

/* Elements [first, first + count) of a draw that started at (seed, offset), in dtype dt, on
 * the CPU: the counters before `first` are skipped, the lanes of its counter before it
 * drawn and dropped (at most 3 elements more than asked for). */
static wf_tensor *draw_range(bool normal, double a, double b, uint64_t seed, uint64_t offset, int64_t first,
                             int64_t count, wf_dtype dt) {
    int64_t lanes = (!normal && dt != WF_F64) ? 4 : 2, skip = first % lanes, n = count + skip;
    wf_tensor *all = wf_empty_on(&n, 1, dt, WF_CPU);   /* the caller's scope */
    if (!all) return NULL;
    const wf_kernels *k = wf__kernels(WF_CPU);
    uint64_t off = offset + (uint64_t)(first / lanes);
    int rc = normal ? k->rand_normal(all, seed, off, a, b) : k->rand_uniform(all, seed, off, a, b);
    return rc ? NULL : wf__view_of(all, 1, &count, (const int64_t[]){ 1 }, all->offset + skip);
}

int wf__meta_materialize_rows(const wf_tensor *t, int64_t r0, int64_t count, wf_tensor *dst, const char *name) {
    static const char *op = "wf_fabric_setup";
    const meta_note *n = note_for(t);
    if (!n)
        return wf__error(WF_ESTATE, "%s: \"%s\" was built on the meta device (init_module with empty_init under FSDP) "
                         "without an initializer weft recorded (a fill, a uniform or normal draw, or an nn/init.c "
                         "initializer); build it outside init_module(empty_init) or initialize it with one", op, name);
    unsigned v = atomic_load(&t->storage->version);
    if (v < n->version || v > n->version + n->slack)
        return wf__error(WF_ESTATE, "%s: \"%s\" was built on the meta device and then changed by an operation weft "
                         "cannot replay (only its initializer is recorded); build it outside init_module(empty_init) "
                         "or change it after setup", op, name);
    int64_t rows = t->ndim ? t->shape[0] : 1, row_numel = rows ? wf_numel(t) / rows : 0;
    if (r0 < 0 || count < 0 || r0 + count > rows || wf_numel(dst) != count * row_numel || !wf_is_contiguous(dst))
        return wf__error(WF_ESHAPE, "%s: \"%s\": rows [%lld, %lld) of %lld do not fit the destination", op, name,
                         (long long)r0, (long long)(r0 + count), (long long)rows);
    if (!count || !row_numel) return 0;
    int rc = 0;
    /* raw ops (tensor/ knows no graph): dst is written as data, recording nothing, and the
     * replay callbacks work on a fresh tensor that requires no grad */
    wf_scope_begin();
    int64_t dn = wf_numel(dst);
    wf_tensor *flat_dst = wf__view_of(dst, 1, &dn, (const int64_t[]){ 1 }, dst->offset), *src = NULL;
    if (!flat_dst) rc = wf_error();
    else if (n->kind == NOTE_FILL) {
        rc = wf__fill_raw_(flat_dst, n->a);
    } else if (n->kind != NOTE_CALL) {
        src = draw_range(n->kind == NOTE_NORMAL, n->a, n->b, n->seed, n->offset, r0 * row_numel, dn, t->dtype);
    } else {
        /* the whole tensor, with the generator as it was before the call, then its rows */
        wf_tensor *full = wf_empty_on(t->shape, t->ndim, t->dtype, WF_CPU);
        wf_rng_state now = wf_rng_get_state();
        bool rec = wf__meta_record(false);
        wf_rng_set_state(n->before);
        rc = full ? n->fn(full, n->args) : wf_error();
        wf_rng_set_state(now);
        wf__meta_record(rec);
        if (!rc) src = wf__view_of(full, 1, &dn, (const int64_t[]){ 1 }, full->offset + r0 * row_numel);
    }
    if (!rc && n->kind != NOTE_FILL) rc = src ? wf__copy_raw_(flat_dst, src) : wf_error();
    wf_scope_end();
    return rc;
}
