/* tests/fabric/test_examples.c: the Fabric examples run as users run them, with tiny
 * settings: gan, grad_accumulation (the effective batch and the optimizer step count), and
 * the trainer template (checkpoints, loggers, and a resumed run that ends bit-identical to an
 * uninterrupted one). The example binaries are the arguments (meson passes them); without the
 * Fashion-MNIST files the suite is skipped (exit 77). */
#include "test_util.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* the data: WEFT_FASHION_MNIST_DIR, else Debian's dataset-fashion-mnist */
static const char *data_dir = "/usr/share/datasets/fashion-mnist";
static const char *gan_bin, *accum_bin, *trainer_bin;
static char tmpdir[256];

typedef struct run_result {
    int status;          /* exit code, or -1 when killed */
    char out[1 << 16];   /* stdout (and stderr), truncated */
    char last[4096];     /* the last non-empty line */
} run_result;

/* Run "bin --data DIR args" in tmpdir with stderr folded into stdout. */
static void run(run_result *r, const char *bin, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' --data '%s' %s 2>&1", tmpdir, bin, data_dir, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    /* last non-empty line */
    while (n > 0 && (r->out[n - 1] == '\n' || r->out[n - 1] == '\r')) n--;
    size_t start = n;
    while (start > 0 && r->out[start - 1] != '\n' && r->out[start - 1] != '\r') start--;
    snprintf(r->last, sizeof r->last, "%.*s", (int)(n - start), r->out + start);
    /* UBSan reports and goes on by default: a report fails the test all the same */
    ck_assert_msg(!strstr(r->out, "runtime error:") && !strstr(r->out, "Sanitizer"), "%s %s:\n%s", bin, args, r->out);
}

/* The raw text of "key": value in a one-line JSON object (into buf), or NULL. */
static const char *json_raw(const char *line, const char *key, char *buf, size_t cap) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, ",}");
    if (n >= cap) return NULL;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static double json_num(const char *line, const char *key) {
    char buf[64];
    const char *v = json_raw(line, key, buf, sizeof buf);
    ck_assert_msg(v, "no \"%s\" in: %s", key, line);
    char *end;
    double d = strtod(v, &end);
    ck_assert_msg(end != v && !*end, "\"%s\" is not a number in: %s", key, line);
    return d;
}

static bool file_exists(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* a file whose name starts with prefix in dir */
static bool dir_has(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d))) found = found || !strncmp(de->d_name, prefix, strlen(prefix));
    closedir(d);
    return found;
}

#define CHECK_OK(r) ck_assert_msg((r)->status == 0, "exit %d:\n%s", (r)->status, (r)->out)

/* ---------------------------------------------------------------- gan */

START_TEST(test_gan) {
    static run_result r;
    run(&r, gan_bin, "--steps 5 --log-every 1 --batch 32");
    CHECK_OK(&r);
    ck_assert_int_eq((int)json_num(r.last, "steps"), 5);
    double d = json_num(r.last, "d_loss"), g = json_num(r.last, "g_loss");
    ck_assert_msg(d > 0 && d < 10 && g > 0 && g < 10, "losses d %g g %g", d, g);
    ck_assert_ptr_nonnull(strstr(r.out, "step     5"));
}
END_TEST

/* ---------------------------------------------------------------- gradient accumulation */

START_TEST(test_grad_accumulation) {
    static run_result r;
    run(&r, accum_bin, "--batch 16 --accumulate 4 --max-steps 8");
    CHECK_OK(&r);
    ck_assert_int_eq((int)json_num(r.last, "effective_batch"), 64);
    ck_assert_int_eq((int)json_num(r.last, "optimizer_steps"), 8);
    ck_assert_int_eq((int)json_num(r.last, "micro_batches"), 32);
    /* K accumulated micro-batches give the gradient of one batch of K*B samples */
    ck_assert_double_lt(json_num(r.last, "check_max_diff"), 1e-5);
    ck_assert_ptr_nonnull(strstr(r.out, "effective batch 64"));
    /* another K: the step count follows */
    run(&r, accum_bin, "--batch 8 --accumulate 3 --max-steps 5");
    CHECK_OK(&r);
    ck_assert_int_eq((int)json_num(r.last, "effective_batch"), 24);
    ck_assert_int_eq((int)json_num(r.last, "optimizer_steps"), 5);
    ck_assert_int_eq((int)json_num(r.last, "micro_batches"), 15);
}
END_TEST

/* ---------------------------------------------------------------- the trainer */

#define TRAINER_SMALL "--batch 16 --limit-train-batches 4 --limit-val-batches 2 --log-every 1 --no-progress"

START_TEST(test_trainer_resume_bit_identical) {
    static run_result a, b, c;
    /* interrupted run: stops at step 6 (mid-epoch 1), checkpoints at 3, 4 (epoch end) and 6 */
    run(&a, trainer_bin, "--max-steps 6 --ckpt-every 3 --ckpt-dir ck --log-dir logs " TRAINER_SMALL);
    CHECK_OK(&a);
    ck_assert_int_eq((int)json_num(a.last, "global_step"), 6);
    char path[512];
    snprintf(path, sizeof path, "%s/ck/step-00000003.ckpt", tmpdir);
    ck_assert_msg(file_exists(path), "%s missing", path);
    snprintf(path, sizeof path, "%s/ck/step-00000006.ckpt", tmpdir);
    ck_assert_msg(file_exists(path), "%s missing", path);
    /* both loggers wrote */
    snprintf(path, sizeof path, "%s/logs/csv/version_0/metrics.csv", tmpdir);
    ck_assert_msg(file_exists(path), "%s missing", path);
    snprintf(path, sizeof path, "%s/logs/tensorboard/version_0", tmpdir);
    ck_assert_msg(dir_has(path, "events.out.tfevents."), "no event file in %s", path);

    /* resumed from the newest checkpoint (step 6) to step 12 */
    run(&b, trainer_bin, "--max-steps 12 --ckpt-every 3 --ckpt-dir ck --resume --log-dir logs " TRAINER_SMALL);
    CHECK_OK(&b);
    ck_assert_int_eq((int)json_num(b.last, "resumed_from"), 6);
    ck_assert_int_eq((int)json_num(b.last, "global_step"), 12);
    ck_assert_ptr_nonnull(strstr(b.out, "resumed from"));
    snprintf(path, sizeof path, "%s/logs/csv/version_1/metrics.csv", tmpdir);   /* a new version */
    ck_assert_msg(file_exists(path), "%s missing", path);

    /* uninterrupted 12 steps */
    run(&c, trainer_bin, "--max-steps 12 --ckpt-dir ck_full --log-dir logs_full " TRAINER_SMALL);
    CHECK_OK(&c);
    ck_assert_int_eq((int)json_num(c.last, "resumed_from"), -1);
    const char *keys[] = { "weights_checksum", "train_loss", "val_loss", "val_acc", "best_val_acc", "epochs", "global_step" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char vb[128], vc[128];
        ck_assert_ptr_nonnull(json_raw(b.last, keys[i], vb, sizeof vb));
        ck_assert_ptr_nonnull(json_raw(c.last, keys[i], vc, sizeof vc));
        ck_assert_msg(!strcmp(vb, vc), "%s: resumed %s, uninterrupted %s\nresumed:\n%s\nuninterrupted:\n%s", keys[i], vb, vc,
                      b.out, c.out);
    }
    /* resuming where nothing is left to do: the same weights again */
    run(&b, trainer_bin, "--max-steps 12 --ckpt-dir ck --resume --log-dir logs " TRAINER_SMALL);
    CHECK_OK(&b);
    ck_assert_int_eq((int)json_num(b.last, "resumed_from"), 12);
    char vb[128], vc[128];
    ck_assert_str_eq(json_raw(b.last, "weights_checksum", vb, sizeof vb), json_raw(c.last, "weights_checksum", vc, sizeof vc));
}
END_TEST

START_TEST(test_trainer_resume_without_checkpoint) {
    static run_result r;
    run(&r, trainer_bin, "--max-steps 2 --ckpt-dir empty_ck --resume --log-dir logs_e " TRAINER_SMALL);
    CHECK_OK(&r);
    ck_assert_ptr_nonnull(strstr(r.out, "starting from scratch"));
    ck_assert_int_eq((int)json_num(r.last, "global_step"), 2);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

START_TEST(test_bad_flags_exit_2) {
    static run_result r;
    const char *bins[] = { gan_bin, accum_bin, trainer_bin };
    for (int i = 0; i < 3; i++) {
        run(&r, bins[i], "--bogus 1");
        ck_assert_msg(r.status == 2, "%s --bogus: exit %d", bins[i], r.status);
        ck_assert_ptr_nonnull(strstr(r.out, "unknown option --bogus"));
        run(&r, bins[i], "--batch");
        ck_assert_int_eq(r.status, 2);
        ck_assert_ptr_nonnull(strstr(r.out, "needs a value"));
        run(&r, bins[i], "--batch 0");
        ck_assert_int_eq(r.status, 2);
        run(&r, bins[i], "--precision fp9");
        ck_assert_int_eq(r.status, 2);
        ck_assert_ptr_nonnull(strstr(r.out, "fp9"));
    }
    run(&r, trainer_bin, "--resume");
    ck_assert_int_eq(r.status, 2);
    run(&r, accum_bin, "--accumulate 0");
    ck_assert_int_eq(r.status, 2);
    run(&r, gan_bin, "--steps -3");
    ck_assert_int_eq(r.status, 2);
    run(&r, trainer_bin, "--data /nonexistent --log-dir logs_bad");
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.out, "/nonexistent"));
}
END_TEST

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s GAN GRAD_ACCUMULATION TRAINER\n", argv[0]);
        return 1;
    }
    if (getenv("WEFT_FASHION_MNIST_DIR") && *getenv("WEFT_FASHION_MNIST_DIR")) data_dir = getenv("WEFT_FASHION_MNIST_DIR");
    const char *files[] = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                            "t10k-labels-idx1-ubyte.gz" };
    for (int i = 0; i < 4; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", data_dir, files[i]);
        if (access(path, R_OK)) {
            printf("skipped: Fashion-MNIST not found (%s; set WEFT_FASHION_MNIST_DIR)\n", path);
            return 77;
        }
    }
    if (strchr(data_dir, '\'')) { fprintf(stderr, "WEFT_FASHION_MNIST_DIR must not contain a quote\n"); return 1; }
    /* absolute paths: the examples run in a temporary directory */
    static char bins[3][PATH_MAX];
    for (int i = 0; i < 3; i++)
        if (!realpath(argv[1 + i], bins[i])) { fprintf(stderr, "cannot find %s\n", argv[1 + i]); return 1; }
    gan_bin = bins[0];
    accum_bin = bins[1];
    trainer_bin = bins[2];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-examples-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    Suite *s = suite_create("fabric_examples");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gan);
    tcase_add_test(tc, test_grad_accumulation);
    tcase_add_test(tc, test_trainer_resume_bit_identical);
    tcase_add_test(tc, test_trainer_resume_without_checkpoint);
    tcase_add_test(tc, test_bad_flags_exit_2);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
