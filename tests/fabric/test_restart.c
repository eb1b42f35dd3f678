/* tests/fabric/test_restart.c: runs that survive a failure, and exact resume mid-epoch.
 *  - the loader's position (wf_dataloader_position / set_position): the batches after it
 *    are the uninterrupted loader's, the skipped ones are never made, bad values refused;
 *  - exact resume: restart_prog (tests/fabric/restart_prog.c) runs N steps, saves and exits;
 *    a NEW process loads and runs the rest: the final parameters equal an uninterrupted
 *    run's bit for bit, with 1 rank and with 2 DDP ranks (mpirun -np 2). The checkpoint
 *    falls mid-epoch, the loader has 2 workers, every batch draws noise from the global RNG
 *    and a cosine schedule steps per batch, so each of them must be restored;
 *  - `weft run --devices 2 --max-restarts 1` with rank 1 killed (SIGKILL) after step 7 on the
 *    first start: the run completes from its step-6 checkpoint with the uninterrupted
 *    parameters; with --max-restarts 0 it fails naming rank 1.
 *  - examples/fabric_mnist --checkpoint-dir: 1 epoch, then a new process resumes for the 2nd:
 *    its last.ckpt equals an uninterrupted 2-epoch run's byte for byte, and --save-every
 *    refuses bad values (skipped without Debian's Fashion-MNIST files, and in sanitizer builds).
 * argv: restart_prog, weft, mpirun (or "" without MPI), fabric_mnist. */
#include "test_util.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prog, *weft, *mpirun, *mnist;
static char tmp[256];

enum { STEPS = 14, EVERY = 3 };

/* argv with stderr into *err (static text), environment additions env (NULL-terminated or
 * NULL); bounded to 100 s. Returns the exit status (128+sig). */
static char err_text[16384];
static int run(char *const argv[], const char *const *env) {
    char errpath[400];
    snprintf(errpath, sizeof errpath, "%s/stderr", tmp);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        (void)e;
        for (const char *const *x = env; x && *x; x++) putenv((char *)*x);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) break;
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
        if (i == 999) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ck_abort_msg("%s did not finish within 100 s", argv[0]);
        }
    }
    FILE *f = fopen(errpath, "r");
    size_t n = f ? fread(err_text, 1, sizeof err_text - 1, f) : 0;
    err_text[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void fresh(char *dir, size_t n, const char *tag) {
    snprintf(dir, n, "%s/%s", tmp, tag);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

static size_t read_final(const char *dir, double *v) {
    char path[600];
    snprintf(path, sizeof path, "%s/final", dir);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s was not written", path);
    size_t n = fread(v, sizeof(double), 16, f);
    fclose(f);
    ck_assert_uint_eq(n, 4);   /* Linear(3, 1): 3 weights and a bias */
    return n;
}

static void assert_same_final(const char *a, const char *b) {
    double x[16], y[16];
    size_t n = read_final(a, x);
    read_final(b, y);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(!memcmp(&x[i], &y[i], sizeof(double)), "parameter element %zu: %.17g (%s) vs %.17g (%s)", i, x[i], a,
                      y[i], b);
}

/* Runs restart_prog (directly, or under mpirun -np 2) with the arguments. */
static int run_prog(int np, const char *dir, const char *stop_at) {
    char steps[16], every[16];
    snprintf(steps, sizeof steps, "%d", STEPS);
    snprintf(every, sizeof every, "%d", EVERY);
    static const char *const env[] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", NULL };
    if (np == 1) {
        char *argv[] = { (char *)prog, (char *)dir, steps, every, (char *)stop_at, NULL };
        return run(argv, env);
    }
    char *argv[] = { (char *)mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", (char *)prog, (char *)dir,
                     steps, every, (char *)stop_at, NULL };
    return run(argv, env);
}

static void check_exact_resume(int np) {
    char ref[512], res[512];
    fresh(ref, sizeof ref, np == 1 ? "ref1" : "ref2");
    fresh(res, sizeof res, np == 1 ? "res1" : "res2");
    ck_assert_msg(run_prog(np, ref, NULL) == 0, "uninterrupted run failed: %s", err_text);
    /* 5 steps: mid-epoch with either world size (8 or 4 batches an epoch), after a save at 3 */
    ck_assert_msg(run_prog(np, res, "5") == 0, "first half failed: %s", err_text);
    char path[600];
    snprintf(path, sizeof path, "%s/final", res);
    ck_assert_msg(access(path, F_OK) != 0, "the first half ran to the end");
    ck_assert_msg(run_prog(np, res, NULL) == 0, "resumed run failed: %s", err_text);
    assert_same_final(ref, res);
}

START_TEST(test_exact_resume_one_rank) { check_exact_resume(1); }
END_TEST

START_TEST(test_exact_resume_two_ranks) {
    if (!*mpirun) return;   /* no MPI in this build */
    check_exact_resume(2);
}
END_TEST

START_TEST(test_killed_rank_restarts) {
    if (!*mpirun) return;
    char ref[512], run1[512], run0[512];
    fresh(ref, sizeof ref, "kill_ref");
    fresh(run1, sizeof run1, "kill_restart");
    fresh(run0, sizeof run0, "kill_norestart");
    static const char *const env[] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", NULL };
    static const char *const kill_env[] = { "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                            "WF_TEST_KILL_AT_STEP=7", NULL };
    char *plain[] = { (char *)weft, "run", "--devices", "2", (char *)prog, ref, "14", "3", NULL };
    ck_assert_msg(run(plain, env) == 0, "uninterrupted weft run failed: %s", err_text);
    char *restart[] = { (char *)weft, "run", "--devices", "2", "--max-restarts", "1", (char *)prog, run1, "14", "3", NULL };
    ck_assert_msg(run(restart, kill_env) == 0, "the restarted run failed: %s", err_text);
    ck_assert_msg(strstr(err_text, "weft run: rank 1 exited with signal 9 (Killed); restarting all 2 ranks (attempt 1 of 1)"),
                  "stderr: %s", err_text);
    assert_same_final(ref, run1);
    char *norestart[] = { (char *)weft, "run", "--devices", "2", "--max-restarts", "0", (char *)prog, run0, "14", "3", NULL };
    ck_assert_int_eq(run(norestart, kill_env), 128 + 9);
    ck_assert_msg(strstr(err_text, "rank 1 was killed by signal 9") && !strstr(err_text, "restarting"), "stderr: %s",
                  err_text);
    char path[600];
    snprintf(path, sizeof path, "%s/final", run0);
    ck_assert_msg(access(path, F_OK) != 0, "a failed run wrote final parameters");
}
END_TEST

START_TEST(test_example_resume) {
    if (!*mnist) return;   /* a sanitizer build: see tests/fabric/meson.build */
    const char *data = "/usr/share/datasets/fashion-mnist";
    char probe[512];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", data);
    if (access(probe, R_OK)) {
        fprintf(stderr, "test_example_resume: skipped (no %s)\n", probe);
        return;
    }
    char a[512], b[512];
    fresh(a, sizeof a, "mnist_a");
    fresh(b, sizeof b, "mnist_b");
    static const char *const env[] = { "OMP_NUM_THREADS=1", NULL };
    /* --no-schedule: the cosine schedule's length depends on --epochs, which differs here */
    char *full[] = { (char *)mnist, "--epochs", "2", "--batch", "2000", "--no-schedule", "--device", "cpu",
                     "--data", (char *)data, "--checkpoint-dir", a, "--save-every", "7", NULL };
    ck_assert_msg(run(full, env) == 0, "uninterrupted: %s", err_text);
    char *half[] = { (char *)mnist, "--epochs", "1", "--batch", "2000", "--no-schedule", "--device", "cpu",
                     "--data", (char *)data, "--checkpoint-dir", b, "--save-every", "7", NULL };
    ck_assert_msg(run(half, env) == 0, "first epoch: %s", err_text);
    char *rest[] = { (char *)mnist, "--epochs", "2", "--batch", "2000", "--no-schedule", "--device", "cpu",
                     "--data", (char *)data, "--checkpoint-dir", b, "--save-every", "7", NULL };
    ck_assert_msg(run(rest, env) == 0, "resumed: %s", err_text);
    char pa[600], pb[600], cmd[1400];
    snprintf(pa, sizeof pa, "%s/last.ckpt", a);
    snprintf(pb, sizeof pb, "%s/last.ckpt", b);
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", pa, pb);
    ck_assert_msg(system(cmd) == 0, "%s and %s differ", pa, pb);
    char *bad[] = { (char *)mnist, "--epochs", "1", "--checkpoint-dir", b, "--save-every", "x", NULL };
    ck_assert_int_eq(run(bad, env), 2);
    ck_assert_msg(strstr(err_text, "invalid value 'x' for --save-every"), "%s", err_text);
    char *zero[] = { (char *)mnist, "--epochs", "1", "--checkpoint-dir", b, "--save-every", "0", NULL };
    ck_assert_int_eq(run(zero, env), 2);
}
END_TEST

/* ------------------------------------------------------------------ the loader's position */

static int g_made;   /* batches the counting dataset made */
static int64_t cnt_len(void *ud) { (void)ud; return 20; }
static int cnt_get(void *ud, const int64_t *idx, int64_t n, wf_tensor **out) {
    (void)ud;
    __atomic_add_fetch(&g_made, 1, __ATOMIC_SEQ_CST);
    double v[20];
    for (int64_t i = 0; i < n; i++) v[i] = (double)idx[i];
    out[0] = wf_from_data(v, WF_SHAPE(n), WF_F64);
    return out[0] ? 0 : wf_error();
}

static wf_dataloader *counting_loader(int workers) {
    wf_dataset ds = { cnt_len, 1, cnt_get, NULL, NULL };
    return wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 3, .shuffle = true, .seed = 5,
                                                         .num_workers = workers, .prefetch_factor = 1 });
}

static void first_of(wf_dataloader *dl, double *out) {
    wf_tensor *b[1];
    ck_assert_int_eq(wf_dataloader_next(dl, b), 1);
    ck_assert_int_eq(wf_to_array(b[0], out, WF_F64), 0);
    wf_tensor_free(b[0]);
}

START_TEST(test_loader_position) {
    for (int workers = 0; workers <= 2; workers += 2) {
        wf_dataloader *a = counting_loader(workers), *b = counting_loader(workers);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        uint64_t e;
        int64_t k;
        ck_assert_int_eq(wf_dataloader_position(a, &e, &k), 0);
        ck_assert(e == 0 && k == 0);
        ck_assert_int_eq(wf_dataloader_set_epoch(a, 1), 0);
        double x[3], y[3];
        for (int i = 0; i < 3; i++) first_of(a, x);
        ck_assert_int_eq(wf_dataloader_position(a, &e, &k), 0);
        ck_assert(e == 1 && k == 3);
        /* the other loader goes there without making the 3 batches */
        g_made = 0;
        ck_assert_int_eq(wf_dataloader_set_position(b, e, k), 0);
        first_of(a, x);
        first_of(b, y);
        ck_assert(!memcmp(x, y, sizeof x));
        if (!workers) ck_assert_int_eq(__atomic_load_n(&g_made, __ATOMIC_SEQ_CST), 2);   /* a's 4th and b's 4th only */
        /* the rest of the epoch, then the next epoch at 0 */
        wf_tensor *t[1];
        int r;
        while ((r = wf_dataloader_next(a, t)) == 1) wf_tensor_free(t[0]);
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(wf_dataloader_position(a, &e, &k), 0);
        ck_assert(e == 2 && k == 0);
        /* at the very end of an epoch: the next call ends it */
        ck_assert_int_eq(wf_dataloader_set_position(b, 1, wf_dataloader_len(b)), 0);
        ck_assert_int_eq(wf_dataloader_next(b, t), 0);
        wf_dataloader_free(a);
        wf_dataloader_free(b);
    }
    /* bad inputs */
    wf_dataloader *dl = counting_loader(0);
    uint64_t e;
    int64_t k;
    ck_assert_int_eq(wf_dataloader_set_position(dl, 0, -1), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "batches=-1 is not in 0..7");
    ck_assert_int_eq(wf_dataloader_set_position(dl, 0, 8), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "batches=8 is not in 0..7");
    ck_assert_int_eq(wf_dataloader_set_position(NULL, 0, 0), WF_ENULL);
    ck_assert_int_eq(wf_dataloader_position(NULL, &e, &k), WF_ENULL);
    ck_assert_int_eq(wf_dataloader_position(dl, NULL, &k), WF_ENULL);
    wf_dataloader_free(dl);
}
END_TEST

/* A loader position in a checkpoint: saved, loaded into a fresh loader, refused when damaged. */
START_TEST(test_loader_state_entry) {
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    ck_assert_ptr_nonnull(fab);
    wf_fabric_loader *a = wf_fabric_setup_dataloader(fab, counting_loader(0), NULL);
    wf_fabric_loader *b = wf_fabric_setup_dataloader(fab, counting_loader(0), NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    wf_tensor *t[1];
    ck_assert_int_eq(wf_fabric_loader_set_epoch(a, 4), 0);
    for (int i = 0; i < 2; i++) {
        wf_scope_begin();
        ck_assert_int_eq(wf_fabric_loader_next(a, t), 1);
        wf_scope_end();
    }
    char path[400];
    snprintf(path, sizeof path, "%s/loader.ckpt", tmp);
    wf_fabric_state *sa = wf_fabric_state_new(), *sb = wf_fabric_state_new();
    ck_assert_int_eq(wf_fabric_state_add_loader(sa, "loader", a), 0);
    ck_assert_int_eq(wf_fabric_state_add_loader(sb, "loader", b), 0);
    ck_assert_int_eq(wf_fabric_state_add_loader(sb, "loader", b), WF_EINVAL);   /* names are unique */
    ck_assert_int_eq(wf_fabric_save(fab, path, sa, NULL), 0);
    wf_fabric_state *rest = wf_fabric_load(fab, path, sb, true);
    ck_assert_ptr_nonnull(rest);
    ck_assert_int_eq(wf_fabric_state_count(rest), 0);
    wf_fabric_state_free(rest);
    uint64_t e;
    int64_t k;
    ck_assert_int_eq(wf_dataloader_position(wf_fabric_loader_inner(b), &e, &k), 0);
    ck_assert(e == 4 && k == 2);
    /* not requested: the remainder holds its JSON */
    wf_fabric_state *none = wf_fabric_state_new();
    rest = wf_fabric_load(fab, path, none, false);
    ck_assert_ptr_nonnull(rest);
    ck_assert_ptr_nonnull(wf_fabric_state_get_json(rest, "loader"));
    ck_assert_msg(strstr(wf_fabric_state_get_json(rest, "loader"), "\"batches\":2"), "%s",
                  wf_fabric_state_get_json(rest, "loader"));
    wf_fabric_state_free(rest);
    wf_fabric_state_free(none);
    /* an int entry of the same name is not a loader */
    int64_t v = 3;
    wf_fabric_state *si = wf_fabric_state_new();
    ck_assert_int_eq(wf_fabric_state_add_int(si, "loader", &v), 0);
    ck_assert_int_eq(wf_fabric_save(fab, path, si, NULL), 0);
    ck_assert_ptr_null(wf_fabric_load(fab, path, sb, true));
    ck_assert_error(WF_EINVAL, "holds a int, the state asks for a loader");
    wf_fabric_state_free(si);
    ck_assert_int_eq(wf_fabric_state_add_loader(NULL, "x", a), WF_ENULL);
    wf_clear_error();
    unlink(path);
    wf_fabric_state_free(sa);
    wf_fabric_state_free(sb);
    wf_fabric_loader_free(a);
    wf_fabric_loader_free(b);
    wf_fabric_free(fab);
}
END_TEST

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s RESTART_PROG WEFT MPIRUN|\"\" FABRIC_MNIST\n", argv[0]);
        return 2;
    }
    prog = argv[1];
    weft = argv[2];
    mpirun = argv[3];
    mnist = argv[4];
    snprintf(tmp, sizeof tmp, "/tmp/weft-restart-test-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    Suite *s = suite_create("fabric_restart");
    TCase *tc = tcase_create("restart");
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, test_loader_position);
    tcase_add_test(tc, test_loader_state_entry);
    tcase_add_test(tc, test_exact_resume_one_rank);
    tcase_add_test(tc, test_exact_resume_two_ranks);
    tcase_add_test(tc, test_killed_rank_restarts);
    tcase_add_test(tc, test_example_resume);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
