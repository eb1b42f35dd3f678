/* tests/fabric/test_sharded_checkpoint.c: sharded and full checkpoints of a state sharded by
 * hand with wf__shard_rows (fabric/sharded_checkpoint.h), as one process and under mpirun
 * -np 2 and -np 3: round trips at the same world size, saved at 2 ranks (a subgroup) and
 * loaded at every world size and at 1, sharded equal to full, consolidation (read back by
 * wf_st_open, by `weft consolidate` and by Python's safetensors when installed), damaged and
 * missing files, wrong requests, a rank that cannot write, and rank 0's memory in a full save.
 *
 *     test_sharded_checkpoint [WEFT_EXE [PYTHON]]   (the `weft` program, for its test; the
 *                                                  python3 to read the result with) */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fabric/sharded_checkpoint.h"
#include "io/atomic_file.h"
#include "io/st_stream_writer.h"
#include "tensor/tensor_impl.h"
#include "test_util.h"
#include "weft/dist.h"
#include "weft/fabric.h"
#include "weft/nn.h"
#include "weft/io.h"

static wf_process_group *pg;
static int rank, world;
static const char *weft_exe, *python = "python3";
static char dir[512];   /* shared by all ranks */

/* ---------------------------------------------------------------- the state */

typedef struct spec {
    const char *name;
    wf_dtype dt;
    int ndim;
    int64_t shape[3];
    bool replicated;
} spec;

/* uneven rows (7 over 2 or 3 ranks), a tensor some ranks hold none of (2 rows over 3), a
 * replicated vector, a replicated 0-d step, an empty tensor */
static const spec specs[] = {
    { "model/w0", WF_F32, 2, { 7, 3 }, false },
    { "model/w1", WF_F32, 3, { 2, 2, 2 }, false },
    { "model/b", WF_F64, 1, { 5 }, true },
    { "model/e", WF_F32, 2, { 0, 4 }, false },
    { "optimizer/state/0/exp_avg", WF_F32, 2, { 7, 3 }, false },
    { "optimizer/state/0/step", WF_I64, 0, { 0 }, true },
};
#define NSPEC ((int)(sizeof specs / sizeof specs[0]))
#define META "{\"epoch\":3,\"optimizer/param_groups\":[{\"lr\":0.5}]}"

static int64_t row_elems(const spec *s) {
    int64_t r = 1;
    for (int d = 1; d < s->ndim; d++) r *= s->shape[d];
    return r;
}

static double value(int j, int64_t flat, double bump) { return j * 100 + (double)flat * 0.5 + bump; }

/* Entries of rank r of n (n == 1: the whole state), values + bump (fill false: zeros). */
static void make_entries(wf__shard_entry *e, int r, int n, bool fill, double bump) {
    for (int j = 0; j < NSPEC; j++) {
        const spec *s = &specs[j];
        int64_t start = 0, count = s->ndim ? s->shape[0] : 1;
        if (!s->replicated) wf__shard_rows(s->shape[0], r, n, &start, &count);
        int64_t shape[3] = { count, s->shape[1], s->shape[2] };
        int64_t ne = count * row_elems(s);
        double *v = calloc((size_t)(ne ? ne : 1), sizeof *v);
        for (int64_t k = 0; fill && k < ne; k++) v[k] = value(j, start * row_elems(s) + k, bump);
        wf_tensor *t = wf_to_dtype(wf_from_data(v, shape, s->ndim, WF_F64), s->dt);
        ck_assert_ptr_nonnull(t);
        free(v);
        e[j] = (wf__shard_entry){ .name = s->name, .local = t, .ndim = s->ndim, .row_start = start,
                                  .replicated = s->replicated };
        memcpy(e[j].global_shape, s->shape, sizeof s->shape);
    }
}

static void check_entries(const wf__shard_entry *e, double bump) {
    for (int j = 0; j < NSPEC; j++) {
        const spec *s = &specs[j];
        int64_t ne = wf_numel(e[j].local);
        double *v = calloc((size_t)(ne ? ne : 1), sizeof *v);
        ck_assert_int_eq(wf_to_array(e[j].local, v, WF_F64), 0);
        for (int64_t k = 0; k < ne; k++)
            ck_assert_msg(v[k] == value(j, e[j].row_start * row_elems(s) + k, bump), "rank %d: %s[%lld] = %g, expected %g",
                          rank, s->name, (long long)k, v[k], value(j, e[j].row_start * row_elems(s) + k, bump));
        free(v);
    }
}

/* Same dtype, shape and values. */
static bool same(wf_tensor *a, wf_tensor *b) {
    if (wf_tensor_dtype(a) != wf_tensor_dtype(b) || wf_ndim(a) != wf_ndim(b)) return false;
    for (int d = 0; d < wf_ndim(a); d++)
        if (wf_shape(a)[d] != wf_shape(b)[d]) return false;
    int64_t n = wf_numel(a);
    double *x = calloc((size_t)n + 1, sizeof *x), *y = calloc((size_t)n + 1, sizeof *y);
    bool eq = !wf_to_array(a, x, WF_F64) && !wf_to_array(b, y, WF_F64) && !memcmp(x, y, (size_t)n * sizeof *x);
    free(x);
    free(y);
    return eq;
}

/* ---------------------------------------------------------------- files */

static void sync_all(void) { ck_assert_int_eq(wf_dist_barrier(pg), 0); }

static const char *at(const char *name) {
    static char p[4][700];
    static int k;
    k = (k + 1) & 3;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void flip_byte(const char *path, long off_from_end) {
    size_t n;
    unsigned char *b = tt_read_file(path, &n);
    b[n - (size_t)off_from_end] ^= 0x10;
    tt_write_file(path, b, n);
    free(b);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    unsigned char *b = tt_read_file(from, &n);
    tt_write_file(to, b, n);
    free(b);
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* No save left its temporary folder; checked by every rank before rank 0 may start the next
 * save, which makes one. */
static void no_tmp_folder(void) {
    ck_assert(!exists(at("ck.tmp")));
    sync_all();
}

static void setup(void) {
    if (rank == 0) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/weft_sharded_XXXXXX", base && *base ? base : "/tmp");
        ck_assert_ptr_nonnull(mkdtemp(dir));
    }
    ck_assert_int_eq(wf_dist_broadcast_bytes(pg, dir, sizeof dir, 0), 0);
    wf_clear_error();
}

static void teardown(void) {
    wf_dist_barrier(pg);
    if (rank == 0) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    wf_dist_barrier(pg);
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_roundtrip_same_world) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC], l[NSPEC];
    make_entries(e, rank, world, true, 0);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, META), 0);
    char name[64];
    snprintf(name, sizeof name, "ck/rank-%d-of-%d.safetensors", rank, world);
    ck_assert(exists(at(name)));
    ck_assert(exists(at("ck/index.json")));
    no_tmp_folder();
    make_entries(l, rank, world, false, 0);
    char *md = NULL;
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, &md), 0);
    check_entries(l, 0);
    ck_assert_str_eq(md, META);
    wf__free(md, strlen(md) + 1);
    /* a second save replaces the first as a whole */
    make_entries(e, rank, world, true, 1);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, NULL), 0);
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, NULL), 0);
    check_entries(l, 1);
    no_tmp_folder();
    /* metadata as deep as a save accepts comes back */
    char deep[256];
    int k = snprintf(deep, sizeof deep, "{\"deep\":");
    for (int i = 0; i < 62; i++) deep[k++] = '[';
    for (int i = 0; i < 62; i++) deep[k++] = ']';
    snprintf(deep + k, sizeof deep - (size_t)k, "}");
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, deep), 0);
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, &md), 0);
    ck_assert_str_eq(md, deep);
    wf__free(md, strlen(md) + 1);
    wf_scope_end();
}
END_TEST

/* Saved by ranks {0, 1} only (a subgroup: world size 2, or 1 alone), loaded at the whole
 * world and by every rank alone as a world of one. */
START_TEST(test_any_world_size) {
    wf_scope_begin();
    int n = world >= 2 ? 2 : 1;
    int ranks[2] = { 0, 1 };
    wf_process_group *sub = wf_process_group_new_subgroup(pg, ranks, n);
    ck_assert_ptr_nonnull(sub);
    if (rank < n) {
        wf__shard_entry e[NSPEC];
        make_entries(e, rank, n, true, 0);
        ck_assert_int_eq(wf__sharded_save(sub, at("two"), e, NSPEC, META), 0);
    } else {
        ck_assert_int_eq(wf__sharded_save(sub, at("two"), NULL, 0, NULL), WF_EINVAL);   /* not a member */
        wf_clear_error();
    }
    sync_all();
    wf__shard_entry l[NSPEC];
    make_entries(l, rank, world, false, 0);
    ck_assert_int_eq(wf__sharded_load(pg, at("two"), l, NSPEC, NULL), 0);
    check_entries(l, 0);
    make_entries(l, 0, 1, false, 0);
    ck_assert_int_eq(wf__sharded_load(NULL, at("two"), l, NSPEC, NULL), 0);
    check_entries(l, 0);
    sync_all();
    wf_process_group_free(sub);
    wf_scope_end();
}
END_TEST

START_TEST(test_full_equals_sharded) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC], a[NSPEC], b[NSPEC];
    make_entries(e, rank, world, true, 0);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, META), 0);
    ck_assert_int_eq(wf__full_save(pg, at("full.ckpt"), e, NSPEC, META), 0);
    /* the full file is a weft checkpoint any reader opens whole */
    wf_st_file *f = wf_st_open(at("full.ckpt"));
    ck_assert_ptr_nonnull(f);
    ck_assert(wf_st_is_sealed(f));
    ck_assert_int_eq(wf_st_verify(f), 0);
    ck_assert_str_eq(wf_st_metadata(f, "weft/format"), "weft-checkpoint-1");
    ck_assert_str_eq(wf_st_metadata(f, "weft/entries"), "{\"model\":\"module\",\"optimizer\":\"optimizer\"}");
    ck_assert_str_eq(wf_st_metadata(f, "epoch"), "3");
    ck_assert_str_eq(wf_st_metadata(f, "optimizer/param_groups"), "[{\"lr\":0.5}]");
    wf__shard_entry whole[NSPEC];
    make_entries(whole, 0, 1, true, 0);
    for (int j = 0; j < NSPEC; j++) {
        wf_tensor *t = wf_st_load(f, specs[j].name);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(wf_tensor_dtype(t), specs[j].dt);
        ck_assert(same(t, whole[j].local));
    }
    wf_st_close(f);
    /* both load into the same sharded state */
    make_entries(a, rank, world, false, 0);
    make_entries(b, rank, world, false, 0);
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), a, NSPEC, NULL), 0);
    ck_assert_int_eq(wf__full_load_rows(pg, at("full.ckpt"), b, NSPEC), 0);
    for (int j = 0; j < NSPEC; j++) ck_assert(same(a[j].local, b[j].local));
    check_entries(b, 0);
    wf_scope_end();
}
END_TEST

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(test_consolidate) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC], whole[NSPEC];
    make_entries(e, rank, world, true, 0);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, META), 0);
    if (rank == 0) {
        make_entries(whole, 0, 1, true, 0);
        ck_assert_int_eq(wf__sharded_consolidate(at("ck"), at("one.safetensors")), 0);
        wf_st_file *f = wf_st_open(at("one.safetensors"));
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(wf_st_count(f), NSPEC);
        for (int j = 0; j < NSPEC; j++) {
            wf_tensor *t = wf_st_load(f, specs[j].name);
            ck_assert_ptr_nonnull(t);
            ck_assert(same(t, whole[j].local));
        }
        ck_assert_str_eq(wf_st_metadata(f, "weft/format"), "weft-checkpoint-1");
        wf_st_close(f);
        /* a full file loads into any sharding too */
        wf__shard_entry l[NSPEC];
        make_entries(l, 1, 2, false, 0);
        ck_assert_int_eq(wf__full_load_rows(NULL, at("one.safetensors"), l, NSPEC), 0);
        check_entries(l, 0);
        /* an existing output is kept; a folder without an index is an error */
        ck_assert_int_eq(wf__sharded_consolidate(at("ck"), at("one.safetensors")), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "already exists");
        ck_assert_int_eq(wf__sharded_consolidate(dir, at("two.safetensors")), WF_EIO);
        ck_assert_error(WF_EIO, "index.json");
        ck_assert(!exists(at("two.safetensors")));

        if (weft_exe && *weft_exe) {
            char cmd[2048];
            snprintf(cmd, sizeof cmd, "'%s' consolidate '%s'", weft_exe, at("ck"));
            ck_assert_int_eq(run(cmd), 0);
            ck_assert(exists(at("ck.consolidated")));   /* Lightning's default name */
            snprintf(cmd, sizeof cmd, "'%s' consolidate '%s' --output '%s'", weft_exe, at("ck"), at("cli.safetensors"));
            ck_assert_int_eq(run(cmd), 0);
            size_t n1, n2;
            unsigned char *x = tt_read_file(at("cli.safetensors"), &n1), *y = tt_read_file(at("one.safetensors"), &n2);
            ck_assert(n1 == n2 && !memcmp(x, y, n1));
            free(x);
            free(y);
            snprintf(cmd, sizeof cmd, "'%s' consolidate '%s' 2>/dev/null", weft_exe, dir);   /* no index */
            ck_assert_int_ne(run(cmd), 0);
            snprintf(cmd, sizeof cmd, "'%s' consolidate 2>/dev/null", weft_exe);
            ck_assert_int_eq(run(cmd), 2);
            snprintf(cmd, sizeof cmd, "'%s' consolidate '%s' --output 2>/dev/null", weft_exe, at("ck"));
            ck_assert_int_eq(run(cmd), 2);
        }
        char probe[1200];
        snprintf(probe, sizeof probe, "'%s' -c 'import safetensors, numpy' 2>/dev/null", python);
        if (run(probe) != 0) {
            printf("test_consolidate: Python's safetensors (with numpy) is not installed: its check is skipped\n");
        } else {
            char cmd[2048];
            snprintf(cmd, sizeof cmd,
                     "'%s' -c 'import sys, numpy as np\n"
                     "from safetensors.numpy import load_file\n"
                     "t = load_file(sys.argv[1])\n"
                     "w = t[\"model/w0\"]\n"
                     "assert w.dtype == np.float32 and w.shape == (7, 3), (w.dtype, w.shape)\n"
                     "assert np.array_equal(w.reshape(-1), np.arange(21) * 0.5), w\n"
                     "s = t[\"optimizer/state/0/step\"]\n"
                     "assert s.dtype == np.int64 and s.shape == () and int(s) == 500, s\n"
                     "assert t[\"model/e\"].shape == (0, 4)\n"
                     "assert np.array_equal(t[\"model/b\"], 200 + np.arange(5) * 0.5)\n"
                     "' '%s'",
                     python, at("one.safetensors"));
            ck_assert_int_eq(run(cmd), 0);
        }
    }
    sync_all();
    wf_scope_end();
}
END_TEST

/* Every rank gets the same error code, naming what; then the intact checkpoint loads. */
static void expect_load_error(int code, const char *text, wf__shard_entry *l) {
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, NULL), code);
    ck_assert_error(code, text);
}

START_TEST(test_damaged_and_missing) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC], l[NSPEC];
    make_entries(e, rank, world, true, 0);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, META), 0);
    make_entries(l, rank, world, true, 7);   /* what a failed load must leave alone */
    char last[64];
    snprintf(last, sizeof last, "ck/rank-%d-of-%d.safetensors", world - 1, world);

    /* a flipped bit in a rank file's data: named by tensor, on every rank, nothing written */
    if (rank == 0) {
        copy_file(at(last), at("keep"));
        flip_byte(at(last), 3);
    }
    sync_all();
    expect_load_error(WF_ECORRUPT, "CRC32 mismatch", l);
    check_entries(l, 7);
    /* ... in its header */
    if (rank == 0) {
        copy_file(at("keep"), at(last));
        size_t n;
        unsigned char *b = tt_read_file(at(last), &n);
        b[20] ^= 0x01;
        tt_write_file(at(last), b, n);
        free(b);
    }
    sync_all();
    expect_load_error(WF_ECORRUPT, "safetensors", l);
    /* missing */
    if (rank == 0) ck_assert_int_eq(unlink(at(last)), 0);
    sync_all();
    expect_load_error(WF_EIO, last + 3, l);
    /* a rank file from another save (a valid file, the wrong one) */
    if (rank == 0) {
        wf__shard_entry o[NSPEC];
        make_entries(o, world - 1, world, true, 2);
        wf_st_writer *w = wf_st_writer_new();
        for (int j = 0; j < NSPEC; j++)
            if (wf_numel(o[j].local) && !(o[j].replicated && world > 1)) ck_assert_int_eq(wf_st_writer_add(w, o[j].name, o[j].local), 0);
        ck_assert_int_eq(wf_st_writer_save(w, at(last)), 0);
        wf_st_writer_free(w);
    }
    sync_all();
    expect_load_error(WF_ECORRUPT, "another save", l);
    if (rank == 0) copy_file(at("keep"), at(last));
    sync_all();
    /* a flipped bit in the index */
    if (rank == 0) {
        copy_file(at("ck/index.json"), at("keep.json"));
        flip_byte(at("ck/index.json"), 60);
    }
    sync_all();
    expect_load_error(WF_ECORRUPT, "index", l);
    /* a truncated index */
    if (rank == 0) {
        size_t n;
        unsigned char *b = tt_read_file(at("keep.json"), &n);
        tt_write_file(at("ck/index.json"), b, n - 5);
        free(b);
    }
    sync_all();
    expect_load_error(WF_ECORRUPT, "index", l);
    if (rank == 0) copy_file(at("keep.json"), at("ck/index.json"));
    sync_all();
    check_entries(l, 7);

    /* wrong requests: a dtype, a shape, a name; and a bad list */
    wf__shard_entry bad[NSPEC];
    memcpy(bad, l, sizeof bad);
    bad[2].local = wf_to_dtype(l[2].local, WF_F32);
    expect_load_error(WF_EDTYPE, "model/b", bad);
    memcpy(bad, l, sizeof bad);
    bad[0].global_shape[1] = 4;
    bad[0].local = wf_zeros(WF_SHAPE(wf_shape(l[0].local)[0], 4), WF_F32);
    expect_load_error(WF_ESHAPE, "model/w0", bad);
    memcpy(bad, l, sizeof bad);
    bad[1].name = "model/nothing";
    expect_load_error(WF_ENOTFOUND, "model/nothing", bad);
    memcpy(bad, l, sizeof bad);
    bad[4].row_start = 6;   /* rows past the end */
    expect_load_error(WF_ESHAPE, "optimizer/state/0/exp_avg", bad);
    ck_assert_int_eq(wf__sharded_load(pg, at("nowhere"), l, NSPEC, NULL), WF_EIO);
    ck_assert_error(WF_EIO, "index.json");
    ck_assert_int_eq(wf__full_load_rows(pg, at("ck/index.json"), l, NSPEC), WF_ECORRUPT);
    wf_clear_error();
    check_entries(l, 7);

    /* and the checkpoint is still good */
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, NULL), 0);
    check_entries(l, 0);
    wf_scope_end();
}
END_TEST

static ssize_t failing_pwrite(int fd, const void *p, size_t n, off_t off) {
    (void)fd, (void)p, (void)n, (void)off;
    errno = ENOSPC;
    return -1;
}

START_TEST(test_rank_fails_to_write) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC], l[NSPEC];
    make_entries(e, rank, world, true, 0);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, META), 0);
    /* the last rank's disk is full: every rank fails, naming it, and the old checkpoint stays */
    make_entries(e, rank, world, true, 5);
    if (rank == world - 1) wf__atomic_pwrite_fn = failing_pwrite;
    int rc = wf__sharded_save(pg, at("ck"), e, NSPEC, META);
    wf__atomic_pwrite_fn = pwrite;
    ck_assert_int_eq(rc, WF_EIO);
    char who[64];
    snprintf(who, sizeof who, world > 1 ? "rank %d of %d failed" : "No space", world - 1, world);
    ck_assert_msg(strstr(wf_error_message(), who) && strstr(wf_error_message(), "No space left"), "%s",
                  wf_error_message());
    wf_clear_error();
    no_tmp_folder();
    make_entries(l, rank, world, false, 0);
    ck_assert_int_eq(wf__sharded_load(pg, at("ck"), l, NSPEC, NULL), 0);
    check_entries(l, 0);
    /* the same in a full save: the old file stays */
    ck_assert_int_eq(wf__full_save(pg, at("full.ckpt"), e, NSPEC, NULL), 0);
    if (rank == 0) wf__atomic_pwrite_fn = failing_pwrite;
    rc = wf__full_save(pg, at("full.ckpt"), e, NSPEC, NULL);
    wf__atomic_pwrite_fn = pwrite;
    ck_assert_int_eq(rc, WF_EIO);
    wf_clear_error();
    ck_assert_int_eq(wf__full_load_rows(pg, at("full.ckpt"), l, NSPEC), 0);
    check_entries(l, 5);
    wf_scope_end();
}
END_TEST

START_TEST(test_bad_save_arguments) {
    wf_scope_begin();
    wf__shard_entry e[NSPEC];
    make_entries(e, rank, world, true, 0);
    /* one rank's local shape does not fit: every rank fails, naming the entry */
    wf_tensor *keep = e[0].local;
    if (rank == world - 1) e[0].local = wf_zeros(WF_SHAPE(1, 5), WF_F32);
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, NULL), WF_ESHAPE);
    ck_assert_error(WF_ESHAPE, "model/w0");
    e[0].local = keep;
    if (world > 1) {
        /* different lists on different ranks */
        ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, rank ? NSPEC - 1 : NSPEC, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "same list");
        /* two ranks claim the same rows */
        int64_t s = e[0].row_start;
        if (rank == 1) e[0].row_start = 0;
        ck_assert_int_eq(wf__full_save(pg, at("f"), e, NSPEC, NULL), WF_EINVAL);
        ck_assert_error(WF_EINVAL, "model/w0");
        e[0].row_start = s;
    }
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, "[1]"), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "metadata_json");
    char deep[256];
    int k = snprintf(deep, sizeof deep, "{\"deep\":");
    for (int i = 0; i < 63; i++) deep[k++] = '[';
    for (int i = 0; i < 63; i++) deep[k++] = ']';
    snprintf(deep + k, sizeof deep - (size_t)k, "}");
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, deep), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "metadata_json");
    ck_assert_int_eq(wf__full_save(pg, at("f"), e, NSPEC, "{\"crc32/x\":\"1\"}"), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "reserved");
    e[3].name = e[0].name;
    ck_assert_int_eq(wf__sharded_save(pg, at("ck"), e, NSPEC, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "twice");
    ck_assert_int_eq(wf__sharded_save(pg, NULL, e, NSPEC, NULL), WF_ENULL);
    wf_clear_error();
    /* a file where the folder should be */
    if (rank == 0) tt_write_file(at("plain"), "x", 1);
    sync_all();
    ck_assert_int_eq(wf__sharded_save(pg, at("plain"), e, 1, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "not a folder");
    ck_assert(!exists(at("ck")));
    wf_scope_end();
}
END_TEST

/* Rank 0 of a full save holds its shards plus one piece at a time, never the model: eight
 * equal tensors of 256 KiB each. Runs first, while the process's peak is still low. */
START_TEST(test_full_save_memory) {
    enum { K = 8, R = 64, C = 1024 };
    wf_scope_begin();
    wf__shard_entry e[K];
    char names[K][16];
    for (int j = 0; j < K; j++) {
        int64_t s, c;
        wf__shard_rows(R, rank, world, &s, &c);
        snprintf(names[j], sizeof names[j], "model/t%d", j);
        e[j] = (wf__shard_entry){ .name = names[j], .local = wf_full(WF_SHAPE(c, C), j, WF_F32), .ndim = 2,
                                  .global_shape = { R, C }, .row_start = s };
    }
    size_t tensor = (size_t)R * C * sizeof(float), model = K * tensor, held = 0;
    for (int j = 0; j < K; j++) held += (size_t)wf_numel(e[j].local) * sizeof(float);
    wf_memory_stats before, after;
    wf_memory_stats_get(&before);
    ck_assert_int_eq(wf__full_save(pg, at("big.ckpt"), e, K, NULL), 0);
    wf_memory_stats_get(&after);
    if (rank == 0) {
        size_t extra = after.peak_allocated > before.allocated ? after.peak_allocated - before.allocated : 0;
        ck_assert_msg(held + extra < model + tensor, "rank 0 peaked at %zu bytes above its %zu of shards (model %zu)",
                      extra, held, model);
        ck_assert_msg(extra <= tensor, "rank 0 peaked at %zu bytes above its shards, more than one tensor (%zu)", extra,
                      tensor);
        wf_st_file *f = wf_st_open(at("big.ckpt"));
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(wf_st_verify(f), 0);
        ck_assert_int_eq(wf_st_count(f), K);
        wf_st_close(f);
    }
    wf_scope_end();
}
END_TEST

/* The streaming writer writes exactly what wf_st_writer_save writes for the same tensors,
 * whatever the order and the pieces the data comes in; a short or long tensor is refused
 * and leaves the path alone. Every rank in its own files (no collectives). */
START_TEST(test_stream_writer) {
    wf_scope_begin();
    char a[64], b[64];
    snprintf(a, sizeof a, "a%d.st", rank);
    snprintf(b, sizeof b, "b%d.st", rank);
    wf_tensor *t[4] = { wf_reshape(wf_arange(0, 6, 1, WF_F32), WF_SHAPE(2, 3)), wf_arange(0, 3, 1, WF_I64),
                        wf_full(WF_SHAPE(2, 1), 0.5, WF_BF16), wf_zeros(WF_SHAPE(0, 4), WF_U8) };
    const char *names[4] = { "w", "steps", "half", "empty" };
    wf_st_writer *w = wf_st_writer_new();
    for (int i = 0; i < 4; i++) ck_assert_int_eq(wf_st_writer_add(w, names[i], t[i]), 0);
    ck_assert_int_eq(wf_st_writer_set_metadata(w, "format", "pt"), 0);
    ck_assert_int_eq(wf_st_writer_save(w, at(a)), 0);
    wf_st_writer_free(w);
    wf__st_tensor_desc d[4];
    for (int i = 0; i < 4; i++) d[i] = (wf__st_tensor_desc){ names[i], wf_tensor_dtype(t[i]), wf_ndim(t[i]), wf_shape(t[i]) };
    const char *mk[1] = { "format" }, *mv[1] = { "pt" };
    wf__st_stream *s = wf__st_stream_open(at(b), d, 4, mk, mv, 1, "test");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(wf__st_stream_write_tensor(s, 2, t[2]), 0);
    const float *wv = wf_data_ptr(t[0]);
    ck_assert_int_eq(wf__st_stream_write(s, 0, wv, 8), 0);            /* w in two pieces */
    ck_assert_int_eq(wf__st_stream_write(s, 0, wv + 2, 16), 0);
    ck_assert_int_eq(wf__st_stream_write(s, 0, wv, 4), WF_EINVAL);    /* one float too many */
    ck_assert_error(WF_EINVAL, "'w'");
    ck_assert_int_eq(wf__st_stream_write_tensor(s, 1, t[0]), WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "steps");
    ck_assert_int_eq(wf__st_stream_write_tensor(s, 1, t[1]), 0);
    ck_assert_int_eq(wf__st_stream_commit(s), 0);
    size_t na, nb;
    unsigned char *x = tt_read_file(at(a), &na), *y = tt_read_file(at(b), &nb);
    ck_assert(na == nb && !memcmp(x, y, na));
    free(y);
    /* incomplete: refused, the earlier file untouched, no temporary left */
    s = wf__st_stream_open(at(b), d, 4, mk, mv, 1, "test");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(wf__st_stream_write_tensor(s, 1, t[1]), 0);
    ck_assert_int_eq(wf__st_stream_commit(s), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "got 0 of its 24 bytes");
    y = tt_read_file(at(b), &nb);
    ck_assert(na == nb && !memcmp(x, y, na));
    free(x);
    free(y);
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", b);
    ck_assert(!exists(at(tmp)));
    /* bad descriptions */
    const char *rk[1] = { "weft/header_crc32" };
    ck_assert_ptr_null(wf__st_stream_open(at(b), d, 4, rk, mv, 1, "test"));
    ck_assert_error(WF_EINVAL, "reserved");
    d[1].name = "w";
    ck_assert_ptr_null(wf__st_stream_open(at(b), d, 4, NULL, NULL, 0, "test"));
    ck_assert_error(WF_EINVAL, "appears twice");
    d[1].name = "__metadata__";
    ck_assert_ptr_null(wf__st_stream_open(at(b), d, 4, NULL, NULL, 0, "test"));
    ck_assert_error(WF_EINVAL, "reserved");
    wf__st_stream_abort(NULL);
    wf_scope_end();
}
END_TEST

/* A full file is a Fabric checkpoint: wf_fabric_load restores a module and an int from it.
 * (One process: a Fabric under mpirun would set up a distributed strategy.) */
START_TEST(test_full_file_loads_in_fabric) {
    wf_scope_begin();
    wf_module *m = wf_linear_new(3, 4, true), *m2 = wf_linear_new(3, 4, true);
    wf_tensor *p[2], *p2[2];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, 2), 2);
    ck_assert_int_eq(wf_module_parameters(m2, p2, NULL, 2), 2);
    /* the weight and the bias sharded by hand over this world */
    wf__shard_entry e[2];
    const char *names[2] = { "model/weight", "model/bias" };
    for (int j = 0; j < 2; j++) {
        int64_t s, c;
        wf__shard_rows(wf_shape(p[j])[0], rank, world, &s, &c);
        e[j] = (wf__shard_entry){ .name = names[j], .local = wf_contiguous(wf_narrow(p[j], 0, s, c)), .ndim = wf_ndim(p[j]),
                                  .row_start = s };
        memcpy(e[j].global_shape, wf_shape(p[j]), (size_t)wf_ndim(p[j]) * sizeof(int64_t));
    }
    ck_assert_int_eq(wf__full_save(pg, at("fabric.ckpt"), e, 2, "{\"iter\":7,\"weft/entries\":{\"model\":\"module\",\"iter\":\"int\"}}"), 0);
    if (world == 1) {
        wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .quiet = true });
        ck_assert_ptr_nonnull(f);
        wf_fabric_state *st = wf_fabric_state_new();
        int64_t iter = 0;
        ck_assert_int_eq(wf_fabric_state_add_module(st, "model", m2), 0);
        ck_assert_int_eq(wf_fabric_state_add_int(st, "iter", &iter), 0);
        wf_fabric_state *rest = wf_fabric_load(f, at("fabric.ckpt"), st, true);
        ck_assert_msg(rest != NULL, "%s", wf_error_message());
        ck_assert_int_eq(iter, 7);
        for (int j = 0; j < 2; j++) ck_assert(same(p[j], p2[j]));
        wf_fabric_state_free(rest);
        wf_fabric_state_free(st);
        wf_fabric_free(f);
    }
    wf_module_free(m);
    wf_module_free(m2);
    wf_scope_end();
}
END_TEST

int main(int argc, char **argv) {
    setenv("CK_FORK", "no", 1);
    if (!getenv("WF_DIST_TIMEOUT")) setenv("WF_DIST_TIMEOUT", "30", 1);
    weft_exe = argc > 1 ? argv[1] : NULL;
    if (argc > 2 && *argv[2]) python = argv[2];
    pg = wf_dist_init(NULL);
    if (!pg) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        return EXIT_FAILURE;
    }
    rank = wf_process_group_rank(pg);
    world = wf_process_group_size(pg);
    Suite *s = suite_create("sharded_checkpoint");
    TCase *tc = tcase_create("sharded_checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_full_save_memory);
    tcase_add_test(tc, test_stream_writer);
    tcase_add_test(tc, test_roundtrip_same_world);
    tcase_add_test(tc, test_any_world_size);
    tcase_add_test(tc, test_full_equals_sharded);
    tcase_add_test(tc, test_full_file_loads_in_fabric);
    tcase_add_test(tc, test_consolidate);
    tcase_add_test(tc, test_damaged_and_missing);
    tcase_add_test(tc, test_rank_fails_to_write);
    tcase_add_test(tc, test_bad_save_arguments);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group_free(pg);
    return rc;
}
