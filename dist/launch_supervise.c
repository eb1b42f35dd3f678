/* dist/launch_supervise.c: the per-rank supervisor of ranks started through mpirun.
 *
 * Why a supervisor: mpirun knows which process failed but tells only through its own text,
 * and stops the others itself. weft's launcher wants the FIRST rank that failed and its exact
 * status or signal, so every rank runs under a small parent that waits for it and writes one
 * line into WF_LAUNCH_STATUS_DIR (dist/launch_impl.h) when it ends. Two ways in, one loop:
 *  - wf_launch_rank_begin(): a weft program (wf_fabric_launch calls it early) forks; the
 *    parent becomes the supervisor, the child returns and is the rank;
 *  - `weft __rank PROGRAM ARGS` (weft run): the supervisor forks and execs any program.
 * The rank is a child of the process mpirun started; Open MPI 4.1 accepts that (the rank
 * finds its daemon through the inherited environment). The rank gets PR_SET_PDEATHSIG
 * SIGKILL so it never outlives its supervisor, and the supervisor exits the way the rank
 * did, so mpirun sees the same status. */
#include "dist/launch_impl.h"
#include "dist/dist_impl.h"   /* wf__dist_now: monotonic, comparable across the processes of one host */
#include "tensor/tensor_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile pid_t g_rank_pid;

/* async-signal-safe: pass the signal on to the rank; it decides how to end */
static void forward(int sig) {
    if (g_rank_pid > 0) kill(g_rank_pid, sig);
}

/* This process's rank under mpirun (-1 when unknown). */
static int mpi_rank(void) {
    const char *v = getenv("OMPI_COMM_WORLD_RANK");
    if (!v || !*v) v = getenv("PMIX_RANK");
    if (!v || !*v) return -1;
    char *end;
    long r = strtol(v, &end, 10);
    return (*end || r < 0 || r > 1 << 30) ? -1 : (int)r;
}

/* Write text to dir/rank<r>.<ext> atomically (a temporary, then rename), so that the
 * launcher never reads half a line. Best effort: a failure only loses the rank's name. */
static void write_file(const char *dir, int rank, const char *ext, const char *text) {
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/rank%d.%s.tmp", dir, rank, ext);
    snprintf(path, sizeof path, "%s/rank%d.%s", dir, rank, ext);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    if (w == (ssize_t)len) rename(tmp, path);
    else unlink(tmp);
}

/* In the rank, right after fork: die with the supervisor; if it is already gone, leave. */
static void child_setup(pid_t supervisor) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(1);
}

/* The supervisor's loop: wait for the rank, record its end, exit the same way. */
static _Noreturn void supervise(pid_t rank_pid, const char *dir, int rank) {
    g_rank_pid = rank_pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    char line[128];
    if (dir && rank >= 0) {
        snprintf(line, sizeof line, "%ld %ld\n", (long)getpid(), (long)rank_pid);
        write_file(dir, rank, "pid", line);
    }
    int st = 0;
    pid_t r;
    do r = waitpid(rank_pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) st = 127 << 8;   /* cannot happen for our own child; report a failure, not success */
    double t = wf__dist_now();
    if (dir && rank >= 0) {
        if (WIFSIGNALED(st)) snprintf(line, sizeof line, "%d signal %d %.6f\n", rank, WTERMSIG(st), t);
        else snprintf(line, sizeof line, "%d exit %d %.6f\n", rank, WEXITSTATUS(st), t);
        write_file(dir, rank, "status", line);
    }
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        /* end by the same signal so that mpirun reports it; no core file of the supervisor */
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    _exit(WEXITSTATUS(st));
}

int wf_launch_rank_begin(void) {
    const char *dir = getenv(WF__LAUNCH_STATUS_DIR);
    const char *sup = getenv(WF__LAUNCH_SUPERVISED);
    int rank = mpi_rank();
    /* only in a rank that weft's launcher started through mpirun, and only once */
    if (!dir || !*dir || (sup && *sup) || rank < 0) return 0;
    if (setenv(WF__LAUNCH_SUPERVISED, "1", 1))
        return wf__error(WF_ENOMEM, "wf_launch_rank_begin: cannot set " WF__LAUNCH_SUPERVISED);
    char *dir_copy = strdup(dir);   /* kept by the supervisor until it exits */
    if (!dir_copy) return wf__error(WF_ENOMEM, "wf_launch_rank_begin: no memory");
    fflush(NULL);   /* or buffered output would be written twice */
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(dir_copy);
        return wf__error(WF_EIO, "wf_launch_rank_begin: fork failed for rank %d: %s", rank, strerror(errno));
    }
    if (pid == 0) {
        free(dir_copy);
        child_setup(me);
        return 0;
    }
    supervise(pid, dir_copy, rank);
}

_Noreturn void wf__launch_supervise_exec(char *const *argv) {
    const char *dir = getenv(WF__LAUNCH_STATUS_DIR);
    if (dir && !*dir) dir = NULL;
    int rank = mpi_rank();
    setenv(WF__LAUNCH_SUPERVISED, "1", 1);   /* the program's own wf_launch_rank_begin is then a no-op */
    fflush(NULL);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "weft: rank %d: fork failed: %s\n", rank, strerror(errno));
        _exit(127);
    }
    if (pid == 0) {
        child_setup(me);
        execvp(argv[0], argv);
        int e = errno;
        fprintf(stderr, "weft: rank %d: cannot run \"%s\": %s\n", rank, argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    supervise(pid, dir, rank);
}
