/* dist/launch.c: start N local ranks and supervise them (torchrun's job, in C).
 *
 * Two modes:
 *  - direct (GPU ranks; NCCL meets through the store at MASTER_ADDR:MASTER_PORT): the
 *    launcher forks and execs each rank itself, in its own process group so that a Ctrl-C
 *    at the terminal reaches them all, and waits for them by pid. Each rank gets torchrun's
 *    variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
 *    MASTER_PORT) and weft's (WF_LAUNCH_RANK, WF_LAUNCH_WORLD_SIZE, WF_LAUNCH_LOCAL_RANK,
 *    WF_LAUNCH_LOCAL_SIZE, WF_LAUNCH_NODE_RANK, WF_LAUNCH_NUM_NODES); see dist/cluster_env.c.
 *  - mpirun (CPU ranks talk through Open MPI): `mpirun -np N --oversubscribe --bind-to none
 *    -x ... PROGRAM ARGS` in its own process group. mpirun only reports "a process failed",
 *    so each rank runs under a supervisor (dist/launch_supervise.c: wf_launch_rank_begin in
 *    weft programs, `weft __rank` for any program under `weft run`) that records its end in
 *    WF_LAUNCH_STATUS_DIR; the launcher polls that directory and mpirun's exit. A program that
 *    has no supervisor still runs and is stopped; only the failing rank goes unnamed.
 * In both, the first failure (a non-zero exit or a signal) makes the launcher send SIGTERM to
 * the rest, SIGKILL after the grace period, and return the failing rank's status (or, while
 * max_restarts allows, start every rank again as a new world: wf_launch_processes). Every wait
 * is bounded; nothing here blocks longer than the grace period plus a few seconds after a
 * failure.
 *
 * One launch at a time per process: for its duration the launcher owns SIGINT, SIGTERM and
 * SIGHUP (they stop the job) and makes SIGCHLD default; the caller's handlers come back at the
 * end. Call it from the main thread: PR_SET_PDEATHSIG, which keeps ranks from outliving the
 * launcher, fires when the thread that forked them exits.
 *
 * Memory: the argument vectors and environments built here are short-lived and use malloc,
 * like the report the caller free()s. */
#include "dist/launch_impl.h"
#include "dist/dist_impl.h"   /* wf__dist_now: monotonic, comparable across the processes of one host */
#include "tensor/tensor_impl.h"
#include "weft_config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define OP "wf_launch_processes"
#define POLL_S 0.02          /* how often ranks and the status directory are looked at */
#define REAP_AFTER_KILL_S 10 /* after SIGKILL, how long to wait for the processes to be reaped */

/* ---------------------------------------------------------------- string vectors */

typedef struct strvec {
    char **v;   /* NULL-terminated; each entry malloc'ed */
    int n, cap;
} strvec;

static int sv_push(strvec *s, char *owned) {
    if (!owned) return -1;
    if (s->n + 2 > s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) { free(owned); return -1; }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = owned;
    s->v[s->n] = NULL;
    return 0;
}

static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *out = NULL;
    if (vasprintf(&out, f, ap) < 0) out = NULL;
    va_end(ap);
    return out;
}

static void sv_free(strvec *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int env_find(const strvec *e, const char *name) {
    size_t len = strlen(name);
    for (int i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], name, len) && e->v[i][len] == '=') return i;
    return -1;
}

static void env_unset(strvec *e, const char *name) {
    int i = env_find(e, name);
    if (i < 0) return;
    free(e->v[i]);
    memmove(&e->v[i], &e->v[i + 1], (size_t)(e->n - i) * sizeof *e->v);   /* moves the NULL too */
    e->n--;
}

/* "NAME=value" replaces any earlier NAME */
static int env_put(strvec *e, char *entry_owned) {
    if (!entry_owned) return -1;
    char *eq = strchr(entry_owned, '=');
    size_t len = eq ? (size_t)(eq - entry_owned) : strlen(entry_owned);
    for (int i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], entry_owned, len) && e->v[i][len] == '=') {
            free(e->v[i]);
            e->v[i] = entry_owned;
            return 0;
        }
    return sv_push(e, entry_owned);
}

static int env_set(strvec *e, const char *name, const char *value) {
    return env_put(e, fmt("%s=%s", name, value));
}

static int env_set_int(strvec *e, const char *name, long value) {
    return env_put(e, fmt("%s=%ld", name, value));
}

static int sv_copy(strvec *dst, const strvec *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++)
        if (sv_push(dst, strdup(src->v[i]))) return -1;
    if (!dst->v && sv_push(dst, strdup("WF_LAUNCH_EMPTY_ENV=1"))) return -1;
    return 0;
}

/* ---------------------------------------------------------------- helpers */

int wf__launch_find_program(const char *name, char *path, size_t n) {
    if (!name || !*name) return wf__error(WF_EINVAL, OP ": the program name is empty");
    struct stat st;
    if (strchr(name, '/')) {
        if (stat(name, &st) || !S_ISREG(st.st_mode))
            return wf__error(WF_ENOTFOUND, OP ": program \"%s\" was not found (%s)", name,
                             errno ? strerror(errno) : "not a regular file");
        if (access(name, X_OK))
            return wf__error(WF_ENOTFOUND, OP ": program \"%s\" is not executable", name);
        if ((size_t)snprintf(path, n, "%s", name) >= n)
            return wf__error(WF_EINVAL, OP ": program path \"%s\" is too long", name);
        return 0;
    }
    const char *p = getenv("PATH");
    if (!p || !*p) p = "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        const char *c = strchr(p, ':');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char cand[4096];
        if (snprintf(cand, sizeof cand, "%.*s/%s", (int)len, len ? p : ".", name) < (int)sizeof cand &&
            !stat(cand, &st) && S_ISREG(st.st_mode) && !access(cand, X_OK)) {
            if ((size_t)snprintf(path, n, "%s", cand) >= n)
                return wf__error(WF_EINVAL, OP ": program path \"%s\" is too long", cand);
            return 0;
        }
        p += len;
        if (*p == ':') p++;
    }
    return wf__error(WF_ENOTFOUND, OP ": program \"%s\" was not found on PATH", name);
}

/* A port that was free a moment ago (bind port 0, read it, release it). The ranks bind it
 * soon after; the window is the same one torchrun accepts. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return wf__error(WF_EDIST, OP ": socket() for a free port failed: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof a;
    int port = -1;
    if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    int e = errno;
    close(fd);
    if (port <= 0) return wf__error(WF_EDIST, OP ": could not find a free TCP port: %s", strerror(e));
    return port;
}

static void sleep_s(double s) {
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    nanosleep(&ts, NULL);   /* an interruption only shortens one poll */
}

/* SIGINT/SIGTERM/SIGHUP to the launcher stop the job the same way a failure does; SIGCHLD is
 * made default for the duration so that waitpid sees our children even if the caller
 * ignores it. The caller's handlers come back afterwards. */
static volatile sig_atomic_t g_interrupt;
static void on_interrupt(int sig) { g_interrupt = sig; }
/* When the launcher noticed an interruption (monotonic s; 0 = none). Ranks that end after it
 * were stopped by us (or by the same Ctrl-C), so they are not "the rank that failed". */
static double g_interrupted_at;


typedef struct sigsave {
    struct sigaction intr, term, hup, chld;
} sigsave;

static void signals_install(sigsave *s) {
    g_interrupt = 0;
    g_interrupted_at = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &s->intr);
    sigaction(SIGTERM, &sa, &s->term);
    sigaction(SIGHUP, &sa, &s->hup);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, &s->chld);
}

static void signals_restore(const sigsave *s) {
    sigaction(SIGINT, &s->intr, NULL);
    sigaction(SIGTERM, &s->term, NULL);
    sigaction(SIGHUP, &s->hup, NULL);
    sigaction(SIGCHLD, &s->chld, NULL);
}


static void note_interrupt(void) {
    if (g_interrupt && !g_interrupted_at) g_interrupted_at = wf__dist_now();
}

/* How one rank ended. */
typedef struct rank_end {
    bool known;
    bool signaled;
    int value;        /* exit status or signal number */
    double t;         /* monotonic time of the end */
} rank_end;

static int end_status(const rank_end *e) { return e->signaled ? 128 + e->value : e->value; }
static bool end_failed(const rank_end *e) { return e->known && (e->signaled || e->value != 0); }

/* The first failure among n ranks (earliest time), or -1. */
static int first_failure(const rank_end *ends, int n) {
    int first = -1;
    for (int r = 0; r < n; r++)
        if (end_failed(&ends[r]) && (!g_interrupted_at || ends[r].t < g_interrupted_at) &&
            !(g_interrupt && ends[r].signaled && ends[r].value == g_interrupt) &&
            (first < 0 || ends[r].t < ends[first].t))
            first = r;
    return first;
}

static char *failure_report(int global_rank, const rank_end *e, int nranks) {
    const char *tail = nranks > 1 ? "; stopped the other ranks" : "";
    if (e->signaled)
        return fmt("weft: rank %d was killed by signal %d (%s)%s", global_rank, e->value, strsignal(e->value), tail);
    return fmt("weft: rank %d exited with status %d%s", global_rank, e->value, tail);
}

static void record_wait_status(rank_end *e, int st) {
    e->known = true;
    e->signaled = WIFSIGNALED(st);
    e->value = e->signaled ? WTERMSIG(st) : WEXITSTATUS(st);
    e->t = wf__dist_now();
}

/* Read an exec failure from the child's close-on-exec pipe: 0 when exec succeeded. */
static int exec_errno(int fd) {
    int e = 0;
    ssize_t r;
    do r = read(fd, &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(fd);
    return r == (ssize_t)sizeof e ? e : 0;
}

/* ---------------------------------------------------------------- direct mode */

typedef struct job {
    const wf_launch_opts *o;
    const char *path;          /* resolved program */
    char *const *argv;
    int nprocs, num_nodes, node_rank, world;
    double grace;
    int failed_rank;           /* out: the first failing global rank of this attempt, or -1 */
    rank_end failed;           /* out: how it ended */
} job;

static void kill_all(const pid_t *pids, const rank_end *ends, int n, int sig) {
    for (int i = 0; i < n; i++)
        if (pids[i] > 0 && !ends[i].known) kill(pids[i], sig);
}

/* Wait for the ranks; stop the rest at the first failure or interruption. */
static int supervise_direct(job *j, pid_t *pids, rank_end *ends, char **report) {
    int n = j->nprocs, alive = n;
    bool stopping = false, killed = false;
    double deadline = 0;
    while (alive > 0) {
        note_interrupt();
        for (int i = 0; i < n; i++) {
            if (ends[i].known) continue;
            int st;
            pid_t r = waitpid(pids[i], &st, WNOHANG);
            if (r == 0 || (r < 0 && errno == EINTR)) continue;
            if (r < 0) st = 127 << 8;   /* reaped by someone else: count it as a failure, never a success */
            record_wait_status(&ends[i], st);
            alive--;
            if (end_failed(&ends[i]) && !stopping) {
                stopping = true;
                deadline = wf__dist_now() + j->grace;
                kill_all(pids, ends, n, SIGTERM);
            }
        }
        if (g_interrupt && !stopping) {
            stopping = true;
            deadline = wf__dist_now() + j->grace;
            kill_all(pids, ends, n, SIGTERM);
        }
        if (!alive) break;
        double now = wf__dist_now();
        if (stopping && !killed && now >= deadline) {
            killed = true;
            deadline = now + REAP_AFTER_KILL_S;
            kill_all(pids, ends, n, SIGKILL);
        } else if (killed && now >= deadline) {
            break;   /* unkillable (stuck in the kernel): give up rather than hang */
        }
        sleep_s(POLL_S);
    }
    int base = j->node_rank * j->nprocs;
    int first = first_failure(ends, n);
    if (first >= 0) {
        j->failed_rank = base + first;
        j->failed = ends[first];
        *report = failure_report(base + first, &ends[first], j->world);
        return end_status(&ends[first]);
    }
    if (g_interrupt) {
        *report = fmt("weft: interrupted by signal %d (%s); stopped the ranks", (int)g_interrupt,
                      strsignal(g_interrupt));
        return 128 + g_interrupt;
    }
    if (alive) {
        *report = fmt("weft: %d rank(s) could not be stopped", alive);
        return 1;
    }
    return 0;
}

static int run_direct(job *j, const strvec *base_env, char **report) {
    int n = j->nprocs, rc = 0;
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    rank_end *ends = calloc((size_t)n, sizeof *ends);
    if (!pids || !ends) {
        free(pids);
        free(ends);
        return wf__error(WF_ENOMEM, OP ": no memory for %d ranks", n);
    }
    pid_t me = getpid();
    for (int i = 0; i < n; i++) {
        int grank = j->node_rank * n + i;
        strvec env;
        int bad = sv_copy(&env, base_env);
        /* these describe a rank under mpirun, not ours */
        env_unset(&env, WF__LAUNCH_STATUS_DIR);
        env_unset(&env, WF__LAUNCH_SUPERVISED);
        bad = bad || env_set_int(&env, "RANK", grank) || env_set_int(&env, "LOCAL_RANK", i) ||
              env_set_int(&env, "WORLD_SIZE", j->world) || env_set_int(&env, "LOCAL_WORLD_SIZE", n) ||
              env_set_int(&env, "GROUP_RANK", j->node_rank) || env_set_int(&env, "WF_LAUNCH_RANK", grank) ||
              env_set_int(&env, "WF_LAUNCH_WORLD_SIZE", j->world) || env_set_int(&env, "WF_LAUNCH_LOCAL_RANK", i) ||
              env_set_int(&env, "WF_LAUNCH_LOCAL_SIZE", n) || env_set_int(&env, "WF_LAUNCH_NODE_RANK", j->node_rank) ||
              env_set_int(&env, "WF_LAUNCH_NUM_NODES", j->num_nodes);
        int pfd[2] = { -1, -1 };
        if (bad || pipe2(pfd, O_CLOEXEC)) {
            sv_free(&env);
            rc = wf__error(bad ? WF_ENOMEM : WF_EIO, OP ": could not prepare rank %d", grank);
            goto fail;
        }
        pid_t pid = fork();
        if (pid == 0) {
            /* the child: only async-signal-safe calls until exec */
            close(pfd[0]);
            prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the launcher */
            if (getppid() != me) _exit(127);
            execve(j->path, j->argv, env.v);
            int e = errno;
            ssize_t w = write(pfd[1], &e, sizeof e);
            (void)w;
            _exit(127);
        }
        int fork_errno = errno;
        close(pfd[1]);
        sv_free(&env);
        if (pid < 0) {
            close(pfd[0]);
            rc = wf__error(WF_EIO, OP ": fork for rank %d failed: %s", grank, strerror(fork_errno));
            goto fail;
        }
        pids[i] = pid;
        int e = exec_errno(pfd[0]);
        if (e) {
            rc = wf__error(WF_ENOTFOUND, OP ": could not start rank %d: execve(\"%s\"): %s", grank, j->path, strerror(e));
            goto fail;
        }
    }
    rc = supervise_direct(j, pids, ends, report);
    free(pids);
    free(ends);
    return rc;
fail:
    /* nothing useful ran: kill what started and reap it (SIGKILL cannot be refused) */
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    free(pids);
    free(ends);
    return rc;
}

/* ---------------------------------------------------------------- mpirun mode */

/* Read dir/rank<r>.status into *e when it is there. */
static void read_status(const char *dir, int r, rank_end *e) {
    if (e->known) return;
    char path[4200], kind[16] = {0};
    snprintf(path, sizeof path, "%s/rank%d.status", dir, r);
    FILE *f = fopen(path, "r");
    if (!f) return;
    int rank, value;
    double t;
    if (fscanf(f, "%d %15s %d %lf", &rank, kind, &value, &t) == 4 && rank == r &&
        (!strcmp(kind, "exit") || !strcmp(kind, "signal"))) {
        e->known = true;
        e->signaled = !strcmp(kind, "signal");
        e->value = value;
        e->t = t;
    }
    fclose(f);
}

/* Send sig to the supervisors (SIGTERM: they pass it on to their rank) or, for SIGKILL, to
 * the supervisors and the ranks, of the ranks that have not ended. Returns how many
 * supervisors were found. */
static int signal_supervised(const char *dir, const rank_end *ends, int n, int sig) {
    int found = 0;
    for (int r = 0; r < n; r++) {
        if (ends[r].known) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/rank%d.pid", dir, r);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long a = 0, b = 0;
        if (fscanf(f, "%ld %ld", &a, &b) == 2 && a > 1) {
            found++;
            if (sig == SIGKILL && b > 1) kill((pid_t)b, SIGKILL);
            kill((pid_t)a, sig);
        }
        fclose(f);
    }
    return found;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char path[4096 + 260];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static bool is_exported(const char *entry, const wf_launch_opts *o) {
    static const char *names[] = { "OMP_NUM_THREADS=", "MASTER_ADDR=", "MASTER_PORT=", "TORCHELASTIC_RESTART_COUNT=",
                                   "TORCHELASTIC_MAX_RESTARTS=" };
    if (!strncmp(entry, "WF_", 3)) return true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strncmp(entry, names[i], strlen(names[i]))) return true;
    for (const char *const *x = o->env; x && *x; x++) {
        const char *eq = strchr(*x, '=');
        if (eq && !strncmp(entry, *x, (size_t)(eq - *x + 1))) return true;
    }
    return false;
}

static int run_mpirun(job *j, const strvec *base_env, char **report) {
    char mpirun[4096];
    if (wf__launch_find_program("mpirun", mpirun, sizeof mpirun)) {
        wf_clear_error();
        return wf__error(WF_ENOTFOUND, OP ": mpirun (Open MPI) was not found on PATH: CPU ranks are started "
                         "through it (install Open MPI, or start the ranks without use_mpirun)");
    }
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/weft-launch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return wf__error(WF_EIO, OP ": could not create a status directory %s: %s", dir, strerror(errno));

    strvec env = {0}, args = {0};
    int rc = 0;
    int bad = sv_copy(&env, base_env);
    env_unset(&env, WF__LAUNCH_SUPERVISED);   /* each rank must get its own supervisor */
    bad = bad || env_set(&env, WF__LAUNCH_STATUS_DIR, dir);
    bad = bad || sv_push(&args, strdup(mpirun)) || sv_push(&args, strdup("-np")) ||
          sv_push(&args, fmt("%d", j->nprocs)) || sv_push(&args, strdup("--oversubscribe")) ||
          sv_push(&args, strdup("--bind-to")) || sv_push(&args, strdup("none"));
    if (!bad && geteuid() == 0) bad = sv_push(&args, strdup("--allow-run-as-root"));
    for (int i = 0; !bad && i < env.n; i++)
        if (is_exported(env.v[i], j->o)) {
            bad = sv_push(&args, strdup("-x")) ||
                  sv_push(&args, strndup(env.v[i], (size_t)(strchr(env.v[i], '=') - env.v[i])));
        }
    for (int i = 0; !bad && j->argv[i]; i++) bad = sv_push(&args, strdup(i ? j->argv[i] : j->path));
    int pfd[2] = { -1, -1 };
    if (bad || pipe2(pfd, O_CLOEXEC)) {
        rc = wf__error(bad ? WF_ENOMEM : WF_EIO, OP ": could not prepare the mpirun command");
        goto out;
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        /* its own process group: the whole job can be killed at once; stdin from /dev/null
         * so that a background group never stops on reading the terminal */
        setpgid(0, 0);
        if (devnull >= 0) dup2(devnull, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);   /* mpirun then stops its ranks */
        if (getppid() != me) _exit(127);
        execve(args.v[0], args.v, env.v);
        int e = errno;
        ssize_t w = write(pfd[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    if (devnull >= 0) close(devnull);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        rc = wf__error(WF_EIO, OP ": fork for mpirun failed: %s", strerror(fork_errno));
        goto out;
    }
    setpgid(pid, pid);   /* also here: whichever runs first makes it so */
    int e = exec_errno(pfd[0]);
    if (e) {
        waitpid(pid, NULL, 0);
        rc = wf__error(WF_ENOTFOUND, OP ": could not start mpirun (%s): %s", mpirun, strerror(e));
        goto out;
    }

    int n = j->nprocs;
    rank_end *ends = calloc((size_t)n, sizeof *ends);
    if (!ends) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        rc = wf__error(WF_ENOMEM, OP ": no memory");
        goto out;
    }
    bool stopping = false, killed = false, reaped = false;
    double deadline = 0;
    int mst = 0;
    for (;;) {
        pid_t r = waitpid(pid, &mst, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) {
            reaped = r == pid;
            break;
        }
        note_interrupt();
        for (int i = 0; i < n; i++) read_status(dir, i, &ends[i]);
        if (!stopping && (first_failure(ends, n) >= 0 || g_interrupt)) {
            stopping = true;
            deadline = wf__dist_now() + j->grace;
            /* SIGTERM to the supervisors, which pass it on. Not to mpirun: after a failed rank
             * it is already aborting the job, and a second stop request makes Open MPI 4.1
             * force its way out (and crash in PMIx_Finalize). mpirun itself gets SIGTERM only
             * when we are interrupted and no rank has a supervisor to tell. */
            if (!signal_supervised(dir, ends, n, SIGTERM) && g_interrupt) kill(pid, SIGTERM);
        }
        double now = wf__dist_now();
        if (stopping && !killed && now >= deadline) {
            killed = true;
            deadline = now + REAP_AFTER_KILL_S;
            signal_supervised(dir, ends, n, SIGKILL);
            kill(-pid, SIGKILL);
        } else if (killed && now >= deadline) {
            break;
        }
        sleep_s(POLL_S);
    }
    /* the supervisors write before they exit, and mpirun exits after them */
    for (int i = 0; i < n; i++) read_status(dir, i, &ends[i]);
    if (killed) signal_supervised(dir, ends, n, SIGKILL);   /* any supervisor that outlived mpirun */
    int first = first_failure(ends, n);
    if (first >= 0) {
        j->failed_rank = first;
        j->failed = ends[first];
        *report = failure_report(first, &ends[first], n);
        rc = end_status(&ends[first]);
    } else if (g_interrupt) {
        *report = fmt("weft: interrupted by signal %d (%s); stopped the ranks", (int)g_interrupt,
                      strsignal(g_interrupt));
        rc = 128 + g_interrupt;
    } else if (!reaped) {
        *report = fmt("weft: mpirun (pid %ld) could not be stopped", (long)pid);
        rc = 1;
    } else if (WIFSIGNALED(mst) || WEXITSTATUS(mst)) {
        rank_end m = { true, WIFSIGNALED(mst), WIFSIGNALED(mst) ? WTERMSIG(mst) : WEXITSTATUS(mst), 0 };
        *report = m.signaled
                      ? fmt("weft: mpirun was killed by signal %d (%s) and no rank reported a failure", m.value,
                            strsignal(m.value))
                      : fmt("weft: mpirun exited with status %d and no rank reported a failure (ranks name "
                            "themselves when they call wf_launch_rank_begin; see mpirun's messages above)", m.value);
        rc = end_status(&m);
    }
    free(ends);
out:
    sv_free(&args);
    sv_free(&env);
    remove_dir(dir);
    return rc;
}

/* ---------------------------------------------------------------- entry points */

int wf_launch_processes(const char *const *argv, const wf_launch_opts *o, char **report) {
    if (report) *report = NULL;
    if (!argv || !argv[0]) return wf__error(WF_ENULL, OP ": argv is NULL or empty");
    if (!o) return wf__error(WF_ENULL, OP ": options are NULL");
    if (o->nprocs < 1 || o->nprocs > 1024) return wf__error(WF_EINVAL, OP ": nprocs=%d (must be 1..1024)", o->nprocs);
    int num_nodes = o->num_nodes ? o->num_nodes : 1;
    if (num_nodes < 1) return wf__error(WF_EINVAL, OP ": num_nodes=%d (must be >= 1)", o->num_nodes);
    if (o->node_rank < 0 || o->node_rank >= num_nodes)
        return wf__error(WF_EINVAL, OP ": node_rank=%d is not in 0..%d", o->node_rank, num_nodes - 1);
    if (o->main_port < 0 || o->main_port > 65535)
        return wf__error(WF_EINVAL, OP ": main_port=%d is not a TCP port (0..65535)", o->main_port);
    if (o->grace_s < 0 || o->grace_s != o->grace_s)
        return wf__error(WF_EINVAL, OP ": grace_s=%g must be >= 0", o->grace_s);
    if (num_nodes > 1 && !o->main_port)
        return wf__error(WF_EINVAL, OP ": num_nodes=%d needs main_port: every node must meet on the same port",
                         num_nodes);
    if (o->max_restarts < 0 || o->max_restarts > 1000000)
        return wf__error(WF_EINVAL, OP ": max_restarts=%d (must be 0..1000000)", o->max_restarts);
    if (num_nodes > 1 && o->max_restarts)
        return wf__error(WF_EINVAL, OP ": max_restarts=%d with num_nodes=%d: each node's launcher would restart "
                         "only its own ranks, so restart multi-node jobs from the scheduler (one node: num_nodes=1)",
                         o->max_restarts, num_nodes);
    if (num_nodes > 1 && o->use_mpirun)
        return wf__error(WF_EINVAL, OP ": use_mpirun with num_nodes=%d: one mpirun starts one world, so start "
                         "CPU ranks on several nodes with mpirun or srun directly", num_nodes);
    if ((long)o->nprocs * num_nodes > (1 << 24))
        return wf__error(WF_EINVAL, OP ": world size %d x %d is too large", o->nprocs, num_nodes);
    for (const char *const *x = o->env; x && *x; x++) {
        const char *eq = strchr(*x, '=');
        if (!eq || eq == *x) return wf__error(WF_EINVAL, OP ": env entry \"%s\" is not NAME=value", *x);
    }
    const char *addr = o->main_address && *o->main_address ? o->main_address : "127.0.0.1";
    if (strlen(addr) > 255) return wf__error(WF_EINVAL, OP ": main_address is longer than 255 bytes");

    char path[4096];
    int rc = wf__launch_find_program(argv[0], path, sizeof path);
    if (rc) return rc;
    strvec env = {0};
    int bad = 0;
    for (char **e = environ; e && *e && !bad; e++) bad = sv_push(&env, strdup(*e));
    for (const char *const *x = o->env; x && *x && !bad; x++) bad = env_put(&env, strdup(*x));
    if (!bad && env_find(&env, "OMP_NUM_THREADS") < 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        long t = cores / o->nprocs;
        bad = env_set_int(&env, "OMP_NUM_THREADS", t < 1 ? 1 : t);
    }
    bad = bad || env_set(&env, "MASTER_ADDR", addr) || env_set_int(&env, "TORCHELASTIC_MAX_RESTARTS", o->max_restarts);
    if (bad || !env.v) {
        sv_free(&env);
        return wf__error(WF_ENOMEM, OP ": no memory for the ranks' environment");
    }
    job j = { o, path, (char *const *)argv, o->nprocs, num_nodes, o->node_rank, o->nprocs * num_nodes,
              o->grace_s > 0 ? o->grace_s : 5.0, -1, {0} };
    char *rep = NULL;
    sigsave saved;
    signals_install(&saved);
    /* torchrun's --max-restarts: after a failure every rank starts again, as a new world (a
     * fresh store port, so no rank of the old one can reach the new rendezvous); the program
     * resumes from its checkpoint. Restarts that are left over after a success are unused. */
    for (int attempt = 0;; attempt++) {
        j.failed_rank = -1;
        int port = o->main_port;
        if (!port && (port = free_port()) < 0) {
            rc = port;
            break;
        }
        if (env_set_int(&env, "MASTER_PORT", port) || env_set_int(&env, "WF_RESTART_COUNT", attempt) ||
            env_set_int(&env, "TORCHELASTIC_RESTART_COUNT", attempt)) {
            rc = wf__error(WF_ENOMEM, OP ": no memory for the ranks' environment");
            break;
        }
        free(rep);
        rep = NULL;
        rc = o->use_mpirun ? run_mpirun(&j, &env, &rep) : run_direct(&j, &env, &rep);
        note_interrupt();
        if (rc <= 0 || j.failed_rank < 0 || g_interrupt || attempt >= o->max_restarts) {
            if (rc > 0 && j.failed_rank >= 0 && attempt > 0 && rep) {
                char *r2 = fmt("%s (after %d restart%s)", rep, attempt, attempt == 1 ? "" : "s");
                if (r2) { free(rep); rep = r2; }
            }
            break;
        }
        const rank_end *e = &j.failed;
        if (e->signaled)
            fprintf(stderr, "weft run: rank %d exited with signal %d (%s); restarting all %d ranks (attempt %d of %d)\n",
                    j.failed_rank, e->value, strsignal(e->value), j.world, attempt + 1, o->max_restarts);
        else
            fprintf(stderr, "weft run: rank %d exited with status %d; restarting all %d ranks (attempt %d of %d)\n",
                    j.failed_rank, e->value, j.world, attempt + 1, o->max_restarts);
        fflush(stderr);
    }
    signals_restore(&saved);
    sv_free(&env);
    if (rc < 0) {
        free(rep);
        rep = NULL;
    }
    if (report) *report = rep;
    else free(rep);
    return rc;
}

int wf_launch_self(const wf_launch_opts *o) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return wf__error(WF_EIO, "wf_launch_self: cannot read /proc/self/exe: %s", strerror(errno));
    exe[len] = 0;
    /* the original arguments, NUL-separated */
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return wf__error(WF_EIO, "wf_launch_self: cannot read /proc/self/cmdline: %s", strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *b = realloc(buf, cap);
            if (!b) { free(buf); fclose(f); return wf__error(WF_ENOMEM, "wf_launch_self: no memory"); }
            buf = b;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    fclose(f);
    buf[n] = 0;
    strvec args = {0};
    int bad = sv_push(&args, strdup(exe));
    for (size_t i = strlen(buf) + 1; i < n && !bad; i += strlen(buf + i) + 1) bad = sv_push(&args, strdup(buf + i));
    free(buf);
    if (bad) {
        sv_free(&args);
        return wf__error(WF_ENOMEM, "wf_launch_self: no memory");
    }
    char *report = NULL;
    unsigned seq = wf__error_seq();
    int rc = wf_launch_processes((const char *const *)args.v, o, &report);
    sv_free(&args);
    if (rc < 0) return wf__error_context("wf_launch_self", seq);
    if (report) {
        fprintf(stderr, "%s\n", report);
        free(report);
    }
    fflush(NULL);
    exit(rc);
}
