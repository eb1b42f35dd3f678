/* tests/io/test_atomic_file.c: nothing lost. Saves killed (SIGKILL) at random moments leave
 * the previous or the new file at the path and at most one temporary file, which the next
 * save removes; a file-size limit (RLIMIT_FSIZE, SIGXFSZ at its default action), a full disk
 * and short writes: an error naming the path and the previous file intact; a save already
 * in progress on the same path, and a leftover temporary file. */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "weft/io.h"

static void setup(void) { tt_dir_make("atomic"); }
static void teardown(void) {
    wf__atomic_pwrite_fn = pwrite;
    tt_dir_remove();
}

/* Names in the scratch directory other than . and .. (up to 8, into names[]); returns how many. */
static int dir_list(char names[8][64]) {
    DIR *d = opendir(tt_dir());
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            if (n < 8) snprintf(names[n], 64, "%.63s", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/* Save a tensor of n doubles, all v, and metadata "v" = v. */
static int save_v(const char *path, double v, int64_t n) {
    wf_tensor *t = wf_full(WF_SHAPE(n), v, WF_F64);
    wf_st_writer *w = wf_st_writer_new();
    char s[32];
    snprintf(s, sizeof s, "%.17g", v);
    int rc = wf_st_writer_add(w, "v", t);
    if (!rc) rc = wf_st_writer_set_metadata(w, "v", s);
    if (!rc) rc = wf_st_writer_save(w, path);
    wf_st_writer_free(w);
    wf_tensor_free(t);
    return rc;
}

/* Load the file (sealed, verified) and return v; asserts the tensor agrees with the metadata. */
static double load_v(const char *path) {
    wf_st_file *f = wf_st_open(path);
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert(wf_st_is_sealed(f));
    ck_assert_msg(wf_st_verify(f) == 0, "%s", wf_error_message());
    wf_tensor *t = wf_st_load(f, "v");
    ck_assert_msg(t, "%s", wf_error_message());
    double first, last;
    int64_t n = wf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)n);
    ck_assert_int_eq(wf_to_array(t, v, WF_F64), 0);
    first = v[0];
    last = v[n - 1];
    free(v);
    ck_assert(first == last);
    ck_assert(first == strtod(wf_st_metadata(f, "v"), NULL));
    wf_tensor_free(t);
    wf_st_close(f);
    return first;
}

/* ---------------------------------------------------------------- kill -9 */

START_TEST(test_kill_during_saves) {
    const char *p = tt_path("ckpt.safetensors");
    ck_assert_int_eq(save_v(p, 0, 1000), 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    int left_tmp = 0;
    double last = 0;
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            /* 240 to 480 KB per save, sizes varying so a mix of old and new bytes would show */
            for (int i = 1;; i++)
                if (save_v(tt_path("ckpt.safetensors"), round * 100000 + i, 30000 + (i % 7) * 5000)) _exit(3);
        }
        struct timespec ts = { 0, (long)(rand() % 20000) * 1000 };   /* up to 20 ms */
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "seed %u round %d: the child failed (%d)",
                      seed, round, status);
        /* the path always loads, whole */
        last = load_v(p);
        char names[8][64];
        int n = dir_list(names);
        ck_assert_msg(n <= 2, "seed %u round %d: %d files left", seed, round, n);
        for (int i = 0; i < n && i < 8; i++)
            ck_assert_msg(!strcmp(names[i], "ckpt.safetensors") || !strcmp(names[i], "ckpt.safetensors.tmp"),
                          "seed %u: unexpected file %s", seed, names[i]);
        left_tmp += n == 2;
    }
    /* the next save reuses the temporary file and leaves only the checkpoint */
    ck_assert_int_eq(save_v(p, -1, 100), 0);
    char names[8][64];
    ck_assert_int_eq(dir_list(names), 1);
    ck_assert(load_v(p) == -1);
    fprintf(stderr, "test_kill_during_saves: seed %u, 20 kills, %d left a temporary file, last value %.0f\n", seed,
            left_tmp, last);
}
END_TEST

/* ---------------------------------------------------------------- file-size limit */

/* In a child: the default SIGXFSZ action, a 64 KiB limit, a 800 KB save over the file. */
static int fsize_child(const char *p, bool pre_pending) {
    struct sigaction sa;
    sigaction(SIGXFSZ, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) return 10;
    sigset_t set, mask0, mask1, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGXFSZ);
    if (pre_pending) {   /* the caller blocked SIGXFSZ and has one pending: it must stay */
        sigprocmask(SIG_BLOCK, &set, NULL);
        raise(SIGXFSZ);
    }
    sigprocmask(SIG_BLOCK, NULL, &mask0);
    struct rlimit lim = { 65536, 65536 };
    if (setrlimit(RLIMIT_FSIZE, &lim)) return 11;
    int rc = save_v(p, 2, 100000);
    if (rc != WF_EIO) return 12;
    const char *msg = wf_error_message();
    if (!strstr(msg, p) || !strstr(msg, strerror(EFBIG)) || !strstr(msg, "RLIMIT_FSIZE")) {
        fprintf(stderr, "message: %s\n", msg);
        return 13;
    }
    sigprocmask(SIG_BLOCK, NULL, &mask1);
    if (sigismember(&mask0, SIGXFSZ) != sigismember(&mask1, SIGXFSZ)) return 14;   /* mask restored */
    sigaction(SIGXFSZ, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) return 15;                                          /* disposition kept */
    sigpending(&pend);
    if (sigismember(&pend, SIGXFSZ) != (pre_pending ? 1 : 0)) return 16;              /* ours consumed, theirs kept */
    /* a small save still fits under the limit */
    if (save_v(p, 3, 100)) return 17;
    return 0;
}

START_TEST(test_file_size_limit) {
    const char *p = tt_path("ckpt.safetensors");
    for (int pre = 0; pre < 2; pre++) {
        ck_assert_int_eq(save_v(p, 1, 1000), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            signal(SIGXFSZ, SIG_DFL);
            _exit(fsize_child(p, pre));
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(!WIFSIGNALED(status), "the child was killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child check %d failed", WEXITSTATUS(status));
        ck_assert(load_v(p) == 3);
        char names[8][64];
        ck_assert_int_eq(dir_list(names), 1);
    }
    /* and the failure alone (no later save): the previous file intact, nothing left */
    ck_assert_int_eq(save_v(p, 1, 1000), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit lim = { 65536, 65536 };
        setrlimit(RLIMIT_FSIZE, &lim);
        _exit(save_v(p, 2, 100000) == WF_EIO ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert(load_v(p) == 1);
    char names[8][64];
    ck_assert_int_eq(dir_list(names), 1);
}
END_TEST

/* ---------------------------------------------------------------- full disk, short writes */

static size_t g_budget, g_chunk;
static int g_calls;

/* ENOSPC once g_budget bytes were written (as a disk filling up: a short write first). */
static ssize_t full_disk(int fd, const void *p, size_t n, off_t off) {
    g_calls++;
    if (!g_budget) { errno = ENOSPC; return -1; }
    if (n > g_budget) n = g_budget;
    ssize_t r = pwrite(fd, p, n, off);
    if (r > 0) g_budget -= (size_t)r;
    return r;
}

/* At most g_chunk bytes per call, and an EINTR now and then. */
static ssize_t short_writes(int fd, const void *p, size_t n, off_t off) {
    if (++g_calls % 5 == 0) { errno = EINTR; return -1; }
    return pwrite(fd, p, n < g_chunk ? n : g_chunk, off);
}

static ssize_t no_progress(int fd, const void *p, size_t n, off_t off) {
    (void)fd; (void)p; (void)n; (void)off;
    return 0;
}

START_TEST(test_full_disk) {
    const char *p = tt_path("ckpt.safetensors");
    ck_assert_int_eq(save_v(p, 1, 500), 0);
    const size_t budgets[] = { 0, 1, 7, 100, 4000, 8007, 79999 };
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        g_budget = budgets[i];
        g_calls = 0;
        wf__atomic_pwrite_fn = full_disk;
        int rc = save_v(p, 2, 10000);   /* 80 KB of data and a header */
        wf__atomic_pwrite_fn = pwrite;
        ck_assert_msg(rc == WF_EIO, "budget %zu: %d", budgets[i], rc);
        ck_assert_msg(strstr(wf_error_message(), p), "%s", wf_error_message());
        ck_assert_error(WF_EIO, strerror(ENOSPC));
        ck_assert(load_v(p) == 1);
        char names[8][64];
        ck_assert_int_eq(dir_list(names), 1);
    }
    wf__atomic_pwrite_fn = no_progress;
    ck_assert_int_eq(save_v(p, 2, 10), WF_EIO);
    wf__atomic_pwrite_fn = pwrite;
    ck_assert_error(WF_EIO, strerror(ENOSPC));
    ck_assert(load_v(p) == 1);
    /* short writes and EINTR are retried to the end */
    g_chunk = 3;
    g_calls = 0;
    wf__atomic_pwrite_fn = short_writes;
    ck_assert_int_eq(save_v(p, 4, 700), 0);
    wf__atomic_pwrite_fn = pwrite;
    ck_assert_int_gt(g_calls, 700 * 8 / 3);
    ck_assert(load_v(p) == 4);
}
END_TEST

/* ---------------------------------------------------------------- concurrent and leftover */

START_TEST(test_locked_and_leftover_temporary) {
    const char *p = tt_path("ckpt.safetensors");
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    ck_assert_int_eq(save_v(p, 1, 10), 0);
    /* a leftover from a killed save, large and garbage: reused, truncated, gone */
    FILE *f = fopen(tmp, "wb");
    for (int i = 0; i < 100000; i++) fputs("garbage!", f);
    fclose(f);
    ck_assert_int_eq(save_v(p, 2, 10), 0);
    ck_assert(load_v(p) == 2);
    char names[8][64];
    ck_assert_int_eq(dir_list(names), 1);
    /* another save holds the temporary file: refused, neither file touched */
    int fd = open(tmp, O_WRONLY | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    ck_assert_int_eq(flock(fd, LOCK_EX), 0);
    ck_assert_int_eq(save_v(p, 3, 10), WF_EIO);
    ck_assert_error(WF_EIO, "another save to this path is in progress");
    struct stat st;
    ck_assert_int_eq(stat(tmp, &st), 0);
    ck_assert_int_eq(st.st_size, 1);
    ck_assert(load_v(p) == 2);
    close(fd);
    ck_assert_int_eq(save_v(p, 3, 10), 0);
    ck_assert(load_v(p) == 3);
    ck_assert_int_eq(dir_list(names), 1);
    /* errors: an empty path, a missing directory (named) */
    ck_assert_int_eq(save_v("", 1, 1), WF_EINVAL);
    wf_clear_error();
    ck_assert_int_eq(save_v(tt_path("no/such/dir.safetensors"), 1, 1), WF_EIO);
    ck_assert_error(WF_EIO, "no/such/dir.safetensors");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("io_atomic_file");
    TCase *tc = tcase_create("atomic_file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kill_during_saves);
    tcase_add_test(tc, test_file_size_limit);
    tcase_add_test(tc, test_full_disk);
    tcase_add_test(tc, test_locked_and_leftover_temporary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tt_run(suite()); }
