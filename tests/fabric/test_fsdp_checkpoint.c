/* tests/fabric/test_fsdp_checkpoint.c: FSDP's checkpoints through wf_fabric_save/load
 * (fabric/fsdp_checkpoint.c, fabric/checkpoint.c), saved at one world size and resumed at
 * another. Run in phases, each a new set of processes:
 *   save DIR     (mpirun -np 2): N steps of FSDP with Adam; save the state as a sharded folder
 *                (the default) and as a full file; `weft consolidate` of the folder equals the
 *                full file; rank 0's memory peak during the full save stays far below the
 *                model and its optimizer state (gathered piece by piece); a damaged folder is
 *                refused on every rank, naming it, and changes nothing;
 *   resume DIR   (mpirun -np 3, and one process): load the folder and the full file into a
 *                fresh model (FSDP and DDP at 3 ranks, one device alone), continue M steps: the
 *                losses and the final parameters equal the uninterrupted single-process run
 *                (1e-6: the reduction order differs with the world size).
 * The global batch of every step is the same 6 rows at any world size (each rank takes its
 * slice), so the runs agree; the model is f64 so that the tolerance measures the
 * algorithm, not f32 rounding.
 *
 * CK_FORK=no: every rank runs every test in order so the collectives line up. */
#include "test_util.h"
#include "fabric/fabric_impl.h"
#include "fabric/sharded_checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static wf_process_group *pg;
static int rank, world;
static const char *phase, *dir;

#define NP 6
#define NV 47
#define N 3          /* steps before the save */
#define M 2          /* after it */
#define ROWS 6       /* the global batch */
#define LR 0.05

static wf_module *mlp(unsigned seed) {
    wf_manual_seed(seed);
    wf_module *m = wf_sequential_new(5, wf_linear_new(4, 5, true), wf_relu_new(), wf_linear_new(5, 3, true),
                                     wf_relu_new(), wf_linear_new(3, 1, true));
    ck_assert_int_eq(wf_module_to(m, WF_CPU, WF_F64), 0);
    return m;
}

/* rows [r0, r0 + n) of step k's global batch */
static wf_tensor *batch(int k, int r0, int n, bool target) {
    double v[ROWS * 4];
    int w = target ? 1 : 4;
    tt_fill(v, ROWS * w, (target ? 900u : 500u) + (unsigned)k);
    return wf_narrow(wf_from_data(v, WF_SHAPE(ROWS, w), WF_F64), 0, r0, n);
}
static wf_tensor *loss_rows(wf_module *m, int k, int r0, int n) {
    return wf_mean_all(wf_square(wf_sub(wf_module_forward(m, batch(k, r0, n, false)), batch(k, r0, n, true))));
}

static void flatten(wf_module *m, double *out) {
    wf_tensor *p[NP];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, NP), NP);
    int off = 0;
    for (int i = 0; i < NP; i++) {
        ck_assert_int_eq(wf_to_array(p[i], out + off, WF_F64), 0);
        off += (int)wf_numel(p[i]);
    }
}

static wf_optimizer *adam(wf_module *m) {
    wf_tensor *p[NP];
    wf_module_parameters(m, p, NULL, NP);
    return wf_adam_new(p, NP, &(wf_adam_opts){ .lr = LR });
}

/* The uninterrupted run: one process, N + M steps; losses[k] and the final parameters. */
static void reference(double *losses, double *params) {
    wf_module *m = mlp(7);
    wf_optimizer *o = adam(m);
    for (int k = 0; k < N + M; k++) WF_SCOPE {
        wf_tensor *l = loss_rows(m, k, 0, ROWS);
        losses[k] = wf_item(l);
        ck_assert_int_eq(wf_backward(l, NULL, false), 0);
        ck_assert_int_eq(wf_optimizer_step(o), 0);
        wf_optimizer_zero_grad(o, true);
    }
    flatten(m, params);
    wf_optimizer_free(o);
    wf_module_free(m);
}

static void near(double got, double want, const char *what, int i) {
    ck_assert_msg(fabs(got - want) <= 1e-6 * (1 + fabs(want)), "%s %d: %.12g vs %.12g", what, i, got, want);
}

static wf_fabric *new_fabric(const char *strategy, const char *sdt) {
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){
        .accelerator = "cpu", .strategy = strategy, .quiet = true,
        .fsdp = { .auto_wrap_policy = (const char *const[]){ "Linear", NULL }, .state_dict_type = sdt } });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), 0);
    return f;
}

/* Steps k0..k1 of the Fabric loop, each loss (the mean over the ranks) checked. */
static void train(wf_fabric *f, wf_module *m, wf_optimizer *o, int k0, int k1, const double *want) {
    int per = ROWS / world;
    for (int k = k0; k < k1; k++) WF_SCOPE {
        wf_tensor *l = loss_rows(m, k, rank * per, per);
        ck_assert_msg(wf_fabric_backward(f, l, m) == 0, "%s", wf_error_message());
        near(wf_item(wf_fabric_all_reduce(f, wf_detach(l), WF_FABRIC_MEAN)), want[k], "loss of step", k);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
        wf_optimizer_zero_grad(o, true);
    }
}

static void full_params(wf_fabric *f, wf_module *m, double *out) {
    ck_assert_int_eq(wf_fabric_summon_full_params_begin(f, m), 0);
    flatten(m, out);
    ck_assert_int_eq(wf_fabric_summon_full_params_end(f, m), 0);
}

typedef struct run { wf_fabric *f; wf_module *m; wf_optimizer *o; wf_fabric_state *st; int64_t step; char note[32]; } run;

static void run_open(run *r, const char *strategy, const char *sdt, unsigned seed) {
    memset(r, 0, sizeof *r);
    r->f = new_fabric(strategy, sdt);
    r->m = mlp(seed);
    r->o = adam(r->m);
    ck_assert_msg(wf_fabric_setup(r->f, r->m, &r->o, 1, NULL) == 0, "%s", wf_error_message());
    r->st = wf_fabric_state_new();
    ck_assert_int_eq(wf_fabric_state_add_module(r->st, "model", r->m), 0);
    ck_assert_int_eq(wf_fabric_state_add_optimizer(r->st, "optimizer", r->o), 0);
    ck_assert_int_eq(wf_fabric_state_add_int(r->st, "step", &r->step), 0);
    ck_assert_int_eq(wf_fabric_state_add_string(r->st, "note", r->note, sizeof r->note), 0);
}

static void run_close(run *r) {
    wf_fabric_state_free(r->st);
    wf_fabric_free(r->f);
    wf_optimizer_free(r->o);
    wf_module_free(r->m);
}

static char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------- phase "save" */

/* meta: the metadata texts too (the streamed writer re-prints JSON compactly, so a file of
 * the gathered path holds the same values in other text) */
static bool same_files(const char *a, const char *b, bool meta) {
    wf_st_file *fa = wf_st_open(a), *fb = wf_st_open(b);
    ck_assert_msg(fa && fb, "%s", wf_error_message());
    bool same = wf_st_count(fa) == wf_st_count(fb);
    for (int i = 0; same && i < wf_st_count(fa); i++) WF_SCOPE {
        const char *n = wf_st_name(fa, i);
        wf_tensor *x = wf_st_load(fa, n), *y = wf_st_find(fb, n) >= 0 ? wf_st_load(fb, n) : NULL;
        same = x && y && wf_same_shape(x, y) && wf_tensor_dtype(x) == wf_tensor_dtype(y) &&
               !memcmp(wf_data_ptr(x), wf_data_ptr(y), (size_t)wf_numel(x) * wf_dtype_size(wf_tensor_dtype(x)));
        if (!same) fprintf(stderr, "tensor %s differs\n", n);
    }
    for (int i = 0; same && meta && i < wf_st_metadata_count(fa); i++) {
        const char *k = wf_st_metadata_key(fa, i), *va = wf_st_metadata(fa, k), *vb = wf_st_metadata(fb, k);
        if (!strncmp(k, "weft/header", 11) || !strcmp(k, "crc32")) continue;
        same = vb && !strcmp(va, vb);
        if (!same) fprintf(stderr, "metadata %s: %s vs %s\n", k, va, vb ? vb : "(absent)");
    }
    wf_st_close(fa);
    wf_st_close(fb);
    return same;
}

START_TEST(test_save_sharded_and_full) {
    if (strcmp(phase, "save")) return;
    double losses[N + M], ref[NV];
    reference(losses, ref);
    run r;
    run_open(&r, "fsdp", NULL, 7);
    train(r.f, r.m, r.o, 0, N, losses);
    r.step = N;
    snprintf(r.note, sizeof r.note, "saved at %d", world);
    ck_assert_msg(wf_fabric_save(r.f, path_of("sharded"), r.st, NULL) == 0, "%s", wf_error_message());
    /* one file per rank and the index; no rank file holds a whole weight */
    struct stat sb;
    char rf[64];
    for (int k = 0; k < world; k++) {
        snprintf(rf, sizeof rf, "sharded/rank-%d-of-%d.safetensors", k, world);
        ck_assert_msg(!stat(path_of(rf), &sb), "%s missing", rf);
    }
    ck_assert_int_eq(stat(path_of("sharded/index.json"), &sb), 0);
    if (rank == 0) WF_SCOPE {
        snprintf(rf, sizeof rf, "sharded/rank-0-of-%d.safetensors", world);
        wf_st_file *sf = wf_st_open(path_of(rf));
        ck_assert_ptr_nonnull(sf);
        ck_assert_shape(wf_st_load(sf, "model/0.weight"), 3, 4);                 /* 5 rows over 2 ranks */
        ck_assert_shape(wf_st_load(sf, "optimizer/state/0/exp_avg"), 3, 4);
        wf_st_close(sf);
    }
    /* the same state as one full file */
    r.f->strategy->fsdp.full_state_dict = true;
    ck_assert_msg(wf_fabric_save(r.f, path_of("full.ckpt"), r.st, NULL) == 0, "%s", wf_error_message());
    r.f->strategy->fsdp.full_state_dict = false;
    /* `weft consolidate` of the folder is that file, tensor for tensor and entry for entry */
    if (rank == 0) {
        unlink(path_of("consolidated.ckpt"));
        ck_assert_msg(wf__sharded_consolidate(path_of("sharded"), path_of("consolidated.ckpt")) == 0, "%s",
                      wf_error_message());
        ck_assert(same_files(path_of("full.ckpt"), path_of("consolidated.ckpt"), true));
        ck_assert(same_files(path_of("consolidated.ckpt"), path_of("full.ckpt"), true));
        WF_SCOPE {
            wf_st_file *sf = wf_st_open(path_of("full.ckpt"));
            ck_assert_shape(wf_st_load(sf, "model/0.weight"), 5, 4);
            ck_assert_str_eq(wf_st_metadata(sf, "note"), "\"saved at 2\"");
            ck_assert_str_eq(wf_st_metadata(sf, "step"), "3");
            wf_st_close(sf);
        }
    }
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    run_close(&r);
}
END_TEST

static bool keep_all(const char *name, wf_tensor *t, void *ud) { (void)name, (void)t, (void)ud; return true; }

/* Rank 0's peak during a full save: the streamed path holds its shards plus one piece; the
 * gathered one (a save filter forces it) held every full tensor until the write. */
START_TEST(test_full_save_memory) {
    if (strcmp(phase, "save")) return;
    enum { L = 4, D = 64 };
    wf_fabric *f = new_fabric("fsdp", "full");
    wf_manual_seed(3);
    wf_module *ls[L];
    for (int i = 0; i < L; i++) ls[i] = wf_linear_new(D, D, true);
    wf_module *m = wf_sequential_new(L, ls[0], ls[1], ls[2], ls[3]);
    int np = wf_module_parameters(m, NULL, NULL, 0);
    wf_tensor *p[2 * L];
    wf_module_parameters(m, p, NULL, np);
    wf_optimizer *o = wf_adam_new(p, np, &(wf_adam_opts){ .lr = LR });
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    WF_SCOPE {
        ck_assert_int_eq(wf_fabric_backward(f, wf_sum_all(wf_module_forward(m, wf_ones(WF_SHAPE(2, D), WF_F32))), m), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
    }
    wf_optimizer_zero_grad(o, true);
    size_t model = (size_t)L * (D * D + D) * 4 * 3;   /* parameters, exp_avg, exp_avg_sq */
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", o);
    size_t grow[2];
    wf_save_filter flt[] = { { "model", keep_all, NULL }, { NULL, NULL, NULL } };
    for (int k = 0; k < 2; k++) {
        wf_memory_stats a, b;
        ck_assert_int_eq(wf_fabric_reset_peak_memory_stats(f), 0);
        ck_assert_int_eq(wf_fabric_memory_stats(f, &a), 0);
        ck_assert_msg(wf_fabric_save(f, path_of(k ? "gathered.ckpt" : "streamed.ckpt"), st, k ? flt : NULL) == 0, "%s",
                      wf_error_message());
        ck_assert_int_eq(wf_fabric_memory_stats(f, &b), 0);
        grow[k] = b.peak_allocated - a.allocated;
    }
    if (rank == 0) {
        printf("full save, rank 0's peak growth: streamed %zu bytes, gathered %zu bytes (model and Adam state %zu)\n",
               grow[0], grow[1], model);
        ck_assert(same_files(path_of("streamed.ckpt"), path_of("gathered.ckpt"), false));
        /* one piece of one weight is D/2 rows: 8 KiB; the model and its state 200 KiB */
        ck_assert_msg(grow[0] < model / 4, "streamed full save: peak grew by %zu bytes (model and state %zu)", grow[0],
                      model);
        ck_assert_msg(grow[1] > model / 2, "gathered full save: peak grew by %zu bytes only (model and state %zu)",
                      grow[1], model);
    }
    wf_fabric_state_free(st);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* A damaged rank file: every rank refuses the folder, naming it, before writing anything. */
START_TEST(test_damaged_folder) {
    if (strcmp(phase, "save")) return;
    run r;
    run_open(&r, "fsdp", NULL, 7);
    ck_assert_int_eq(wf_fabric_save(r.f, path_of("damaged"), r.st, NULL), 0);
    if (rank == 0) {
        char rf[64];
        snprintf(rf, sizeof rf, "damaged/rank-%d-of-%d.safetensors", world - 1, world);
        FILE *fp = fopen(path_of(rf), "r+b");
        ck_assert_ptr_nonnull(fp);
        ck_assert_int_eq(fseek(fp, -3, SEEK_END), 0);
        int c = fgetc(fp);
        ck_assert_int_eq(fseek(fp, -3, SEEK_END), 0);
        fputc(c ^ 0x5a, fp);
        fclose(fp);
    }
    ck_assert_int_eq(wf_dist_barrier(pg), 0);
    double before[NV], after[NV];
    full_params(r.f, r.m, before);
    r.step = 77;
    ck_assert_ptr_null(wf_fabric_load(r.f, path_of("damaged"), r.st, true));
    ck_assert_int_eq(wf_error(), WF_ECORRUPT);
    ck_assert_msg(strstr(wf_error_message(), path_of("damaged")), "%s", wf_error_message());
    full_params(r.f, r.m, after);
    for (int i = 0; i < NV; i++) ck_assert_double_eq(after[i], before[i]);
    ck_assert_int_eq(r.step, 77);
    /* a module the folder does not fit (strict): refused on every rank, naming the tensor */
    wf_fabric *g = new_fabric("fsdp", NULL);
    wf_module *other = wf_sequential_new(1, wf_linear_new(4, 5, true));
    wf_module_to(other, WF_CPU, WF_F64);
    ck_assert_int_eq(wf_fabric_setup_module(g, other, true), 0);
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", other);
    ck_assert_ptr_null(wf_fabric_load(g, path_of("sharded"), st, true));
    ck_assert_error(WF_EINVAL, "model/2.weight");
    wf_fabric_state *rest = wf_fabric_load(g, path_of("sharded"), st, false);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert_int_ge(wf_fabric_state_find(rest, "optimizer"), 0);
    wf_fabric_state_free(rest);
    wf_fabric_state_free(st);
    wf_fabric_free(g);
    wf_module_free(other);
    run_close(&r);
}
END_TEST

/* ---------------------------------------------------------------- phase "resume" */

static void resume_from(const char *strategy, const char *what, const double *losses, const double *ref) {
    run r;
    run_open(&r, strategy, NULL, 99);   /* other weights: the load must replace them */
    wf_fabric_state *rest = wf_fabric_load(r.f, path_of(what), r.st, true);
    ck_assert_msg(rest, "%s from %s: %s", strategy, what, wf_error_message());
    ck_assert_int_eq(wf_fabric_state_count(rest), 0);
    wf_fabric_state_free(rest);
    ck_assert_int_eq(r.step, N);
    ck_assert_str_eq(r.note, "saved at 2");
    train(r.f, r.m, r.o, N, N + M, losses);
    double got[NV];
    if (!strcmp(strategy, "fsdp")) full_params(r.f, r.m, got);
    else flatten(r.m, got);
    for (int i = 0; i < NV; i++) near(got[i], ref[i], what, i);
    run_close(&r);
}

START_TEST(test_resume_at_another_world_size) {
    if (strcmp(phase, "resume")) return;
    double losses[N + M], ref[NV];
    reference(losses, ref);
    static const char *const what[] = { "sharded", "full.ckpt" };
    for (int k = 0; k < 2; k++) {
        if (world > 1) {
            resume_from("fsdp", what[k], losses, ref);
            resume_from("ddp", what[k], losses, ref);
        } else {
            resume_from("auto", what[k], losses, ref);
        }
    }
}
END_TEST

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "save") && strcmp(argv[1], "resume"))) {
        fprintf(stderr, "usage: %s save|resume DIR\n", argv[0]);
        return 2;
    }
    phase = argv[1];
    dir = argv[2];
    setenv("CK_FORK", "no", 1);
    if (!getenv("WF_DIST_TIMEOUT")) setenv("WF_DIST_TIMEOUT", "30", 1);
    pg = wf_dist_init(NULL);
    if (!pg) {
        fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
        return EXIT_FAILURE;
    }
    rank = wf_process_group_rank(pg);
    world = wf_process_group_size(pg);
    if (!strcmp(phase, "save")) {
        if (world != 2) {
            fprintf(stderr, "the save phase runs at 2 ranks (it has %d)\n", world);
            return EXIT_FAILURE;
        }
        if (rank == 0) mkdir(dir, 0700);
        wf_dist_barrier(pg);
    }
    Suite *s = suite_create("fsdp_checkpoint");
    TCase *tc = tcase_create("fsdp_checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_save_sharded_and_full);
    tcase_add_test(tc, test_full_save_memory);
    tcase_add_test(tc, test_damaged_folder);
    tcase_add_test(tc, test_resume_at_another_world_size);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    wf_process_group_free(pg);
    return rc;
}
