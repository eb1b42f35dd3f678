/* tests/fuzz/fuzz_util.h: helpers shared by the fuzz targets (header-only, test code). */
#ifndef WEFT_FUZZ_UTIL_H
#define WEFT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The parsers that read files open them by path themselves (wf_st_open, wf_idx_load,
 * wf_fabric_load), and that open/fstat/pread code is part of what is tested. An anonymous
 * in-memory file (memfd) reached through /proc/self/fd gives them a real regular file
 * without touching the disk. Returns the memfd (close it after use) and the path in buf,
 * or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t n) {
    int fd = memfd_create("weft-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) { close(fd); return -1; }
        done += (size_t)w;
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

/* Split data into at most max fields at NUL or newline bytes, as NUL-terminated strings in
 * one block owned by the caller (free(*block)). Returns the field count. */
static inline int fuzz_fields(const uint8_t *data, size_t size, char **fields, int max, char **block) {
    char *b = malloc(size + 1);
    if (!b) { *block = NULL; return 0; }
    memcpy(b, data, size);
    b[size] = 0;
    int n = 0;
    char *p = b, *end = b + size;
    while (n < max) {
        fields[n++] = p;
        while (p < end && *p && *p != '\n') p++;
        if (p >= end) break;
        *p++ = 0;
    }
    *block = b;
    return n;
}

#endif
