/* io/json.c: JSON DOM parser and writer. See io/json.h. */
#include "io/json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor_impl.h"

/* ---------------------------------------------------------------- parser */

typedef struct parser {
    const unsigned char *s;
    size_t n, pos;
    int max_depth;
    int code;           /* 0, WF_ECORRUPT or WF_ENOMEM */
    char *err;
    size_t errlen;
} parser;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail_at(parser *p, size_t pos, const char *fmt, ...) {
    if (p->code) return p->code;
    p->code = WF_ECORRUPT;
    if (p->err && p->errlen) {
        int k = snprintf(p->err, p->errlen, "at byte %zu: ", pos);
        if (k >= 0 && (size_t)k < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return p->code;
}

static int fail_oom(parser *p) {
    if (p->code) return p->code;
    p->code = WF_ENOMEM;
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "out of memory at byte %zu", p->pos);
    return p->code;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;          /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0;         /* surrogates */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;          /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0;         /* > U+10FFFF */
        return 4;
    }
    return 0;
}

bool wf__utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static int hex4(const unsigned char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *d, uint32_t cp) {
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | (cp >> 6)); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12)); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18)); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parse a string starting at the opening quote. Decoded bytes never exceed the raw
 * length (every escape is at least as long as its UTF-8), so one allocation suffices. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = p->pos;
    p->pos++; /* opening quote */
    /* find the extent first to size the buffer */
    size_t i = p->pos;
    while (i < p->n && p->s[i] != '"') {
        if (p->s[i] == '\\') i++;
        i++;
    }
    if (i >= p->n) return fail_at(p, start, "unterminated string");
    size_t raw = i - p->pos;
    char *d = wf__malloc(raw + 1);
    if (!d) return fail_oom(p);
    size_t k = 0;
    while (p->s[p->pos] != '"') {
        unsigned char c = p->s[p->pos];
        if (c < 0x20) {
            wf__free(d, raw + 1);
            return fail_at(p, p->pos, "control character 0x%02x in string", c);
        }
        if (c == '\\') {
            size_t esc = p->pos;
            unsigned char e = p->s[p->pos + 1]; /* exists: the scan above stopped at a quote later */
            p->pos += 2;
            switch (e) {
            case '"': d[k++] = '"'; break;
            case '\\': d[k++] = '\\'; break;
            case '/': d[k++] = '/'; break;
            case 'b': d[k++] = '\b'; break;
            case 'f': d[k++] = '\f'; break;
            case 'n': d[k++] = '\n'; break;
            case 'r': d[k++] = '\r'; break;
            case 't': d[k++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (p->n - p->pos < 4 || hex4(p->s + p->pos, &cp)) {
                    wf__free(d, raw + 1);
                    return fail_at(p, esc, "bad \\u escape (needs 4 hex digits)");
                }
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    wf__free(d, raw + 1);
                    return fail_at(p, esc, "lone low surrogate \\u%04X", (unsigned)cp);
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        wf__free(d, raw + 1);
                        return fail_at(p, esc, "high surrogate \\u%04X not followed by a low surrogate",
                                       (unsigned)cp);
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                k += put_utf8(d + k, cp);
                break;
            }
            default:
                wf__free(d, raw + 1);
                if (e >= 0x20 && e < 0x7f) return fail_at(p, esc, "bad escape '\\%c'", e);
                return fail_at(p, esc, "bad escape byte 0x%02x", e);
            }
        } else if (c < 0x80) {
            d[k++] = (char)c;
            p->pos++;
        } else {
            size_t m = utf8_seq(p->s + p->pos, p->n - p->pos);
            if (!m) {
                wf__free(d, raw + 1);
                return fail_at(p, p->pos, "invalid UTF-8 in string");
            }
            memcpy(d + k, p->s + p->pos, m);
            k += m;
            p->pos += m;
        }
    }
    p->pos++; /* closing quote */
    d[k] = '\0';
    *out = d;
    *out_len = k;
    return 0;
}

static int parse_number(parser *p, wf_json *v) {
    size_t start = p->pos, i = p->pos;
    const unsigned char *s = p->s;
    bool neg = false, integral_text = true;
    if (i < p->n && s[i] == '-') { neg = true; i++; }
    if (i >= p->n || s[i] < '0' || s[i] > '9') return fail_at(p, start, "bad number");
    size_t int_start = i;
    if (s[i] == '0') {
        i++;
        if (i < p->n && s[i] >= '0' && s[i] <= '9') return fail_at(p, start, "leading zero in number");
    } else {
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t int_end = i;
    if (i < p->n && s[i] == '.') {
        integral_text = false;
        i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return fail_at(p, i, "digit expected after '.'");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        integral_text = false;
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return fail_at(p, i, "digit expected in exponent");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t len = i - start;
    char buf[512];
    if (len >= sizeof buf) return fail_at(p, start, "number longer than %zu characters", sizeof buf - 1);
    memcpy(buf, s + start, len);
    buf[len] = '\0';
    /* strtod follows the locale's decimal point */
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *q = strchr(buf, '.');
        if (q) *q = dp[0];
    }
    char *end = NULL;
    double d = strtod(buf, &end);
    if (!isfinite(d)) return fail_at(p, start, "number %s out of range", buf);
    v->type = WF_JSON_NUMBER;
    v->number = d;
    v->i64_ok = false;
    if (integral_text) {
        /* exact: accumulate as a negative number to reach INT64_MIN */
        int64_t acc = 0;
        bool ok = true;
        for (size_t j = int_start; j < int_end; j++) {
            int dig = s[j] - '0';
            if (acc < (INT64_MIN + dig) / 10) { ok = false; break; }
            acc = acc * 10 - dig;
        }
        if (ok && !neg && acc == INT64_MIN) ok = false;
        if (ok) { v->i64_ok = true; v->i64 = neg ? acc : -acc; }
    } else if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        v->i64_ok = true;
        v->i64 = (int64_t)d;
    }
    p->pos = i;
    return 0;
}

static int parse_value(parser *p, wf_json *v, int depth);

static wf_json *push_item(parser *p, wf_json *v) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        if (nc > SIZE_MAX / sizeof(wf_json)) { fail_oom(p); return NULL; }
        wf_json *ni = wf__realloc(v->items, v->cap * sizeof(wf_json), nc * sizeof(wf_json));
        if (!ni) { fail_oom(p); return NULL; }
        v->items = ni;
        v->cap = nc;
    }
    wf_json *it = &v->items[v->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static int parse_array(parser *p, wf_json *v, int depth) {
    size_t start = p->pos;
    if (depth >= p->max_depth) return fail_at(p, start, "nesting deeper than %d", p->max_depth);
    v->type = WF_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') { p->pos++; return 0; }
    for (;;) {
        skip_ws(p);
        wf_json *it = push_item(p, v);
        if (!it) return p->code;
        if (parse_value(p, it, depth + 1)) return p->code;
        skip_ws(p);
        if (p->pos >= p->n) return fail_at(p, start, "unterminated array");
        unsigned char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == ']') { p->pos++; return 0; }
        return fail_at(p, p->pos, "expected ',' or ']' in array");
    }
}

static int parse_object(parser *p, wf_json *v, int depth) {
    size_t start = p->pos;
    if (depth >= p->max_depth) return fail_at(p, start, "nesting deeper than %d", p->max_depth);
    v->type = WF_JSON_OBJECT;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') { p->pos++; return 0; }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->n) return fail_at(p, start, "unterminated object");
        if (p->s[p->pos] != '"') return fail_at(p, p->pos, "expected a string key in object");
        char *key;
        size_t key_len;
        if (parse_string(p, &key, &key_len)) return p->code;
        wf_json *it = push_item(p, v);
        if (!it) { wf__free(key, key_len + 1); return p->code; }
        it->key = key;
        it->key_len = key_len;
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') return fail_at(p, p->pos, "expected ':' after object key");
        p->pos++;
        skip_ws(p);
        if (parse_value(p, it, depth + 1)) return p->code;
        skip_ws(p);
        if (p->pos >= p->n) return fail_at(p, start, "unterminated object");
        unsigned char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == '}') { p->pos++; return 0; }
        return fail_at(p, p->pos, "expected ',' or '}' in object");
    }
}

static bool literal(parser *p, const char *lit) {
    size_t n = strlen(lit);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, lit, n)) return false;
    p->pos += n;
    return true;
}

static int parse_value(parser *p, wf_json *v, int depth) {
    skip_ws(p);
    if (p->pos >= p->n) return fail_at(p, p->pos, "unexpected end of input (value expected)");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, v, depth);
    case '[': return parse_array(p, v, depth);
    case '"':
        v->type = WF_JSON_STRING;
        return parse_string(p, &v->str, &v->str_len);
    case 't':
        if (literal(p, "true")) { v->type = WF_JSON_BOOL; v->boolean = true; return 0; }
        break;
    case 'f':
        if (literal(p, "false")) { v->type = WF_JSON_BOOL; v->boolean = false; return 0; }
        break;
    case 'n':
        if (literal(p, "null")) { v->type = WF_JSON_NULL; return 0; }
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        break;
    }
    if (c >= 0x20 && c < 0x7f) return fail_at(p, p->pos, "unexpected character '%c'", c);
    return fail_at(p, p->pos, "unexpected byte 0x%02x", c);
}

static void free_children(wf_json *v) {
    if (v->key) wf__free(v->key, v->key_len + 1);
    if (v->str) wf__free(v->str, v->str_len + 1);
    for (size_t i = 0; i < v->n; i++) free_children(&v->items[i]);
    if (v->items) wf__free(v->items, v->cap * sizeof(wf_json));
}

void wf__json_free(wf_json *v) {
    if (!v) return;
    free_children(v);
    wf__free(v, sizeof *v);
}

int wf__json_parse(const char *s, size_t len, int max_depth, wf_json **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (out) *out = NULL;
    parser p = { (const unsigned char *)s, len, 0, max_depth > 0 ? max_depth : WF_JSON_DEFAULT_DEPTH,
                 0, err, errlen };
    if (!s && len) return fail_at(&p, 0, "NULL input");
    if (!out) return fail_at(&p, 0, "NULL output");
    wf_json *v = wf__malloc(sizeof *v);
    if (!v) return fail_oom(&p);
    memset(v, 0, sizeof *v);
    if (parse_value(&p, v, 0) == 0) {
        skip_ws(&p);
        if (p.pos != p.n) fail_at(&p, p.pos, "trailing characters after the JSON value");
    }
    if (p.code) {
        wf__json_free(v);
        return p.code;
    }
    *out = v;
    return 0;
}

const wf_json *wf__json_get(const wf_json *v, const char *key) {
    if (!v || v->type != WF_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i].key_len == kl && !memcmp(v->items[i].key, key, kl)) return &v->items[i];
    return NULL;
}

const wf_json *wf__json_at(const wf_json *v, size_t i) {
    if (!v || (v->type != WF_JSON_ARRAY && v->type != WF_JSON_OBJECT) || i >= v->n) return NULL;
    return &v->items[i];
}

const char *wf__json_str(const wf_json *v) {
    return v && v->type == WF_JSON_STRING ? v->str : NULL;
}

bool wf__json_int(const wf_json *v, int64_t *out) {
    if (!v || v->type != WF_JSON_NUMBER || !v->i64_ok) return false;
    if (out) *out = v->i64;
    return true;
}

/* ---------------------------------------------------------------- writer */

void wf__sb_init(wf_sb *b) { memset(b, 0, sizeof *b); }

void wf__sb_free(wf_sb *b) {
    if (b->buf) wf__free(b->buf, b->cap);
    memset(b, 0, sizeof *b);
}

bool wf__sb_failed(const wf_sb *b) { return b->failed; }

static bool sb_reserve(wf_sb *b, size_t extra) {
    if (b->failed) return false;
    if (extra > SIZE_MAX - b->len - 1) { b->failed = true; return false; }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) { nc = need; break; }
        nc *= 2;
    }
    char *nb = wf__realloc(b->buf, b->cap, nc);
    if (!nb) { b->failed = true; return false; }
    b->buf = nb;
    b->cap = nc;
    return true;
}

void wf__sb_append(wf_sb *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void wf__sb_puts(wf_sb *b, const char *s) { wf__sb_append(b, s, strlen(s)); }
void wf__sb_putc(wf_sb *b, char c) { wf__sb_append(b, &c, 1); }

void wf__sb_printf(wf_sb *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = true; va_end(ap2); return; }
    if ((size_t)n < sizeof small) {
        wf__sb_append(b, small, (size_t)n);
    } else if (sb_reserve(b, (size_t)n)) {
        vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void wf__sb_json_string(wf_sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    wf__sb_putc(b, '"');
    size_t run = 0; /* start of a run of bytes copied verbatim */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                ubuf[0] = '\\'; ubuf[1] = 'u'; ubuf[2] = '0'; ubuf[3] = '0';
                ubuf[4] = hex[c >> 4]; ubuf[5] = hex[c & 15]; ubuf[6] = '\0';
                esc = ubuf;
            }
        }
        if (esc) {
            wf__sb_append(b, s + run, i - run);
            wf__sb_puts(b, esc);
            run = i + 1;
        }
    }
    wf__sb_append(b, s + run, n - run);
    wf__sb_putc(b, '"');
}

void wf__sb_json_int(wf_sb *b, int64_t v) { wf__sb_printf(b, "%lld", (long long)v); }

void wf__sb_json_number(wf_sb *b, double v) {
    if (!isfinite(v)) { wf__sb_puts(b, "null"); return; }
    if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
        if (v == 0 && signbit(v)) wf__sb_puts(b, "-0.0");
        else wf__sb_json_int(b, (int64_t)v);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    /* the locale's decimal point back to '.' */
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *q = strchr(buf, dp[0]);
        if (q) *q = '.';
    }
    wf__sb_puts(b, buf);
}

void wf__sb_json_value(wf_sb *b, const wf_json *v) {
    if (!v) { wf__sb_puts(b, "null"); return; }
    switch (v->type) {
    case WF_JSON_NULL: wf__sb_puts(b, "null"); break;
    case WF_JSON_BOOL: wf__sb_puts(b, v->boolean ? "true" : "false"); break;
    case WF_JSON_NUMBER:
        if (v->i64_ok) wf__sb_json_int(b, v->i64);
        else wf__sb_json_number(b, v->number);
        break;
    case WF_JSON_STRING: wf__sb_json_string(b, v->str, v->str_len); break;
    case WF_JSON_ARRAY:
        wf__sb_putc(b, '[');
        for (size_t i = 0; i < v->n; i++) {
            if (i) wf__sb_putc(b, ',');
            wf__sb_json_value(b, &v->items[i]);
        }
        wf__sb_putc(b, ']');
        break;
    case WF_JSON_OBJECT:
        wf__sb_putc(b, '{');
        for (size_t i = 0; i < v->n; i++) {
            if (i) wf__sb_putc(b, ',');
            wf__sb_json_string(b, v->items[i].key, v->items[i].key_len);
            wf__sb_putc(b, ':');
            wf__sb_json_value(b, &v->items[i]);
        }
        wf__sb_putc(b, '}');
        break;
    }
}

char *wf__sb_take(wf_sb *b, size_t *len) {
    if (b->failed) { wf__sb_free(b); if (len) *len = 0; return NULL; }
    if (!b->buf && !sb_reserve(b, 0)) { wf__sb_free(b); if (len) *len = 0; return NULL; }
    char *r = b->buf;
    if (len) *len = b->len;
    memset(b, 0, sizeof *b);
    return r;
}
