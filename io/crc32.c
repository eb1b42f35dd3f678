/* io/crc32.c: CRC-32 (zlib's polynomial 0xEDB88320; zlib's crc32 when built with zlib) and
 * CRC-32C (Castagnoli, 0x82F63B78), both slice-by-8 table implementations. */
#include "weft_config.h"
#include "weft/io.h"

#include <pthread.h>
#include <string.h>

#ifdef WEFT_HAVE_ZLIB
#include <limits.h>
#include <zlib.h>
#endif

static uint32_t crc32c_table[8][256];
#ifndef WEFT_HAVE_ZLIB
static uint32_t crc32_table[8][256];
#endif
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void make_table(uint32_t t[8][256], uint32_t poly) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = t[0][i];
        for (int s = 1; s < 8; s++) {
            c = t[0][c & 0xff] ^ (c >> 8);
            t[s][i] = c;
        }
    }
}

static void make_tables(void) {
    make_table(crc32c_table, 0x82F63B78u);
#ifndef WEFT_HAVE_ZLIB
    make_table(crc32_table, 0xEDB88320u);
#endif
}

static uint32_t crc_slice8(uint32_t t[8][256], uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        /* byte-wise loads keep this endian-independent */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
              t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t wf_crc32(uint32_t crc, const void *p, size_t n) {
    if (!p || !n) return crc;
#ifdef WEFT_HAVE_ZLIB
    const unsigned char *b = p;
    uLong c = crc;
    while (n) {
        uInt k = n > (size_t)(UINT_MAX / 2) ? (uInt)(UINT_MAX / 2) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
#else
    pthread_once(&tables_once, make_tables);
    return crc_slice8(crc32_table, crc, p, n);
#endif
}

uint32_t wf_crc32c(uint32_t crc, const void *p, size_t n) {
    if (!p || !n) return crc;
    pthread_once(&tables_once, make_tables);
    return crc_slice8(crc32c_table, crc, p, n);
}
