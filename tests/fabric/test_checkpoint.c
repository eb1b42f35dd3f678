/* tests/fabric/test_checkpoint.c: Fabric's save/load on the checkpoint container: round
 * trips of every entry kind, the remainder, strict loading, filters, refusal of damaged
 * files, raw safetensors weights, interoperability with Python's safetensors, and a resume
 * in a new process that is bit-identical to an uninterrupted run. */
#include "test_util.h"
#include "weft/fabric.h"
#include "weft/io.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static wf_fabric *fab(void) { return wf_fabric_new(&(wf_fabric_config){ .quiet = true }); }

static wf_module *mlp(void) {
    return wf_sequential_new(4, wf_linear_new(4, 16, true), wf_relu_new(), wf_dropout_new(0.2), wf_linear_new(16, 3, true));
}

static wf_optimizer *adamw_of(wf_module *m) {
    wf_tensor *p[16];
    int n = wf_module_parameters(m, p, NULL, 16);
    return wf_adamw_new(p, n, &(wf_adam_opts){ .lr = 1e-2 });
}

static bool same_tensor(wf_tensor *a, wf_tensor *b) {
    if (!wf_same_shape(a, b) || wf_tensor_dtype(a) != wf_tensor_dtype(b)) return false;
    int64_t n = wf_numel(a);
    double *x = malloc(sizeof(double) * (size_t)(n + 1)), *y = malloc(sizeof(double) * (size_t)(n + 1));
    wf_to_array(a, x, WF_F64);
    wf_to_array(b, y, WF_F64);
    bool eq = !memcmp(x, y, sizeof(double) * (size_t)n);
    free(x);
    free(y);
    return eq;
}

static bool same_module(wf_module *a, wf_module *b) {
    wf_tensor *pa[16], *pb[16];
    int na = wf_module_parameters(a, pa, NULL, 16), nb = wf_module_parameters(b, pb, NULL, 16);
    if (na != nb) return false;
    for (int i = 0; i < na; i++) if (!same_tensor(pa[i], pb[i])) return false;
    return true;
}

/* one training step on fixed data */
static void step(wf_fabric *f, wf_module *m, wf_optimizer *o) {
    WF_SCOPE {
        wf_tensor *x = wf_reshape(wf_mul_scalar(wf_arange(0, 16, 1, WF_F32), 0.1), WF_SHAPE(4, 4));
        wf_tensor *loss = wf_mse_loss(wf_module_forward(m, x), wf_ones(WF_SHAPE(4, 3), WF_F32), WF_REDUCTION_MEAN);
        wf_optimizer_zero_grad(o, true);
        ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
    }
}

/* ---------------------------------------------------------------- round trips */

START_TEST(test_round_trip_and_remainder) {
    wf_fabric *f = fab();
    wf_manual_seed(1);
    wf_module *m = mlp();
    wf_optimizer *o = adamw_of(m);
    wf_lr_scheduler *sch = wf_step_lr_new(o, 2, 0.5);
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, sch), 0);
    for (int i = 0; i < 3; i++) { step(f, m, o); wf_fabric_scheduler_step(f, sch); }
    int64_t it = 3;
    double best = 0.125;
    char note[32] = "hello \"weft\"";
    wf_tensor *extra = wf_arange(0, 5, 1, WF_I64);
    wf_rng_state rng0 = wf_rng_get_state();
    wf_fabric_state *st = wf_fabric_state_new();
    ck_assert_int_eq(wf_fabric_state_add_module(st, "model", m), 0);
    ck_assert_int_eq(wf_fabric_state_add_optimizer(st, "optimizer", o), 0);
    ck_assert_int_eq(wf_fabric_state_add_scheduler(st, "scheduler", sch), 0);
    ck_assert_int_eq(wf_fabric_state_add_int(st, "iter", &it), 0);
    ck_assert_int_eq(wf_fabric_state_add_double(st, "best", &best), 0);
    ck_assert_int_eq(wf_fabric_state_add_string(st, "note", note, sizeof note), 0);
    ck_assert_int_eq(wf_fabric_state_add_tensor(st, "extra", extra), 0);
    ck_assert_int_eq(wf_fabric_state_add_rng(st, "rng"), 0);
    ck_assert_int_eq(wf_fabric_state_add_precision(st, "precision", f), 0);
    ck_assert_int_eq(wf_fabric_state_add_int(st, "iter", &it), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "already has an entry");
    ck_assert_int_eq(wf_fabric_state_add_int(st, "a/b", &it), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "invalid entry name");
    int iter_at = wf_fabric_state_find(st, "iter");
    ck_assert_int_ge(iter_at, 0);
    ck_assert_int_eq(wf_fabric_state_kind_at(st, iter_at), WF_STATE_INT);
    ck_assert_int_eq(wf_fabric_state_find(st, "missing"), WF_ENOTFOUND);
    wf_clear_error();
    ck_assert_int_eq(wf_fabric_save(f, tmp("ckpt.safetensors"), st, NULL), 0);
    ck_assert_int_eq(access(tmp("ckpt.safetensors"), F_OK), 0);

    /* a second, different model: load everything into it */
    wf_manual_seed(99);
    wf_module *m2 = mlp();
    wf_optimizer *o2 = adamw_of(m2);
    wf_lr_scheduler *sch2 = wf_step_lr_new(o2, 2, 0.5);
    ck_assert(!same_module(m, m2));
    int64_t it2 = 0;
    double best2 = 0;
    char note2[32] = "";
    wf_tensor *extra2 = wf_zeros(WF_SHAPE(5), WF_I64);
    wf_fabric_state *st2 = wf_fabric_state_new();
    wf_fabric_state_add_module(st2, "model", m2);
    wf_fabric_state_add_optimizer(st2, "optimizer", o2);
    wf_fabric_state_add_scheduler(st2, "scheduler", sch2);
    wf_fabric_state_add_int(st2, "iter", &it2);
    wf_fabric_state_add_double(st2, "best", &best2);
    wf_fabric_state_add_string(st2, "note", note2, sizeof note2);
    wf_fabric_state_add_tensor(st2, "extra", extra2);
    wf_fabric_state_add_rng(st2, "rng");
    wf_fabric_state *rest = wf_fabric_load(f, tmp("ckpt.safetensors"), st2, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert(same_module(m, m2));
    ck_assert_int_eq(it2, 3);
    ck_assert(best2 == 0.125);
    ck_assert_str_eq(note2, "hello \"weft\"");
    ck_assert(same_tensor(extra, extra2));
    ck_assert_uint_eq(wf_rng_get_state().seed, rng0.seed);
    ck_assert_uint_eq(wf_rng_get_state().offset, rng0.offset);
    ck_assert_double_eq(wf_optimizer_get_lr(o2, 0), wf_optimizer_get_lr(o, 0));
    ck_assert_int_eq(wf_lr_scheduler_last_epoch(sch2), 3);
    /* what was not requested comes back */
    ck_assert_int_eq(wf_fabric_state_count(rest), 1);
    ck_assert_str_eq(wf_fabric_state_name_at(rest, 0), "precision");
    ck_assert_int_eq(wf_fabric_state_kind_at(rest, 0), WF_STATE_JSON);
    ck_assert_ptr_nonnull(strstr(wf_fabric_state_get_json(rest, "precision"), "\"scale\":1"));
    wf_fabric_state_free(rest);
    /* both continue identically (optimizer state restored) */
    wf_rng_state r = wf_rng_get_state();   /* the same dropout masks for both */
    step(f, m, o);
    wf_fabric_setup(f, m2, &o2, 1, NULL);
    wf_rng_set_state(r);
    step(f, m2, o2);
    ck_assert(same_module(m, m2));

    /* state NULL: the whole checkpoint */
    rest = wf_fabric_load(f, tmp("ckpt.safetensors"), NULL, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_state_count(rest), 9);
    int64_t iv;
    ck_assert_int_eq(wf_fabric_state_get_int(rest, "iter", &iv), 0);
    ck_assert_int_eq(iv, 3);
    double dv;
    ck_assert_int_eq(wf_fabric_state_get_double(rest, "best", &dv), 0);
    ck_assert(dv == 0.125);
    ck_assert_str_eq(wf_fabric_state_get_string(rest, "note"), "hello \"weft\"");
    ck_assert(same_tensor(wf_fabric_state_get_tensor(rest, "extra"), extra));
    const wf_state_dict *msd = wf_fabric_state_get_tensors(rest, "model");
    ck_assert_ptr_nonnull(msd);
    ck_assert_int_eq(wf_state_dict_count(msd), 4);
    ck_assert_ptr_nonnull(wf_state_dict_get(msd, "0.weight"));
    const wf_state_dict *osd = wf_fabric_state_get_tensors(rest, "optimizer");
    ck_assert_ptr_nonnull(wf_state_dict_get(osd, "state/0/exp_avg"));
    ck_assert_ptr_nonnull(strstr(wf_fabric_state_get_json(rest, "optimizer"), "\"lr\""));
    ck_assert_ptr_nonnull(strstr(wf_fabric_state_get_json(rest, "scheduler"), "last_epoch"));
    ck_assert_int_eq(wf_fabric_state_get_int(rest, "best", &iv), WF_EDTYPE);
    ck_assert_error(WF_EDTYPE, "is a double");
    ck_assert_int_eq(wf_fabric_state_get_int(rest, "nope", &iv), WF_ENOTFOUND);
    wf_clear_error();
    /* a remainder can be saved again (re-exported) */
    ck_assert_int_eq(wf_fabric_save(f, tmp("again.safetensors"), rest, NULL), 0);
    wf_fabric_state_free(rest);

    wf_fabric_state_free(st);
    wf_fabric_state_free(st2);
    wf_tensor_free(extra);
    wf_tensor_free(extra2);
    wf_lr_scheduler_free(sch);
    wf_lr_scheduler_free(sch2);
    wf_optimizer_free(o);
    wf_optimizer_free(o2);
    wf_module_free(m);
    wf_module_free(m2);
    wf_fabric_free(f);
}
END_TEST

START_TEST(test_strict_and_filter) {
    wf_fabric *f = fab();
    wf_module *m = mlp();
    int64_t it = 7;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    ck_assert_int_eq(wf_fabric_save(f, tmp("small.safetensors"), st, NULL), 0);
    /* strict load of a key the file lacks */
    wf_fabric_state_add_int(st, "iter", &it);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("small.safetensors"), st, true));
    ck_assert_error(WF_ENOTFOUND, "the requested key \"iter\" is not in the checkpoint");
    wf_fabric_state *rest = wf_fabric_load(f, tmp("small.safetensors"), st, false);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert_int_eq(it, 7);
    ck_assert_int_eq(wf_fabric_state_count(rest), 0);
    wf_fabric_state_free(rest);
    /* a filter naming an unknown key */
    wf_save_filter bad[] = { { "modle", NULL, NULL }, { NULL, NULL, NULL } };
    ck_assert_int_eq(wf_fabric_save(f, tmp("x.safetensors"), st, bad), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "\"modle\", which is not an entry");
    /* a filter keeping only weights */
    bool only_weights(const char *name, wf_tensor *t, void *ud);
    wf_save_filter flt[] = { { "model", only_weights, NULL }, { NULL, NULL, NULL } };
    ck_assert_int_eq(wf_fabric_save(f, tmp("weights.safetensors"), st, flt), 0);
    wf_st_file *sf = wf_st_open(tmp("weights.safetensors"));
    ck_assert_ptr_nonnull(sf);
    ck_assert_int_eq(wf_st_count(sf), 2);
    ck_assert_int_ge(wf_st_find(sf, "model/0.weight"), 0);
    ck_assert_int_eq(wf_st_find(sf, "model/0.bias"), WF_ENOTFOUND);
    wf_st_close(sf);
    /* strict module load then fails on the missing biases; non-strict loads the weights */
    wf_module *m2 = mlp();
    wf_fabric_state *st2 = wf_fabric_state_new();
    wf_fabric_state_add_module(st2, "model", m2);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("weights.safetensors"), st2, true));
    ck_assert_error(WF_ENOTFOUND, "0.bias");
    rest = wf_fabric_load(f, tmp("weights.safetensors"), st2, false);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert(same_tensor(wf_module_get_parameter(m, "0.weight"), wf_module_get_parameter(m2, "0.weight")));
    wf_fabric_state_free(rest);
    /* kind mismatch */
    wf_fabric_state *st3 = wf_fabric_state_new();
    wf_fabric_state_add_int(st3, "model", &it);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("small.safetensors"), st3, true));
    ck_assert_error(WF_EINVAL, "holds a module");
    wf_fabric_state_free(st3);
    wf_fabric_state_free(st2);
    wf_fabric_state_free(st);
    wf_module_free(m);
    wf_module_free(m2);
    wf_fabric_free(f);
}
END_TEST

bool only_weights(const char *name, wf_tensor *t, void *ud) {
    (void)t; (void)ud;
    return strstr(name, "weight") != NULL;
}

/* ---------------------------------------------------------------- damaged files */

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

static size_t read_all(const char *path, unsigned char **out) {
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc((size_t)n);
    ck_assert_uint_eq(fread(*out, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return (size_t)n;
}

START_TEST(test_damaged_files) {
    wf_fabric *f = fab();
    wf_module *m = mlp();
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    ck_assert_int_eq(wf_fabric_save(f, tmp("good.safetensors"), st, NULL), 0);
    unsigned char *b;
    size_t n = read_all(tmp("good.safetensors"), &b);
    /* a flipped bit in the data: CRC */
    b[n - 3] ^= 0x10;
    write_bytes(tmp("flip.safetensors"), b, n);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("flip.safetensors"), st, true));
    ck_assert_error(WF_ECORRUPT, "CRC");
    b[n - 3] ^= 0x10;
    /* truncated */
    write_bytes(tmp("trunc.safetensors"), b, n - 100);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("trunc.safetensors"), st, true));
    ck_assert_error(WF_ECORRUPT, "trunc.safetensors");
    write_bytes(tmp("tiny.safetensors"), b, 5);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("tiny.safetensors"), st, true));
    ck_assert_error(WF_ECORRUPT, "shorter than");
    /* a header claiming two terabytes: refused before any allocation */
    unsigned char absurd[16] = { 0, 0, 0, 0, 0, 2, 0, 0, '{', '}' };
    write_bytes(tmp("absurd.safetensors"), absurd, sizeof absurd);
    wf_memory_stats before, after;
    wf_memory_stats_get(&before);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("absurd.safetensors"), st, true));
    wf_memory_stats_get(&after);
    ck_assert_error(WF_ECORRUPT, "header length");
    ck_assert_uint_eq(after.peak_allocated, before.peak_allocated);
    /* missing file */
    ck_assert_ptr_null(wf_fabric_load(f, tmp("missing.safetensors"), st, true));
    ck_assert_error(WF_EIO, "missing.safetensors");
    /* a plain safetensors file is not a checkpoint */
    wf_st_writer *w = wf_st_writer_new();
    wf_tensor *t = wf_ones(WF_SHAPE(2), WF_F32);
    wf_st_writer_add(w, "x", t);
    ck_assert_int_eq(wf_st_writer_save(w, tmp("plain.safetensors")), 0);
    wf_st_writer_free(w);
    wf_tensor_free(t);
    ck_assert_ptr_null(wf_fabric_load(f, tmp("plain.safetensors"), st, true));
    ck_assert_error(WF_ECORRUPT, "wf_fabric_load_raw_module");
    /* a save into a missing directory fails cleanly, leaving nothing */
    ck_assert_int_eq(wf_fabric_save(f, "/nonexistent-dir/x.safetensors", st, NULL), WF_EIO);
    ck_assert_error(WF_EIO, "nonexistent-dir");
    free(b);
    wf_fabric_state_free(st);
    wf_module_free(m);
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- raw weights */

START_TEST(test_load_raw) {
    wf_fabric *f = fab();
    wf_module *src = mlp(), *dst = mlp();
    /* a plain state-dict file, as safetensors.torch.save_file(model.state_dict()) writes */
    wf_state_dict *sd = wf_state_dict_new();
    wf_module_state_dict(src, sd, NULL);
    wf_st_writer *w = wf_st_writer_new();
    for (int i = 0; i < wf_state_dict_count(sd); i++)
        wf_st_writer_add(w, wf_state_dict_name_at(sd, i), wf_state_dict_tensor_at(sd, i));
    ck_assert_int_eq(wf_st_writer_save(w, tmp("raw.safetensors")), 0);
    wf_st_writer_free(w);
    wf_state_dict_free(sd);
    ck_assert_int_eq(wf_fabric_load_raw_module(f, tmp("raw.safetensors"), dst, true), 0);
    ck_assert(same_module(src, dst));
    wf_module *other = wf_sequential_new(1, wf_linear_new(4, 16, true));
    ck_assert_int_eq(wf_fabric_load_raw_module(f, tmp("raw.safetensors"), other, true), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "unexpected");
    ck_assert_int_eq(wf_fabric_load_raw_module(f, tmp("raw.safetensors"), other, false), 0);
    /* an optimizer's raw state */
    wf_optimizer *o = adamw_of(src), *o2 = adamw_of(dst);
    wf_fabric_setup(f, src, &o, 1, NULL);
    step(f, src, o);
    wf_optim_state *os = wf_optimizer_state_dict(o);
    w = wf_st_writer_new();
    for (int i = 0; i < wf_optim_state_count(os); i++) wf_st_writer_add(w, wf_optim_state_name(os, i), wf_optim_state_tensor(os, i));
    wf_st_writer_set_metadata(w, "param_groups", wf_optim_state_json(os));
    ck_assert_int_eq(wf_st_writer_save(w, tmp("raw_opt.safetensors")), 0);
    wf_st_writer_free(w);
    wf_optim_state_free(os);
    ck_assert_int_eq(wf_fabric_load_raw_optimizer(f, tmp("raw_opt.safetensors"), o2), 0);
    ck_assert_int_eq(wf_fabric_load_raw_optimizer(f, tmp("raw.safetensors"), o2), WF_ECORRUPT);
    ck_assert_error(WF_ECORRUPT, "param_groups");
    wf_optimizer_free(o);
    wf_optimizer_free(o2);
    wf_module_free(src);
    wf_module_free(dst);
    wf_module_free(other);
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- Python's safetensors */

START_TEST(test_python_safetensors_reads_checkpoint) {
    if (system("python3 -c 'import safetensors.numpy' >/dev/null 2>&1") != 0) {
        printf("skipped: python3 with safetensors and numpy is not available\n");
        return;
    }
    wf_fabric *f = fab();
    wf_module *m = mlp();
    wf_optimizer *o = adamw_of(m);
    wf_fabric_setup(f, m, &o, 1, NULL);
    step(f, m, o);
    int64_t it = 42;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", o);
    wf_fabric_state_add_int(st, "iter", &it);
    ck_assert_int_eq(wf_fabric_save(f, tmp("py.safetensors"), st, NULL), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import sys, json\n"
             "from safetensors import safe_open\n"
             "with safe_open(sys.argv[1], framework=\"numpy\") as f:\n"
             "    md = f.metadata()\n"
             "    print(\"META\", md[\"iter\"], md[\"weft/format\"], len(json.loads(md[\"optimizer/param_groups\"])))\n"
             "    for k in sorted(f.keys()):\n"
             "        a = f.get_tensor(k).astype(\"float64\").ravel()\n"
             "        print(k, a.size, \" \".join(repr(float(v)) for v in a))\n"
             "' %s > %s", tmp("py.safetensors"), tmp("py.txt"));
    ck_assert_int_eq(system(cmd), 0);
    FILE *fp = fopen(tmp("py.txt"), "r");
    ck_assert_ptr_nonnull(fp);
    char name[256];
    int checked = 0;
    static char line[1 << 16];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, fp));
    ck_assert_str_eq(line, "META 42 weft-checkpoint-1 1\n");
    wf_st_file *sf = wf_st_open(tmp("py.safetensors"));
    while (fscanf(fp, "%255s", name) == 1) {
        long long n;
        ck_assert_int_eq(fscanf(fp, "%lld", &n), 1);
        WF_SCOPE {
            wf_tensor *t = wf_st_load(sf, name);
            ck_assert_msg(t, "%s: %s", name, wf_error_message());
            ck_assert_int_eq(wf_numel(t), n);
            double *v = malloc(sizeof(double) * (size_t)(n + 1));
            wf_to_array(t, v, WF_F64);
            for (long long i = 0; i < n; i++) {
                double x;
                ck_assert_int_eq(fscanf(fp, "%lf", &x), 1);
                ck_assert_msg(x == v[i], "%s[%lld]: python %.17g weft %.17g", name, i, x, v[i]);
            }
            free(v);
        }
        checked++;
    }
    ck_assert_int_eq(checked, wf_st_count(sf));
    ck_assert_int_ge(checked, 4 + 4 * 3);   /* model tensors + optimizer state */
    wf_st_close(sf);
    fclose(fp);
    wf_fabric_state_free(st);
    wf_optimizer_free(o);
    wf_module_free(m);
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- resume in a new process */

#define RESUME_N 6   /* steps before the save: mid-epoch (4 batches per epoch) */
#define RESUME_M 7

/* Train with a shuffling loader, dropout, AdamW and StepLR from (epoch, batch); stop after
 * `steps` steps. phase: 0 uninterrupted N+M, 1 first N then save, 2 load then M. */
static int run_phase(int phase, const char *dir) {
    char path[512];
    wf_fabric *f = fab();
    wf_seed_everything(phase == 2 ? 777 : 5, false);   /* the resumed run starts from other weights */
    wf_tensor *x = wf_randn(WF_SHAPE(32, 4), WF_F32), *y = wf_randn(WF_SHAPE(32, 3), WF_F32);
    if (phase == 2) {   /* the data must be the same: rebuild it with the first seed */
        wf_tensor_free(x); wf_tensor_free(y);
        wf_manual_seed(5);
        x = wf_randn(WF_SHAPE(32, 4), WF_F32);
        y = wf_randn(WF_SHAPE(32, 3), WF_F32);
        wf_manual_seed(777);
    }
    wf_dataset ds;
    wf_tensor_dataset((wf_tensor *[]){ x, y }, 2, &ds);
    wf_tensor_free(x); wf_tensor_free(y);
    wf_fabric_loader *dl = wf_fabric_setup_dataloader(
        f, wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 8, .shuffle = true, .seed = 11 }), NULL);
    wf_module *m = mlp();
    wf_optimizer *o = adamw_of(m);
    wf_lr_scheduler *sch = wf_step_lr_new(o, 3, 0.5);
    if (wf_fabric_setup(f, m, &o, 1, sch)) return 1;
    int64_t epoch = 0, batch = 0, global_step = 0;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_optimizer(st, "optimizer", o);
    wf_fabric_state_add_scheduler(st, "scheduler", sch);
    wf_fabric_state_add_int(st, "epoch", &epoch);
    wf_fabric_state_add_int(st, "batch", &batch);
    wf_fabric_state_add_int(st, "global_step", &global_step);
    wf_fabric_state_add_rng(st, "rng");
    if (phase == 2) {
        snprintf(path, sizeof path, "%s/resume.safetensors", dir);
        wf_fabric_state *rest = wf_fabric_load(f, path, st, true);
        if (!rest) { fprintf(stderr, "load: %s\n", wf_error_message()); return 1; }
        wf_fabric_state_free(rest);
    }
    int steps = phase == 0 ? RESUME_N + RESUME_M : phase == 1 ? RESUME_N : RESUME_M;
    snprintf(path, sizeof path, "%s/losses_%d.bin", dir, phase);
    FILE *lf = fopen(path, "wb");
    int done = 0;
    while (done < steps) {
        wf_fabric_loader_set_epoch(dl, (uint64_t)epoch);
        wf_tensor *b[2];
        for (int64_t k = 0; k < batch; k++) { WF_SCOPE { wf_fabric_loader_next(dl, b); } }   /* skip to the batch */
        int rc = 1;
        while (done < steps) {
            wf_scope_begin();
            rc = wf_fabric_loader_next(dl, b);
            if (rc == 1) {
                wf_tensor *loss = wf_mse_loss(wf_module_forward(m, b[0]), b[1], WF_REDUCTION_MEAN);
                wf_optimizer_zero_grad(o, true);
                if (!loss || wf_fabric_backward(f, loss, m) || wf_fabric_step(f, o, NULL)) return 1;
                double l = wf_item(loss);
                fwrite(&l, sizeof l, 1, lf);
                wf_fabric_scheduler_step(f, sch);
                batch++;
                global_step++;
                done++;
            }
            wf_scope_end();
            if (rc != 1) break;
        }
        if (rc == 0) { epoch++; batch = 0; }
    }
    fclose(lf);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, phase == 1 ? "resume" : phase == 0 ? "final_0" : "final_2");
    if (wf_fabric_save(f, path, st, NULL)) { fprintf(stderr, "save: %s\n", wf_error_message()); return 1; }
    wf_fabric_state_free(st);
    wf_lr_scheduler_free(sch);
    wf_optimizer_free(o);
    wf_module_free(m);
    wf_fabric_loader_free(dl);
    wf_fabric_free(f);
    return 0;
}

static void run_child(int phase) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char ph[8];
        snprintf(ph, sizeof ph, "%d", phase);
        setenv("WF_TEST_RESUME_PHASE", ph, 1);
        setenv("WF_TEST_RESUME_DIR", tmpdir, 1);
        execl("/proc/self/exe", "test_checkpoint", (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "phase %d failed (status %d)", phase, status);
}

START_TEST(test_resume_bit_identical) {
    run_child(0);   /* N + M uninterrupted */
    run_child(1);   /* N, save */
    run_child(2);   /* a new process: load, M */
    unsigned char *a, *b, *c;
    size_t na = read_all(tmp("losses_0.bin"), &a), nb = read_all(tmp("losses_1.bin"), &b), nc = read_all(tmp("losses_2.bin"), &c);
    ck_assert_uint_eq(na, (RESUME_N + RESUME_M) * sizeof(double));
    ck_assert_uint_eq(nb, RESUME_N * sizeof(double));
    ck_assert_uint_eq(nc, RESUME_M * sizeof(double));
    ck_assert_msg(!memcmp(a, b, nb), "the first N losses differ");
    for (int i = 0; i < RESUME_M; i++) {
        double u, v;
        memcpy(&u, a + nb + (size_t)i * 8, 8);
        memcpy(&v, c + (size_t)i * 8, 8);
        ck_assert_msg(u == v, "resumed step %d: %.17g vs uninterrupted %.17g", RESUME_N + i, v, u);
    }
    free(a); free(b); free(c);
    /* the final checkpoints hold identical weights, optimizer state, counters */
    wf_st_file *f0 = wf_st_open(tmp("final_0.safetensors")), *f2 = wf_st_open(tmp("final_2.safetensors"));
    ck_assert_ptr_nonnull(f0);
    ck_assert_ptr_nonnull(f2);
    ck_assert_int_eq(wf_st_count(f0), wf_st_count(f2));
    for (int i = 0; i < wf_st_count(f0); i++) {
        const char *n = wf_st_name(f0, i);
        WF_SCOPE { ck_assert_msg(same_tensor(wf_st_load(f0, n), wf_st_load(f2, n)), "%s differs", n); }
    }
    const char *keys[] = { "epoch", "batch", "global_step", "scheduler", "optimizer/param_groups" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_str_eq(wf_st_metadata(f0, keys[i]), wf_st_metadata(f2, keys[i]));
    ck_assert_str_eq(wf_st_metadata(f0, "global_step"), "13");
    wf_st_close(f0);
    wf_st_close(f2);
}
END_TEST

int main(void) {
    const char *phase = getenv("WF_TEST_RESUME_PHASE");
    if (phase) return run_phase(atoi(phase), getenv("WF_TEST_RESUME_DIR"));
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-ckpt-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    Suite *s = suite_create("fabric_checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip_and_remainder);
    tcase_add_test(tc, test_strict_and_filter);
    tcase_add_test(tc, test_damaged_files);
    tcase_add_test(tc, test_load_raw);
    tcase_add_test(tc, test_python_safetensors_reads_checkpoint);
    tcase_add_test(tc, test_resume_bit_identical);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
