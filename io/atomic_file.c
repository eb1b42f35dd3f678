/* io/atomic_file.c: atomic replacement of a file through one reusable temporary file.
 * See io/atomic_file.h for the contract. */
#include "weft_config.h"
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensor/tensor_impl.h"

ssize_t (*wf__atomic_pwrite_fn)(int fd, const void *p, size_t n, off_t off) = pwrite;

/* SIGXFSZ. When a write crosses RLIMIT_FSIZE the kernel sends SIGXFSZ to the writing
 * thread, and its default action kills the process: a save would take the training run
 * down instead of returning an error. Changing the disposition (sigaction) is process-wide
 * and races with the caller's other threads and handlers, so instead this thread blocks
 * SIGXFSZ for the duration of the save: the write then fails with EFBIG, which we report,
 * and the signal stays pending on this thread. Before restoring the mask we consume that
 * pending signal with a zero-timeout sigtimedwait, unless one was already pending when the
 * save began (then it belongs to the caller and is left alone). The caller's mask and
 * disposition are exactly as before when the save returns. */
static void block_xfsz(wf__atomic_file *af) {
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGXFSZ);
    af->masked = pthread_sigmask(SIG_BLOCK, &set, &af->old_mask) == 0;
    af->xfsz_was_pending = sigpending(&pend) == 0 && sigismember(&pend, SIGXFSZ) == 1;
}

static void unblock_xfsz(wf__atomic_file *af) {
    if (!af->masked) return;
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGXFSZ);
    if (!af->xfsz_was_pending && sigpending(&pend) == 0 && sigismember(&pend, SIGXFSZ) == 1) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &af->old_mask, NULL);
    af->masked = false;
}

static void release(wf__atomic_file *af) {
    if (af->fd >= 0) close(af->fd);
    af->fd = -1;
    unblock_xfsz(af);
    if (af->path) wf__free(af->path, strlen(af->path) + 1);
    if (af->tmp) wf__free(af->tmp, strlen(af->tmp) + 1);
    af->path = af->tmp = NULL;
}

int wf__atomic_open(wf__atomic_file *af, const char *op, const char *path) {
    memset(af, 0, sizeof *af);
    af->fd = -1;
    af->op = op;
    if (!*path) return wf__error(WF_EINVAL, "%s: empty path", op);
    size_t n = strlen(path);
    af->path = wf__strdup(path);
    af->tmp = wf__malloc(n + 5);
    if (!af->path || !af->tmp) {
        if (af->tmp) wf__free(af->tmp, n + 5);
        af->tmp = NULL;
        release(af);
        return wf__error(WF_ENOMEM, "%s: %s: out of memory", op, path);
    }
    memcpy(af->tmp, path, n);
    memcpy(af->tmp + n, ".tmp", 5);
    /* Lock, then check that the locked file is still the one named tmp: a save finishing at
     * the same moment may have renamed it over the target (it holds its lock until after
     * the rename), and truncating that inode would destroy the checkpoint just written. */
    for (int attempt = 0;; attempt++) {
        int fd = open(af->tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            int rc = wf__error(WF_EIO, "%s: %s: cannot create %s: %s", op, path, af->tmp, strerror(errno));
            release(af);
            return rc;
        }
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int err = errno;
            if (err == EWOULDBLOCK) {
                close(fd);
                int rc = wf__error(WF_EIO, "%s: %s: another save to this path is in progress (%s is locked)", op,
                                   path, af->tmp);
                release(af);
                return rc;
            }
            /* file systems without flock (some network ones): go on unlocked */
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(af->tmp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            af->fd = fd;
            break;
        }
        close(fd);
        if (attempt == 8) {
            int rc = wf__error(WF_EIO, "%s: %s: %s keeps changing under a concurrent save", op, path, af->tmp);
            release(af);
            return rc;
        }
    }
    if (ftruncate(af->fd, 0)) {
        int rc = wf__error(WF_EIO, "%s: %s: cannot truncate %s: %s", op, path, af->tmp, strerror(errno));
        wf__atomic_abort(af);
        return rc;
    }
    block_xfsz(af);
    return 0;
}

int wf__atomic_pwrite(wf__atomic_file *af, const void *p, size_t n, uint64_t off) {
    const char *b = p;
    while (n) {
        size_t k = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t r = wf__atomic_pwrite_fn(af->fd, b, k, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int err = r < 0 ? errno : ENOSPC;   /* a write that makes no progress: treat as full */
            const char *why = err == EFBIG ? " (the file-size limit, RLIMIT_FSIZE)" : "";
            return wf__error(WF_EIO, "%s: %s: writing %s: %s%s", af->op, af->path, af->tmp, strerror(err), why);
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* fsync of the directory holding path, so the rename itself survives a power cut. File
 * systems that cannot fsync a directory say EINVAL/ENOTSUP/EROFS: nothing more to do there. */
static int fsync_dir_of(const wf__atomic_file *af) {
    size_t n = strlen(af->path);
    char *dir = wf__malloc(n + 2);
    if (!dir) return wf__error(WF_ENOMEM, "%s: %s: out of memory", af->op, af->path);
    memcpy(dir, af->path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) && errno != EINVAL && errno != ENOTSUP && errno != EROFS && errno != EBADF)
            rc = wf__error(WF_EIO, "%s: %s: the file was replaced, but syncing its directory %s failed: %s", af->op,
                           af->path, dir, strerror(errno));
        close(fd);
    }
    wf__free(dir, n + 2);
    return rc;
}

int wf__atomic_commit(wf__atomic_file *af) {
    if (fsync(af->fd)) {
        int rc = wf__error(WF_EIO, "%s: %s: flushing %s: %s", af->op, af->path, af->tmp, strerror(errno));
        wf__atomic_abort(af);
        return rc;
    }
    if (rename(af->tmp, af->path)) {
        int rc = wf__error(WF_EIO, "%s: %s: renaming %s: %s", af->op, af->path, af->tmp, strerror(errno));
        wf__atomic_abort(af);
        return rc;
    }
    /* the lock is held until after the rename: see wf__atomic_open */
    int rc = fsync_dir_of(af);
    release(af);
    return rc;
}

void wf__atomic_abort(wf__atomic_file *af) {
    if (af->fd >= 0 && af->tmp) unlink(af->tmp);   /* while still locked: no other save owns it */
    release(af);
}
