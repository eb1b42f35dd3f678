/* examples/gpt/gpt_data.c: text and token files, split, batches (see gpt_data.h). */
#include "gpt_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_all(const char *path, unsigned char **buf, int64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return wf_set_error(WF_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = 0;
    if (fseek(f, 0, SEEK_END) || (*n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        rc = wf_set_error(WF_EIO, "cannot size %s: %s", path, strerror(errno));
    else if (!(*buf = malloc(*n ? (size_t)*n : 1))) rc = wf_set_error(WF_ENOMEM, "%s: out of memory for %lld bytes", path, (long long)*n);
    else if (fread(*buf, 1, (size_t)*n, f) != (size_t)*n) {
        rc = wf_set_error(WF_EIO, "cannot read %s", path);
        free(*buf);
        *buf = NULL;
    }
    fclose(f);
    return rc;
}

static bool is_bin(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && !strcmp(path + n - 4, ".bin");
}

/* uint16 little endian, whatever the host's order */
static int load_tokens(const char *path, uint16_t **out, int64_t *n, int64_t *max_id) {
    unsigned char *b;
    int64_t bytes;
    int rc = read_all(path, &b, &bytes);
    if (rc) return rc;
    if (bytes % 2) {
        free(b);
        return wf_set_error(WF_ECORRUPT, "%s: %lld bytes is not a whole number of uint16 tokens", path, (long long)bytes);
    }
    *n = bytes / 2;
    *out = malloc(*n ? (size_t)*n * 2 : 2);
    if (!*out) {
        free(b);
        return wf_set_error(WF_ENOMEM, "%s: out of memory", path);
    }
    for (int64_t i = 0; i < *n; i++) {
        (*out)[i] = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
        if ((*out)[i] > *max_id) *max_id = (*out)[i];
    }
    free(b);
    return 0;
}

int gpt_data_load(gpt_data *d, const char *path, const char *val_path) {
    memset(d, 0, sizeof *d);
    if (!path) return wf_set_error(WF_ENULL, "no data file given (--data FILE)");
    int rc = 0;
    if (is_bin(path)) {
        int64_t max_id = 0, n;
        uint16_t *all;
        if ((rc = load_tokens(path, &all, &n, &max_id))) return rc;
        if (val_path) {
            d->train = all, d->n_train = n;
            rc = load_tokens(val_path, &d->val, &d->n_val, &max_id);
        } else {
            d->n_train = n * 9 / 10, d->n_val = n - d->n_train;
            d->train = all;
            d->val = malloc(d->n_val ? (size_t)d->n_val * 2 : 2);
            if (!d->val) rc = wf_set_error(WF_ENOMEM, "out of memory");
            else memcpy(d->val, all + d->n_train, (size_t)d->n_val * 2);
        }
        d->vocab_size = max_id + 1;
    } else {
        unsigned char *text;
        int64_t n;
        if ((rc = read_all(path, &text, &n))) return rc;
        bool seen[256] = { 0 };
        for (int64_t i = 0; i < n; i++) seen[text[i]] = true;
        d->chars = true;
        for (int c = 0; c < 256; c++) {
            d->stoi[c] = -1;
            if (seen[c]) {
                d->stoi[c] = (int16_t)d->vocab_size;
                d->itos[d->vocab_size++] = (unsigned char)c;
            }
        }
        d->n_train = n * 9 / 10, d->n_val = n - d->n_train;
        d->train = malloc(d->n_train ? (size_t)d->n_train * 2 : 2);
        d->val = malloc(d->n_val ? (size_t)d->n_val * 2 : 2);
        if (!d->train || !d->val) rc = wf_set_error(WF_ENOMEM, "%s: out of memory", path);
        for (int64_t i = 0; !rc && i < n; i++) {
            uint16_t id = (uint16_t)d->stoi[text[i]];
            if (i < d->n_train) d->train[i] = id;
            else d->val[i - d->n_train] = id;
        }
        free(text);
    }
    if (rc) gpt_data_free(d);
    return rc;
}

void gpt_data_free(gpt_data *d) {
    free(d->train);
    free(d->val);
    d->train = d->val = NULL;
}

int gpt_get_batch(const gpt_data *d, bool train, int64_t B, int64_t T, wf_tensor **x, wf_tensor **y) {
    const uint16_t *src = train ? d->train : d->val;
    int64_t n = train ? d->n_train : d->n_val;
    if (n < T + 1)
        return wf_set_error(WF_EINVAL, "the %s split has %lld tokens: too few for a block of %lld (+1 for the targets)",
                            train ? "train" : "val", (long long)n, (long long)T);
    int64_t *ix = malloc((size_t)B * sizeof *ix), *bx = malloc((size_t)(B * T) * sizeof *bx),
            *by = malloc((size_t)(B * T) * sizeof *by);
    int rc = ix && bx && by ? 0 : wf_set_error(WF_ENOMEM, "gpt_get_batch: out of memory");
    if (!rc) rc = wf_to_array(wf_randint(0, n - T, WF_SHAPE(B), WF_I64), ix, WF_I64);
    for (int64_t b = 0; b < B && !rc; b++)
        for (int64_t t = 0; t < T; t++) {
            bx[b * T + t] = src[ix[b] + t];
            by[b * T + t] = src[ix[b] + t + 1];
        }
    if (!rc) {
        *x = wf_from_data(bx, WF_SHAPE(B, T), WF_I64);
        *y = wf_from_data(by, WF_SHAPE(B, T), WF_I64);
        if (!*x || !*y) rc = wf_error();
    }
    free(ix);
    free(bx);
    free(by);
    return rc;
}

int gpt_encode(const gpt_data *d, const char *s, int64_t *ids, int64_t cap, int64_t *n) {
    *n = 0;
    for (; *s; s++) {
        if (*n >= cap) return wf_set_error(WF_EINVAL, "the prompt is longer than %lld characters", (long long)cap);
        int id = d->chars ? d->stoi[(unsigned char)*s] : -1;
        if (id < 0) return wf_set_error(WF_EINVAL, "the prompt's character '%c' is not in the training text", *s);
        ids[(*n)++] = id;
    }
    return 0;
}

void gpt_decode(const gpt_data *d, const int64_t *ids, int64_t n, FILE *out) {
    for (int64_t i = 0; i < n; i++) {
        if (d->chars) fputc(d->itos[ids[i] & 0xff], out);
        else fprintf(out, "%s%lld", i ? " " : "", (long long)ids[i]);
    }
}
