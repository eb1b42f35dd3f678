/* io/atomic_file.h (internal): replace a file atomically, leaving at most one temporary file.
 *
 * The bytes go to one temporary file whose name is derived from the target, "<path>.tmp",
 * never from the process: a save killed at any moment leaves that one file behind, and the
 * next save to the same path truncates and reuses it (or removes it on failure). Commit
 * fsyncs the data, renames it over the target and fsyncs the directory, so the target is
 * always either the previous file or the new one, complete.
 *
 * Two saves to one path at the same time are refused (an exclusive flock on the temporary
 * file, released by the kernel when a saving process dies), not interleaved.
 *
 * Writes never raise SIGXFSZ in the caller: see atomic_file.c. Errors name the target path
 * and the system's reason (WF_EIO); a full disk is "No space left on device". */
#ifndef WEFT_IO_ATOMIC_FILE_H
#define WEFT_IO_ATOMIC_FILE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct wf__atomic_file {
    int fd;
    const char *op;       /* the public function, for messages (borrowed, a literal) */
    char *path;           /* the target (owned) */
    char *tmp;            /* "<path>.tmp" (owned) */
    sigset_t old_mask;    /* the thread's signal mask before the save */
    bool masked;          /* SIGXFSZ is blocked by us until the end */
    bool xfsz_was_pending;/* a SIGXFSZ was pending before: it is the caller's, not ours */
} wf__atomic_file;

/* Create (or reuse) "<path>.tmp", locked and empty. On failure af holds nothing to release.
 * Returns 0, WF_EIO (names path), WF_EINVAL (empty path), WF_ENOMEM. */
int wf__atomic_open(wf__atomic_file *af, const char *op, const char *path);
/* Write all n bytes at offset off (short writes and EINTR are retried). Returns 0 or WF_EIO
 * naming the path and the reason (EFBIG: the file-size limit, ENOSPC: the disk is full). */
int wf__atomic_pwrite(wf__atomic_file *af, const void *p, size_t n, uint64_t off);
/* fsync, rename over the target, fsync the directory; releases af. Returns 0 or WF_EIO; on
 * failure the temporary file is removed and the target untouched (unless the rename itself
 * succeeded and only the directory's fsync failed: then the error says so). */
int wf__atomic_commit(wf__atomic_file *af);
/* Remove the temporary file and release af. Safe on a released af. */
void wf__atomic_abort(wf__atomic_file *af);

/* The pwrite the writes go through: tests replace it to simulate full disks and short
 * writes. Not thread-safe to change while saves run. */
extern ssize_t (*wf__atomic_pwrite_fn)(int fd, const void *p, size_t n, off_t off);

#endif
