/* io/json.h: a small JSON DOM parser and a JSON writer (private to weft).
 *
 * The parser treats its input as hostile: the input is a length-bounded buffer (not
 * NUL-terminated), nesting is limited, strings must be valid UTF-8 without raw control
 * characters, escapes (\uXXXX with surrogate pairs) are decoded to UTF-8, lone surrogates,
 * leading zeros, trailing commas, comments and trailing garbage are refused. Errors name
 * the byte offset. Numbers are kept as double, plus an exact int64 when the number is
 * integral and representable (i64_ok).
 *
 * The writer is a growable string builder; after an allocation failure it stops growing
 * and remembers the failure (wf__sb_failed), so a sequence of appends is checked once.
 * All memory goes through wf__malloc / wf__free (the user's allocator). */
#ifndef WEFT_IO_JSON_H
#define WEFT_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum wf_json_type {
    WF_JSON_NULL = 0, WF_JSON_BOOL, WF_JSON_NUMBER, WF_JSON_STRING, WF_JSON_ARRAY, WF_JSON_OBJECT
} wf_json_type;

typedef struct wf_json wf_json;
struct wf_json {
    wf_json_type type;
    /* member key when this value sits in an object (NUL-terminated; key_len excludes the
     * NUL; the key may itself contain NUL bytes from \u0000), else NULL */
    char *key;
    size_t key_len;
    bool boolean;          /* WF_JSON_BOOL */
    double number;         /* WF_JSON_NUMBER */
    bool i64_ok;           /* WF_JSON_NUMBER: integral and exactly representable as int64 */
    int64_t i64;           /* the exact value when i64_ok */
    char *str;             /* WF_JSON_STRING: NUL-terminated UTF-8, may contain NUL bytes */
    size_t str_len;        /* bytes, excluding the terminating NUL */
    wf_json *items;        /* WF_JSON_ARRAY / WF_JSON_OBJECT: n children, in input order */
    size_t n;
    size_t cap;
};

#define WF_JSON_DEFAULT_DEPTH 64

/* Parse len bytes at s. max_depth bounds nesting of arrays/objects (0 = default 64).
 * Returns 0 and *out (free with wf__json_free), or WF_ECORRUPT with a message in err
 * ("at byte 12: expected ':' after object key"), or WF_ENOMEM. Does not record a weft
 * error: callers wrap err in their own message. err may be NULL. */
int wf__json_parse(const char *s, size_t len, int max_depth, wf_json **out, char *err, size_t errlen);
void wf__json_free(wf_json *v);

/* The first member named key of an object (NULL if absent or v is not an object). */
const wf_json *wf__json_get(const wf_json *v, const char *key);
/* i-th child of an array/object, or NULL. */
const wf_json *wf__json_at(const wf_json *v, size_t i);
/* The string of a WF_JSON_STRING, else NULL. */
const char *wf__json_str(const wf_json *v);
/* True when v is a number exactly equal to an int64 (sets *out). */
bool wf__json_int(const wf_json *v, int64_t *out);

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool wf__utf8_valid(const char *s, size_t n);

/* ---------------------------------------------------------------- writer */

typedef struct wf_sb {
    char *buf;      /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    bool failed;    /* an allocation failed; further appends are ignored */
} wf_sb;

void wf__sb_init(wf_sb *b);
void wf__sb_free(wf_sb *b);
bool wf__sb_failed(const wf_sb *b);
void wf__sb_append(wf_sb *b, const char *s, size_t n);
void wf__sb_puts(wf_sb *b, const char *s);
void wf__sb_putc(wf_sb *b, char c);
void wf__sb_printf(wf_sb *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A quoted JSON string with escapes ("\"", "\\", control characters as \n or \u00XX). */
void wf__sb_json_string(wf_sb *b, const char *s, size_t n);
/* A number as %.17g with '.' whatever the locale; integral values within 2^53 print
 * without exponent or fraction. inf and NaN (not JSON) are written as null. */
void wf__sb_json_number(wf_sb *b, double v);
void wf__sb_json_int(wf_sb *b, int64_t v);
/* Serialize a DOM value (compact: no spaces). */
void wf__sb_json_value(wf_sb *b, const wf_json *v);
/* Hand the buffer to the caller (free with wf__free(p, len + 1)); the builder is reset.
 * NULL if an allocation failed. *len (optional) gets the length. */
char *wf__sb_take(wf_sb *b, size_t *len);

#endif
