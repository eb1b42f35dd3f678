/* tests/dist/test_launch.c: the launcher (direct and through mpirun) and `weft run`.
 *
 *     dist_test_launch LAUNCH_CHILD WEFT
 *
 * LAUNCH_CHILD is tests/dist/launch_child.c (its modes are described there). A failing rank
 * must stop the others (which would sleep 60 s) and be named with its status or signal; the
 * wall-time bounds below only say "it did not wait for the sleepers", they are not timings. */
#include "test_util.h"

#include "weft/dist.h"
#include "weft_config.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *child_exe, *weft_exe;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void clean_env(void) {
    const char *vars[] = { "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "WF_LAUNCH_RANK",
                           "WF_LAUNCH_WORLD_SIZE", "WF_LAUNCH_STATUS_DIR", "WF_LAUNCH_SUPERVISED", "SLURM_NTASKS",
                           "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "WF_DEVICES", "WF_CLI_USED" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

/* Run the child as nprocs ranks; returns the status, *report and *secs. */
static int g_max_restarts;   /* for launch(): wf_launch_opts.max_restarts */

static int launch(const char *mode, const char *dir, int nprocs, bool mpirun, double grace, char **report,
                  double *secs) {
    clean_env();
    const char *argv[] = { child_exe, mode, dir, NULL };
    wf_launch_opts o = { .nprocs = nprocs, .use_mpirun = mpirun, .grace_s = grace, .max_restarts = g_max_restarts };
    double t0 = now_s();
    int rc = wf_launch_processes(argv, &o, report);
    *secs = now_s() - t0;
    return rc;
}

static void check_failure(const char *mode, bool mpirun, double grace, int want, const char *text) {
    char *report = NULL;
    double secs;
    int rc = launch(mode, NULL, 3, mpirun, grace, &report, &secs);
    ck_assert_msg(rc == want, "%s: status %d, expected %d (%s)", mode, rc, want, rc < 0 ? wf_error_message() : "");
    ck_assert_ptr_nonnull(report);
    ck_assert_msg(strstr(report, text), "report \"%s\" does not say \"%s\"", report, text);
    ck_assert_msg(strstr(report, "stopped the other ranks"), "report \"%s\"", report);
    ck_assert_msg(secs < 15, "%s took %.1f s: the other ranks were not stopped", mode, secs);
    free(report);
}

static char tmpdir[256];

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 8192);
    size_t n = fread(buf, 1, 8191, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* The value of NAME= in a rank's file (static buffer). */
static const char *field(const char *text, const char *name) {
    static char out[256];
    char key[64];
    snprintf(key, sizeof key, "%s=", name);
    const char *p = text;
    while (p && *p) {
        if (!strncmp(p, key, strlen(key))) {
            const char *v = p + strlen(key), *e = strchr(v, '\n');
            snprintf(out, sizeof out, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return out;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return "(missing)";
}

static char *rank_file(const char *dir, int r) {
    char path[512];
    snprintf(path, sizeof path, "%s/rank%d", dir, r);
    char *t = read_file(path);
    ck_assert_msg(t != NULL, "rank %d wrote no %s", r, path);
    return t;
}

static void fresh_dir(char *dir, size_t n, const char *tag) {
    snprintf(dir, n, "%s/%s", tmpdir, tag);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
}

/* ------------------------------------------------------------------ direct mode */

START_TEST(test_direct_exit_3) { check_failure("fail", false, 0, 3, "rank 1 exited with status 3"); }
END_TEST

START_TEST(test_direct_sigkill) { check_failure("kill", false, 0, 128 + 9, "rank 1 was killed by signal 9"); }
END_TEST

START_TEST(test_direct_stubborn_needs_sigkill) {
    /* the others ignore SIGTERM: the grace period ends with SIGKILL */
    char *report = NULL;
    double secs;
    int rc = launch("stubborn", NULL, 3, false, 0.5, &report, &secs);
    ck_assert_int_eq(rc, 3);
    ck_assert_ptr_nonnull(report);
    ck_assert_msg(strstr(report, "rank 1 exited with status 3"), "%s", report);
    ck_assert_msg(secs < 10, "took %.1f s", secs);
    free(report);
}
END_TEST

START_TEST(test_direct_all_succeed) {
    char *report = (char *)"sentinel";
    double secs;
    ck_assert_int_eq(launch("ok", NULL, 3, false, 0, &report, &secs), 0);
    ck_assert_ptr_null(report);
}
END_TEST

START_TEST(test_direct_environment) {
    char dir[512];
    fresh_dir(dir, sizeof dir, "direct_env");
    clean_env();
    unsetenv("OMP_NUM_THREADS");
    const char *argv[] = { child_exe, "ok", dir, NULL };
    const char *extra[] = { "WF_TEST_EXTRA=hello", NULL };
    wf_launch_opts o = { .nprocs = 3, .env = extra };
    char *report = NULL;
    ck_assert_int_eq(wf_launch_processes(argv, &o, &report), 0);
    ck_assert_ptr_null(report);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char omp[32];
    snprintf(omp, sizeof omp, "%ld", cores / 3 > 1 ? cores / 3 : 1);
    char port[32] = "";
    for (int r = 0; r < 3; r++) {
        char *t = rank_file(dir, r);
        char want[64];
        snprintf(want, sizeof want, "%d", r);
        ck_assert_str_eq(field(t, "RANK"), want);
        ck_assert_str_eq(field(t, "LOCAL_RANK"), want);
        ck_assert_str_eq(field(t, "WF_LAUNCH_RANK"), want);
        ck_assert_str_eq(field(t, "WORLD_SIZE"), "3");
        ck_assert_str_eq(field(t, "LOCAL_WORLD_SIZE"), "3");
        ck_assert_str_eq(field(t, "GROUP_RANK"), "0");
        ck_assert_str_eq(field(t, "MASTER_ADDR"), "127.0.0.1");
        ck_assert_str_eq(field(t, "OMP_NUM_THREADS"), omp);
        ck_assert_str_eq(field(t, "WF_TEST_EXTRA"), "hello");
        if (!r) snprintf(port, sizeof port, "%s", field(t, "MASTER_PORT"));
        ck_assert_str_eq(field(t, "MASTER_PORT"), port);   /* one port for all */
        ck_assert_int_gt(atoi(port), 0);
        char det[128];
        snprintf(det, sizeof det, "weft 3 %d %d 0 %s", r, r, port);
        ck_assert_str_eq(field(t, "detect"), det);
        free(t);
    }
    /* an OMP_NUM_THREADS the user set is kept; a port given is used */
    setenv("OMP_NUM_THREADS", "7", 1);
    o.main_port = atoi(port);
    ck_assert_int_eq(wf_launch_processes(argv, &o, &report), 0);
    char *t = rank_file(dir, 2);
    ck_assert_str_eq(field(t, "OMP_NUM_THREADS"), "7");
    ck_assert_str_eq(field(t, "MASTER_PORT"), port);
    free(t);
}
END_TEST

START_TEST(test_bad_input) {
    char *report = (char *)"sentinel";
    const char *missing[] = { "/nonexistent/weft-prog", NULL };
    wf_launch_opts o = { .nprocs = 2 };
    double t0 = now_s();
    ck_assert_int_eq(wf_launch_processes(missing, &o, &report), WF_ENOTFOUND);
    ck_assert_error(WF_ENOTFOUND, "\"/nonexistent/weft-prog\" was not found");
    ck_assert_ptr_null(report);
    const char *missing2[] = { "weft-no-such-program-xyz", NULL };
    ck_assert_int_eq(wf_launch_processes(missing2, &o, NULL), WF_ENOTFOUND);
    ck_assert_error(WF_ENOTFOUND, "\"weft-no-such-program-xyz\" was not found on PATH");
    ck_assert(now_s() - t0 < 5);
    const char *argv[] = { child_exe, "ok", NULL };
    o.nprocs = 0;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "nprocs=0");
    o.nprocs = 2;
    o.num_nodes = 2;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "needs main_port");
    o.main_port = 29400;
    o.node_rank = 2;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "node_rank=2 is not in 0..1");
    o.node_rank = 0;
    o.num_nodes = 0;
    o.main_port = 70000;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "main_port=70000");
    o.main_port = 0;
    const char *bad_env[] = { "NOEQUALS", NULL };
    o.env = bad_env;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "\"NOEQUALS\" is not NAME=value");
    o.env = NULL;
    ck_assert_int_eq(wf_launch_processes(NULL, &o, NULL), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_launch_processes(argv, NULL, NULL), WF_ENULL);
    wf_clear_error();
    /* wf_launch_rank_begin outside an mpirun launch is a no-op */
    clean_env();
    ck_assert_int_eq(wf_launch_rank_begin(), 0);
    ck_assert(!wf_launched());
}
END_TEST

/* --max-restarts: a rank that fails on the first start only; the restarted world succeeds and
 * its ranks see the attempt number. Also the line printed for the restart is not checked here
 * (stderr of this process); `weft run` below checks it. */
static void check_restarts(bool mpirun) {
    char dir[512];
    fresh_dir(dir, sizeof dir, mpirun ? "restart_mpirun" : "restart_direct");
    char *report = (char *)"sentinel";
    double secs;
    g_max_restarts = 2;
    int rc = launch("flaky", dir, 3, mpirun, 0, &report, &secs);
    g_max_restarts = 0;
    ck_assert_msg(rc == 0, "status %d (%s)", rc, report ? report : (rc < 0 ? wf_error_message() : ""));
    ck_assert_ptr_null(report);
    ck_assert_msg(secs < 30, "the restart took %.1f s: the other ranks were not stopped", secs);
    for (int r = 0; r < 3; r++) {
        char *t = rank_file(dir, r);   /* written again by the restarted world */
        ck_assert_str_eq(field(t, "WF_RESTART_COUNT"), "1");
        ck_assert_str_eq(field(t, "TORCHELASTIC_RESTART_COUNT"), "1");
        ck_assert_str_eq(field(t, "TORCHELASTIC_MAX_RESTARTS"), "2");
        free(t);
    }
    /* restarts used up: the last failure is the result, and the report says so */
    g_max_restarts = 1;
    rc = launch("fail", NULL, 2, mpirun, 0, &report, &secs);
    g_max_restarts = 0;
    ck_assert_int_eq(rc, 3);
    ck_assert_ptr_nonnull(report);
    ck_assert_msg(strstr(report, "rank 1 exited with status 3") && strstr(report, "(after 1 restart)"),
                  "report \"%s\"", report);
    free(report);
}

START_TEST(test_direct_restarts) { check_restarts(false); }
END_TEST

START_TEST(test_bad_max_restarts) {
    const char *argv[] = { child_exe, "ok", NULL };
    wf_launch_opts o = { .nprocs = 2, .max_restarts = -1 };
    char *report = (char *)"sentinel";
    ck_assert_int_eq(wf_launch_processes(argv, &o, &report), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "max_restarts=-1");
    ck_assert_ptr_null(report);
    o.max_restarts = 1;
    o.num_nodes = 2;
    o.main_port = 29400;
    ck_assert_int_eq(wf_launch_processes(argv, &o, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "max_restarts=1 with num_nodes=2");
}
END_TEST

/* ------------------------------------------------------------------ through mpirun */

static bool have_mpirun(void) {
#ifdef WEFT_HAVE_MPI
    return access("/usr/bin/mpirun", X_OK) == 0 || system("command -v mpirun >/dev/null 2>&1") == 0;
#else
    return false;
#endif
}

START_TEST(test_mpirun_failures) {
    if (!have_mpirun()) return;   /* this build has no MPI: ranks are never started through mpirun */
    check_failure("fail", true, 0, 3, "rank 1 exited with status 3");
    check_failure("kill", true, 0, 128 + 9, "rank 1 was killed by signal 9");
    check_failure("stubborn", true, 0.5, 3, "rank 1 exited with status 3");
}
END_TEST

START_TEST(test_mpirun_restarts) {
    if (!have_mpirun()) return;
    check_restarts(true);
}
END_TEST

START_TEST(test_mpirun_success_and_environment) {
    if (!have_mpirun()) return;
    char dir[512];
    fresh_dir(dir, sizeof dir, "mpirun_env");
    char *report = (char *)"sentinel";
    double secs;
    ck_assert_int_eq(launch("ok", dir, 2, true, 0, &report, &secs), 0);
    ck_assert_ptr_null(report);
    for (int r = 0; r < 2; r++) {
        char *t = rank_file(dir, r);
        char want[32];
        snprintf(want, sizeof want, "%d", r);
        ck_assert_str_eq(field(t, "OMPI_COMM_WORLD_RANK"), want);
        ck_assert_str_eq(field(t, "RANK"), "(unset)");
        ck_assert_int_gt(atoi(field(t, "MASTER_PORT")), 0);
        ck_assert_msg(!strncmp(field(t, "detect"), "mpi 2 ", 6), "rank %d: %s", r, field(t, "detect"));
        free(t);
    }
}
END_TEST

/* ------------------------------------------------------------------ wf_launch_self */

/* Run the child program itself (no launcher around it); its exit status. */
static int run_child(const char *mode) {
    clean_env();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(child_exe, child_exe, mode, (char *)NULL);
        _exit(126);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

START_TEST(test_launch_self) {
    double t0 = now_s();
    ck_assert_int_eq(run_child("self-ok"), 0);
    ck_assert_int_eq(run_child("self-fail"), 3);
    ck_assert_int_eq(run_child("self-kill"), 128 + 9);
    ck_assert_msg(now_s() - t0 < 30, "the other ranks were not stopped");
}
END_TEST

START_TEST(test_launch_self_mpirun) {
    if (!have_mpirun()) return;
    ck_assert_int_eq(run_child("mpi-self-ok"), 0);
    ck_assert_int_eq(run_child("mpi-self-fail"), 3);
}
END_TEST

/* ------------------------------------------------------------------ weft run */

/* Run `weft ARGS...` and return its exit status (128+signal when killed). */
static int run_weft(const char *const *args) {
    clean_env();
    const char *argv[32] = { weft_exe };
    int n = 1;
    for (; args[n - 1]; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execv(weft_exe, (char *const *)argv);
        _exit(126);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* run_weft with stderr to a file whose text goes to err (n bytes) */
static int run_weft_err(const char *const *args, char *err, size_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/weft_stderr", tmpdir);
    fflush(NULL);
    int saved = dup(2);
    FILE *f = freopen(path, "w", stderr);
    ck_assert_ptr_nonnull(f);
    int rc = run_weft(args);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *t = read_file(path);
    snprintf(err, n, "%s", t ? t : "");
    free(t);
    return rc;
}

START_TEST(test_weft_run_max_restarts) {
    char dir[512], err[8192];
    fresh_dir(dir, sizeof dir, "weft_run_restarts");
    const char *flaky[] = { "run", "--devices", "2", "--max-restarts", "3", child_exe, "flaky", dir, NULL };
    ck_assert_int_eq(run_weft_err(flaky, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "weft run: rank 1 exited with status 3; restarting all 2 ranks (attempt 1 of 3)"),
                  "stderr: %s", err);
    ck_assert_msg(!strstr(err, "attempt 2"), "restarted twice: %s", err);
    char *t = rank_file(dir, 1);
    ck_assert_str_eq(field(t, "WF_RESTART_COUNT"), "1");
    free(t);
    /* without restarts the same program fails, naming the rank */
    const char *once[] = { "run", "--devices=2", "--max-restarts=0", child_exe, "flaky", dir, NULL };
    ck_assert_int_eq(run_weft_err(once, err, sizeof err), 3);
    ck_assert_msg(strstr(err, "rank 1 exited with status 3") && !strstr(err, "restarting"), "stderr: %s", err);
    /* one process with restarts: launched (not exec'ed), so it can be started again */
    const char *one[] = { "run", "--max-restarts", "1", child_exe, "ok", dir, NULL };
    ck_assert_int_eq(run_weft_err(one, err, sizeof err), 0);
    t = rank_file(dir, 0);
    ck_assert_str_eq(field(t, "WF_RESTART_COUNT"), "0");
    free(t);
    /* bad values are refused before anything starts */
    const char *neg[] = { "run", "--max-restarts", "-1", child_exe, "ok", NULL };
    ck_assert_int_eq(run_weft_err(neg, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--max-restarts=-1: expected a count"), "stderr: %s", err);
    const char *word[] = { "run", "--max-restarts=x", child_exe, "ok", NULL };
    ck_assert_int_eq(run_weft_err(word, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--max-restarts=x: expected a count"), "stderr: %s", err);
    const char *missing[] = { "run", "--max-restarts", NULL };
    ck_assert_int_eq(run_weft_err(missing, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "option --max-restarts needs a value"), "stderr: %s", err);
    const char *empty[] = { "run", "--max-restarts=", child_exe, "ok", NULL };
    ck_assert_int_eq(run_weft_err(empty, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "--max-restarts= has an empty value"), "stderr: %s", err);
    const char *nodes[] = { "run", "--max-restarts", "1", "--num-nodes", "2", child_exe, "ok", NULL };
    ck_assert_int_eq(run_weft_err(nodes, err, sizeof err), 2);
    ck_assert_msg(strstr(err, "restarts need --num-nodes 1"), "stderr: %s", err);
}
END_TEST

START_TEST(test_weft_run) {
    char dir[512];
    fresh_dir(dir, sizeof dir, "weft_run");
    const char *ok[] = { "run", "--accelerator", "cpu", "--devices", "2", child_exe, "ok", dir, NULL };
    ck_assert_int_eq(run_weft(ok), 0);
    for (int r = 0; r < 2; r++) {
        char *t = rank_file(dir, r);
        char det[32];
        snprintf(det, sizeof det, " 2 %d ", r);
        ck_assert_str_eq(field(t, "WF_DEVICES"), "2");
        ck_assert_str_eq(field(t, "WF_ACCELERATOR"), "cpu");
        ck_assert_str_eq(field(t, "WF_CLI_USED"), "1");
        ck_assert_msg(strstr(field(t, "detect"), det), "rank %d: %s", r, field(t, "detect"));
        free(t);
    }
    /* --flag=value; a failing rank's status is weft's */
    double t0 = now_s();
    const char *fail[] = { "run", "--accelerator=cpu", "--devices=3", child_exe, "fail", NULL };
    ck_assert_int_eq(run_weft(fail), 3);
    ck_assert_msg(now_s() - t0 < 20, "weft run did not stop the other ranks");
    /* one process: the program itself */
    const char *one[] = { "run", "--strategy", "ddp", child_exe, "ok", dir, NULL };
    ck_assert_int_eq(run_weft(one), 0);
    char *t = rank_file(dir, 0);
    ck_assert_str_eq(field(t, "WF_DEVICES"), "1");
    ck_assert_str_eq(field(t, "WF_LAUNCH_RANK"), "(unset)");
    ck_assert_msg(!strncmp(field(t, "detect"), "local 1 0", 9), "%s", field(t, "detect"));
    free(t);
}
END_TEST

/* SIGTERM to `weft run` (a scheduler ending the job) stops every rank: 128+15, in seconds. */
START_TEST(test_weft_run_interrupted) {
    clean_env();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    char err[512];
    snprintf(err, sizeof err, "%s/interrupted.err", tmpdir);
    if (pid == 0) {
        if (!freopen(err, "w", stderr)) _exit(125);
        execl(weft_exe, weft_exe, "run", "--devices", "2", child_exe, "sleep", (char *)NULL);
        _exit(126);
    }
    struct timespec wait = { 1, 0 };
    nanosleep(&wait, NULL);
    double t0 = now_s();
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 128 + SIGTERM);
    ck_assert_msg(now_s() - t0 < 15, "took %.1f s", now_s() - t0);
    /* the ranks died of our SIGTERM: that is the interruption, not a rank's failure */
    char *text = read_file(err);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "weft: interrupted by signal 15"), "stderr: %s", text);
    free(text);
}
END_TEST

START_TEST(test_weft_usage) {
    const char *bogus[] = { "run", "--bogus", child_exe, NULL };
    ck_assert_int_eq(run_weft(bogus), 2);
    const char *no_prog[] = { "run", "--devices", "2", NULL };
    ck_assert_int_eq(run_weft(no_prog), 2);
    const char *no_value[] = { "run", "--devices", NULL };
    ck_assert_int_eq(run_weft(no_value), 2);
    const char *bad_dev[] = { "run", "--devices", "zero", child_exe, NULL };
    ck_assert_int_eq(run_weft(bad_dev), 2);
    const char *bad_acc[] = { "run", "--accelerator", "abacus", child_exe, NULL };
    ck_assert_int_eq(run_weft(bad_acc), 2);
    const char *bad_node[] = { "run", "--num-nodes", "2", "--node-rank", "2", child_exe, NULL };
    ck_assert_int_eq(run_weft(bad_node), 2);
    const char *unknown_cmd[] = { "fly", NULL };
    ck_assert_int_eq(run_weft(unknown_cmd), 2);
    const char *help[] = { "--help", NULL };
    ck_assert_int_eq(run_weft(help), 0);
    const char *run_help[] = { "run", "--help", NULL };
    ck_assert_int_eq(run_weft(run_help), 0);
    /* this machine's GPUs (none in a CPU-only build) bound the cuda device requests */
    int gpus = wf_cuda_device_count();
    char too_many[16], bad_index[32];
    snprintf(too_many, sizeof too_many, "%d", gpus + 1);
    snprintf(bad_index, sizeof bad_index, "0,%d", gpus);
    const char *gpu_count[] = { "run", "--accelerator", "cuda", "--devices", too_many, child_exe, NULL };
    ck_assert_int_eq(run_weft(gpu_count), 2);
    const char *gpu_list[] = { "run", "--accelerator", "gpu", "--devices", bad_index, child_exe, NULL };
    ck_assert_int_eq(run_weft(gpu_list), 2);
    const char *gpu_list_bad[] = { "run", "--accelerator", "cuda", "--devices", "0,x", child_exe, NULL };
    ck_assert_int_eq(run_weft(gpu_list_bad), 2);
    const char *missing[] = { "run", "--devices", "2", "/nonexistent/weft-prog", NULL };
    ck_assert_int_eq(run_weft(missing), 127);
}
END_TEST

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LAUNCH_CHILD WEFT\n", argv[0]);
        return 2;
    }
    child_exe = argv[1];
    weft_exe = argv[2];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-launch-test-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    Suite *s = suite_create("dist_launch");
    /* two cases, run as two meson tests (CK_RUN_CASE) to keep each short: the direct launcher,
     * and everything that goes through mpirun or the weft program */
    TCase *tc = tcase_create("direct");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_direct_exit_3);
    tcase_add_test(tc, test_direct_sigkill);
    tcase_add_test(tc, test_direct_stubborn_needs_sigkill);
    tcase_add_test(tc, test_direct_all_succeed);
    tcase_add_test(tc, test_direct_environment);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_launch_self);
    tcase_add_test(tc, test_direct_restarts);
    tcase_add_test(tc, test_bad_max_restarts);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("mpirun_and_cli");
    tcase_set_timeout(tm, 60);
    tcase_add_test(tm, test_mpirun_failures);
    tcase_add_test(tm, test_mpirun_success_and_environment);
    tcase_add_test(tm, test_launch_self_mpirun);
    tcase_add_test(tm, test_weft_run);
    tcase_add_test(tm, test_weft_run_interrupted);
    tcase_add_test(tm, test_weft_usage);
    tcase_add_test(tm, test_mpirun_restarts);
    tcase_add_test(tm, test_weft_run_max_restarts);
    suite_add_tcase(s, tm);
    int rc = tt_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
