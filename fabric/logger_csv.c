/* fabric/logger_csv.c: Lightning Fabric's CSVLogger: root/name/version_N/metrics.csv.
 * Every row is a dict of metrics plus "step"; the header is the sorted union of all keys
 * seen; a key that appears later makes the file be rewritten with the new header (as
 * Lightning's _ExperimentWriter does). Rows are buffered and written every
 * flush_logs_every_n_steps rows and when the logger is flushed or freed. */
#include "fabric/logger_impl.h"
#include "io/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct csv_cell { int key; double v; } csv_cell;
typedef struct csv_row { csv_cell *cells; int n; } csv_row;

typedef struct csv_impl {
    char **keys;          /* sorted, includes "step" */
    int n_keys, cap_keys;
    csv_row *rows;
    int n_rows, cap_rows;
    int written_rows;     /* rows already in the file */
    int written_keys;     /* n_keys when the file was last written (header) */
    int flush_every;
    int64_t counter;      /* rows logged: the step when none is given */
    char *path;
} csv_impl;

static int key_index(csv_impl *c, const char *k, bool add) {
    int lo = 0, hi = c->n_keys;
    while (lo < hi) {
        int mid = (lo + hi) / 2, r = strcmp(c->keys[mid], k);
        if (!r) return mid;
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    if (!add) return -1;
    if (c->n_keys == c->cap_keys) {
        int nc = c->cap_keys ? c->cap_keys * 2 : 8;
        char **v = wf__realloc(c->keys, (size_t)c->cap_keys * sizeof *v, (size_t)nc * sizeof *v);
        if (!v) return WF_ENOMEM;
        c->keys = v;
        c->cap_keys = nc;
    }
    char *d = wf__strdup(k);
    if (!d) return WF_ENOMEM;
    /* key indices in stored rows refer to positions: remap them */
    for (int r = 0; r < c->n_rows; r++)
        for (int j = 0; j < c->rows[r].n; j++) if (c->rows[r].cells[j].key >= lo) c->rows[r].cells[j].key++;
    memmove(c->keys + lo + 1, c->keys + lo, (size_t)(c->n_keys - lo) * sizeof *c->keys);
    c->keys[lo] = d;
    c->n_keys++;
    c->written_keys = -1;   /* the header changed */
    return lo;
}

/* shortest text that reads back as the same double (Python's repr of a float) */
static void put_number(FILE *f, double v) {
    char b[40];
    if (v != v) { fputs("nan", f); return; }
    if (v == (double)(1.0 / 0.0)) { fputs("inf", f); return; }
    if (v == -(double)(1.0 / 0.0)) { fputs("-inf", f); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v) break;
    }
    if (!strchr(b, '.') && !strchr(b, 'e') && !strchr(b, 'n') && !strchr(b, 'i')) strcat(b, ".0");
    fputs(b, f);
}

static void put_key(FILE *f, const char *k) {
    if (!strpbrk(k, ",\"\n\r")) { fputs(k, f); return; }
    fputc('"', f);
    for (; *k; k++) { if (*k == '"') fputc('"', f); fputc(*k, f); }
    fputc('"', f);
}

static void put_row(FILE *f, csv_impl *c, const csv_row *r) {
    int step_key = key_index(c, "step", false);
    for (int k = 0; k < c->n_keys; k++) {
        if (k) fputc(',', f);
        for (int j = 0; j < r->n; j++) {
            if (r->cells[j].key != k) continue;
            if (k == step_key) fprintf(f, "%lld", (long long)r->cells[j].v);
            else put_number(f, r->cells[j].v);
            break;
        }
    }
    fputc('\n', f);
}

static int csv_flush(wf_logger *l) {
    csv_impl *c = l->impl;
    if (c->written_rows == c->n_rows && c->written_keys == c->n_keys) return 0;
    bool rewrite = c->written_keys != c->n_keys;
    FILE *f = fopen(c->path, rewrite ? "w" : "a");
    if (!f) return wf__error(WF_EIO, "CSVLogger: cannot write %s: %s", c->path, strerror(errno));
    int from = c->written_rows;
    if (rewrite) {
        for (int k = 0; k < c->n_keys; k++) { if (k) fputc(',', f); put_key(f, c->keys[k]); }
        fputc('\n', f);
        from = 0;
    }
    for (int r = from; r < c->n_rows; r++) put_row(f, c, &c->rows[r]);
    int bad = ferror(f);
    if (fclose(f) || bad) return wf__error(WF_EIO, "CSVLogger: writing %s failed", c->path);
    c->written_rows = c->n_rows;
    c->written_keys = c->n_keys;
    return 0;
}

static int csv_log_metrics(wf_logger *l, const char *const *names, const double *values, int n, int64_t step) {
    csv_impl *c = l->impl;
    if (step < 0) step = c->counter;
    c->counter++;
    if (c->n_rows == c->cap_rows) {
        int nc = c->cap_rows ? c->cap_rows * 2 : 64;
        csv_row *v = wf__realloc(c->rows, (size_t)c->cap_rows * sizeof *v, (size_t)nc * sizeof *v);
        if (!v) return wf__error(WF_ENOMEM, "CSVLogger: out of memory");
        c->rows = v;
        c->cap_rows = nc;
    }
    csv_row row = { wf__calloc((size_t)n + 1, sizeof(csv_cell)), 0 };
    if (!row.cells) return wf__error(WF_ENOMEM, "CSVLogger: out of memory");
    c->rows[c->n_rows++] = row;   /* registered first so key remapping sees it */
    csv_row *r = &c->rows[c->n_rows - 1];
    for (int i = 0; i <= n; i++) {
        const char *k = i < n ? names[i] : "step";
        int ki = key_index(c, k, true);
        if (ki < 0) return wf__error(WF_ENOMEM, "CSVLogger: out of memory");
        int j;
        for (j = 0; j < r->n; j++) if (r->cells[j].key == ki) break;
        r->cells[j] = (csv_cell){ ki, i < n ? values[i] : (double)step };
        if (j == r->n) r->n++;
    }
    if (c->n_rows - c->written_rows >= c->flush_every) return csv_flush(l);
    return 0;
}

static void csv_free(wf_logger *l) {
    csv_impl *c = l->impl;
    if (c) {
        if (csv_flush(l)) fprintf(stderr, "weft: warning: %s\n", wf_error_message());
        for (int k = 0; k < c->n_keys; k++) wf__free(c->keys[k], 0);
        for (int r = 0; r < c->n_rows; r++) wf__free(c->rows[r].cells, 0);
        wf__free(c->keys, 0);
        wf__free(c->rows, 0);
        wf__free(c->path, 0);
        wf__free(c, sizeof *c);
    }
    wf__logger_release(l);
}

static const wf_logger_vtable csv_vt = {
    .kind = "csv", .log_metrics = csv_log_metrics, .log_hyperparams = NULL, .flush = csv_flush, .free = csv_free,
};

wf_logger *wf_csv_logger_new(const char *root_dir, const wf_logger_opts *opts) {
    wf_logger *l = wf__logger_new("wf_csv_logger_new", &csv_vt, root_dir, opts);
    if (!l) return NULL;
    csv_impl *c = wf__calloc(1, sizeof *c);
    size_t pl = strlen(l->log_dir) + 16;
    if (!c || !(c->path = wf__malloc(pl))) {
        wf__free(c, sizeof *c);
        wf__logger_release(l);
        wf__error(WF_ENOMEM, "wf_csv_logger_new: out of memory");
        return NULL;
    }
    snprintf(c->path, pl, "%s/metrics.csv", l->log_dir);
    c->flush_every = opts && opts->flush_logs_every_n_steps > 0 ? opts->flush_logs_every_n_steps : 100;
    c->written_keys = 0;
    l->impl = c;
    return l;
}
