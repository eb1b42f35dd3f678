/* optim/ojson.c: the small JSON writer and reader used by the optimizer and scheduler state
 * dicts (optim/ sits below io/, so it carries its own). The reader treats its input as
 * hostile: depth-limited, every access bounds-checked, no recursion without a limit. */
#include "optim_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- writer */

static void sb_vprintf(wf_osbuf *b, const char *fmt, va_list ap) {
    if (b->oom) return;
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = b->cap - b->n;
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
    if (k < 0) { b->oom = true; va_end(ap2); return; }
    if ((size_t)k >= room || !b->p) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = wf__realloc(b->p, b->cap, cap);
        if (!p) { b->oom = true; va_end(ap2); return; }
        b->p = p;
        b->cap = cap;
        vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap2);
    }
    b->n += (size_t)k;
    va_end(ap2);
}

void wf__osb_printf(wf_osbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

void wf__osb_double(wf_osbuf *b, double v) {
    if (isnan(v)) { wf__osb_printf(b, "NaN"); return; }
    if (isinf(v)) { wf__osb_printf(b, v > 0 ? "Infinity" : "-Infinity"); return; }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* keep floats looking like floats (Python writes 1.0, not 1) */
    if (!strpbrk(tmp, ".eE")) strncat(tmp, ".0", sizeof tmp - strlen(tmp) - 1);
    wf__osb_printf(b, "%s", tmp);
}

void wf__osb_free(wf_osbuf *b) {
    if (b->p) wf__free(b->p, b->cap);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- reader */

typedef struct jp { const char *s; size_t i; const char *op; int depth; } jp;

#define JMAX_DEPTH 64

static int jerr(jp *p, const char *what) {
    return wf__error(WF_ECORRUPT, "%s: malformed JSON at byte %zu: %s", p->op, p->i, what);
}

static void skip_ws(jp *p) {
    while (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r') p->i++;
}

static int parse_value(jp *p, wf_ojval *v);

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_string(jp *p, char **out) {
    if (p->s[p->i] != '"') return jerr(p, "expected a string");
    p->i++;
    size_t start = p->i, len = 0;
    /* first pass: find the end and an upper bound on the length */
    for (size_t j = start;; j++) {
        char c = p->s[j];
        if (!c) { p->i = j; return jerr(p, "unterminated string"); }
        if (c == '"') { len = j - start; break; }
        if (c == '\\') { if (!p->s[j + 1]) { p->i = j; return jerr(p, "unterminated string"); } j++; }
    }
    char *r = wf__malloc(len * 3 + 1);   /* \uXXXX (6 bytes) -> at most 3 bytes of UTF-8 */
    if (!r) return wf__error(WF_ENOMEM, "%s: out of memory", p->op);
    size_t k = 0;
    while (p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i++];
        if (c < 0x20) { wf__free(r, len * 3 + 1); p->i--; return jerr(p, "control character in string"); }
        if (c != '\\') { r[k++] = (char)c; continue; }
        char e = p->s[p->i++];
        switch (e) {
        case '"': r[k++] = '"'; break;
        case '\\': r[k++] = '\\'; break;
        case '/': r[k++] = '/'; break;
        case 'b': r[k++] = '\b'; break;
        case 'f': r[k++] = '\f'; break;
        case 'n': r[k++] = '\n'; break;
        case 'r': r[k++] = '\r'; break;
        case 't': r[k++] = '\t'; break;
        case 'u': {
            unsigned u = 0;
            for (int q = 0; q < 4; q++) {
                int h = hexval(p->s[p->i]);
                if (h < 0) { wf__free(r, len * 3 + 1); return jerr(p, "bad \\u escape"); }
                u = u * 16 + (unsigned)h;
                p->i++;
            }
            if (u == 0) { wf__free(r, len * 3 + 1); return jerr(p, "\\u0000 in string"); }
            if (u < 0x80) r[k++] = (char)u;
            else if (u < 0x800) { r[k++] = (char)(0xc0 | (u >> 6)); r[k++] = (char)(0x80 | (u & 0x3f)); }
            else {
                r[k++] = (char)(0xe0 | (u >> 12));
                r[k++] = (char)(0x80 | ((u >> 6) & 0x3f));
                r[k++] = (char)(0x80 | (u & 0x3f));
            }
            break;
        }
        default: wf__free(r, len * 3 + 1); p->i--; return jerr(p, "bad escape");
        }
    }
    p->i++;
    r[k] = 0;
    /* shrink to the exact size so wf__free gets the right length later */
    char *s = wf__malloc(k + 1);
    if (!s) { wf__free(r, len * 3 + 1); return wf__error(WF_ENOMEM, "%s: out of memory", p->op); }
    memcpy(s, r, k + 1);
    wf__free(r, len * 3 + 1);
    *out = s;
    return 0;
}

static int push_item(jp *p, wf_ojval *v, int *cap, wf_ojval *item, char *key) {
    if (v->n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        wf_ojval *it = wf__realloc(v->items, (size_t)*cap * sizeof *it, (size_t)nc * sizeof *it);
        if (!it) return wf__error(WF_ENOMEM, "%s: out of memory", p->op);
        v->items = it;
        if (v->type == WF_OJ_OBJ) {
            char **ks = wf__realloc(v->keys, (size_t)*cap * sizeof *ks, (size_t)nc * sizeof *ks);
            if (!ks) return wf__error(WF_ENOMEM, "%s: out of memory", p->op);
            v->keys = ks;
        }
        *cap = nc;
    }
    v->items[v->n] = *item;
    if (v->type == WF_OJ_OBJ) v->keys[v->n] = key;
    v->n++;
    return 0;
}

/* The container's capacity is kept in num (unused for ARR/OBJ) so free knows the sizes. */
static int parse_container(jp *p, wf_ojval *v, bool obj) {
    v->type = obj ? WF_OJ_OBJ : WF_OJ_ARR;
    int cap = 0;
    p->i++;
    if (++p->depth > JMAX_DEPTH) return jerr(p, "nesting too deep");
    skip_ws(p);
    char close = obj ? '}' : ']';
    if (p->s[p->i] == close) { p->i++; p->depth--; return 0; }
    for (;;) {
        skip_ws(p);
        char *key = NULL;
        if (obj) {
            int rc = parse_string(p, &key);
            if (rc) { v->num = cap; return rc; }
            skip_ws(p);
            if (p->s[p->i] != ':') { wf__free(key, strlen(key) + 1); v->num = cap; return jerr(p, "expected ':'"); }
            p->i++;
        }
        wf_ojval item;
        memset(&item, 0, sizeof item);
        int rc = parse_value(p, &item);
        if (!rc) rc = push_item(p, v, &cap, &item, key);
        v->num = cap;
        if (rc) {
            wf__ojson_free(&item);
            if (key) wf__free(key, strlen(key) + 1);
            return rc;
        }
        skip_ws(p);
        if (p->s[p->i] == ',') { p->i++; continue; }
        if (p->s[p->i] == close) { p->i++; break; }
        return jerr(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->depth--;
    return 0;
}

static int parse_value(jp *p, wf_ojval *v) {
    memset(v, 0, sizeof *v);
    skip_ws(p);
    const char *s = p->s + p->i;
    switch (*s) {
    case '{': return parse_container(p, v, true);
    case '[': return parse_container(p, v, false);
    case '"': v->type = WF_OJ_STR; return parse_string(p, &v->str);
    case 't': if (!strncmp(s, "true", 4)) { v->type = WF_OJ_BOOL; v->num = 1; p->i += 4; return 0; } break;
    case 'f': if (!strncmp(s, "false", 5)) { v->type = WF_OJ_BOOL; v->num = 0; p->i += 5; return 0; } break;
    case 'n': if (!strncmp(s, "null", 4)) { v->type = WF_OJ_NULL; p->i += 4; return 0; } break;
    case 'N': if (!strncmp(s, "NaN", 3)) { v->type = WF_OJ_NUM; v->num = NAN; p->i += 3; return 0; } break;
    case 'I': if (!strncmp(s, "Infinity", 8)) { v->type = WF_OJ_NUM; v->num = INFINITY; p->i += 8; return 0; } break;
    default: break;
    }
    if (*s == '-' && !strncmp(s, "-Infinity", 9)) { v->type = WF_OJ_NUM; v->num = -INFINITY; p->i += 9; return 0; }
    if (*s == '-' || (*s >= '0' && *s <= '9')) {
        /* JSON number grammar only (strtod alone would take hex, "inf", ...) */
        size_t j = 0;
        if (s[j] == '-') j++;
        if (!(s[j] >= '0' && s[j] <= '9')) return jerr(p, "bad number");
        while (s[j] >= '0' && s[j] <= '9') j++;
        if (s[j] == '.') { j++; if (!(s[j] >= '0' && s[j] <= '9')) return jerr(p, "bad number"); while (s[j] >= '0' && s[j] <= '9') j++; }
        if (s[j] == 'e' || s[j] == 'E') {
            j++;
            if (s[j] == '+' || s[j] == '-') j++;
            if (!(s[j] >= '0' && s[j] <= '9')) return jerr(p, "bad number");
            while (s[j] >= '0' && s[j] <= '9') j++;
        }
        char tmp[64];
        if (j >= sizeof tmp) return jerr(p, "number too long");
        memcpy(tmp, s, j);
        tmp[j] = 0;
        v->type = WF_OJ_NUM;
        v->num = strtod(tmp, NULL);
        p->i += j;
        return 0;
    }
    return jerr(p, *s ? "unexpected character" : "unexpected end");
}

int wf__ojson_parse(const char *op, const char *text, wf_ojval *out) {
    memset(out, 0, sizeof *out);
    if (!text) return wf__error(WF_ENULL, "%s: JSON text is NULL", op);
    jp p = { text, 0, op, 0 };
    int rc = parse_value(&p, out);
    if (!rc) {
        skip_ws(&p);
        if (p.s[p.i]) rc = jerr(&p, "trailing characters");
    }
    if (rc) wf__ojson_free(out);
    return rc;
}

void wf__ojson_free(wf_ojval *v) {
    if (!v) return;
    if (v->type == WF_OJ_STR && v->str) wf__free(v->str, strlen(v->str) + 1);
    if (v->type == WF_OJ_ARR || v->type == WF_OJ_OBJ) {
        size_t cap = (size_t)v->num;
        for (int i = 0; i < v->n; i++) {
            wf__ojson_free(&v->items[i]);
            if (v->type == WF_OJ_OBJ && v->keys[i]) wf__free(v->keys[i], strlen(v->keys[i]) + 1);
        }
        if (v->items) wf__free(v->items, cap * sizeof *v->items);
        if (v->keys) wf__free(v->keys, cap * sizeof *v->keys);
    }
    memset(v, 0, sizeof *v);
}

const wf_ojval *wf__ojson_get(const wf_ojval *obj, const char *key) {
    if (!obj || obj->type != WF_OJ_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}
