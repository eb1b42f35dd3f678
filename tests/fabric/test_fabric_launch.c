/* tests/fabric/test_fabric_launch.c: launching a Fabric program.
 *  - wf_fabric_launch from a plain process with devices=2 re-executes the program as two
 *    ranks (through mpirun) and exits with the job's status;
 *  - a rank that returns 3 makes the job exit 3, naming rank 1 on stderr;
 *  - `weft run --accelerator cpu --devices 2 PROGRAM` starts the ranks itself, and the
 *    program's Fabric sets up the process group without wf_fabric_launch;
 *  - examples/fabric_mnist under `weft run` on 2 ranks (batch 32 each) reaches the accuracy of
 *    one process (batch 64) within 0.5 points (skipped without the Fashion-MNIST files).
 * argv: launch_prog, weft, fabric_mnist. */
#include "test_util.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prog, *weft, *mnist;
static char dir[256];

/* Run argv with stdout and stderr to DIR/stdout, DIR/stderr; bounded to 90 s. Returns the exit
 * status (128+sig). */
static int run(char *const argv[]) {
    char errpath[600], outpath[600];
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    snprintf(outpath, sizeof outpath, "%s/stdout", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        FILE *o = freopen(outpath, "w", stdout);
        (void)e; (void)o;
        unsetenv("WF_CLI_USED");
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 900; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    ck_abort_msg("%s did not finish within 90 s", argv[0]);
    return -1;
}

static void read_file(const char *name, char *buf, size_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
}

static void fresh_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/weft_launch_test_%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_launch_reexecutes) {
    fresh_dir();
    char *argv[] = { (char *)prog, "ok", dir, NULL };
    ck_assert_int_eq(run(argv), 0);
    char b[256];
    read_file("rank0", b, sizeof b);
    ck_assert_str_eq(b, "3 2 ddp\n");   /* 1 + 2 over both ranks, world size 2 */
    read_file("rank1", b, sizeof b);
    ck_assert_str_eq(b, "3 2 ddp\n");
}
END_TEST

START_TEST(test_launch_failing_rank) {
    fresh_dir();
    char *argv[] = { (char *)prog, "fail1", dir, NULL };
    ck_assert_int_eq(run(argv), 3);
    char b[4096];
    read_file("stderr", b, sizeof b);
    ck_assert_msg(strstr(b, "rank 1") && strstr(b, "status 3"), "stderr does not name rank 1 and its status: %s", b);
}
END_TEST

START_TEST(test_weft_run) {
    fresh_dir();
    char *argv[] = { (char *)weft, "run", "--accelerator", "cpu", "--devices", "2", (char *)prog, "cli", dir, NULL };
    ck_assert_int_eq(run(argv), 0);
    char b[256];
    read_file("rank0", b, sizeof b);
    ck_assert_str_eq(b, "3 2 ddp\n");
    read_file("rank1", b, sizeof b);
    ck_assert_str_eq(b, "3 2 ddp\n");
    /* a program that calls wf_fabric_launch under `weft run` fails clearly */
    fresh_dir();
    char *argv2[] = { (char *)weft, "run", "--accelerator=cpu", "--devices=2", (char *)prog, "ok", dir, NULL };
    ck_assert_int_ne(run(argv2), 0);
    read_file("stderr", b, sizeof b);
    ck_assert_msg(strstr(b, "weft run"), "stderr: %s", b);
}
END_TEST

/* the "test_acc" of the example's last JSON line in DIR/stdout, or -1 */
static double test_acc(void) {
    char b[8192];
    read_file("stdout", b, sizeof b);
    const char *p = strstr(b, "\"test_acc\":");
    return p ? atof(p + 11) : -1;
}

START_TEST(test_fabric_mnist_two_ranks) {
    const char *data = "/usr/share/datasets/fashion-mnist";
    char probe[512];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", data);
    if (access(probe, R_OK)) {
        fprintf(stderr, "test_fabric_mnist_two_ranks: skipped (no %s)\n", probe);
        return;
    }
    fresh_dir();
    char *one[] = { (char *)mnist, "--model", "mlp", "--epochs", "1", "--batch", "64", "--data", (char *)data, NULL };
    ck_assert_int_eq(run(one), 0);
    double a1 = test_acc();
    char *two[] = { (char *)weft, "run", "--accelerator", "cpu", "--devices", "2", (char *)mnist, "--model", "mlp",
                    "--epochs", "1", "--batch", "32", "--data", (char *)data, NULL };
    ck_assert_int_eq(run(two), 0);
    double a2 = test_acc();
    fprintf(stderr, "fabric_mnist test accuracy: one process %.4f, two ranks %.4f\n", a1, a2);
    ck_assert(a1 > 0.8 && a2 > 0.8);
    ck_assert_msg(fabs(a1 - a2) <= 0.005, "one process %.4f vs two ranks %.4f", a1, a2);
}
END_TEST

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: test_fabric_launch LAUNCH_PROG WEFT FABRIC_MNIST\n"); return 2; }
    prog = argv[1];
    weft = argv[2];
    mnist = argv[3];
    Suite *s = suite_create("fabric_launch");
    TCase *tc = tcase_create("fabric_launch");
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, test_launch_reexecutes);
    tcase_add_test(tc, test_launch_failing_rank);
    tcase_add_test(tc, test_weft_run);
    tcase_add_test(tc, test_fabric_mnist_two_ranks);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    if (dir[0]) { char cmd[600]; snprintf(cmd, sizeof cmd, "rm -rf %s", dir); if (system(cmd)) {} }
    return rc;
}
