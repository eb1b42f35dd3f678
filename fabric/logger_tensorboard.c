/* fabric/logger_tensorboard.c: TensorBoard event files written by hand.
 *
 * A file is a sequence of TFRecords: uint64 length (little-endian), uint32 masked CRC-32C
 * of those 8 bytes, the data, uint32 masked CRC-32C of the data. Each record is a
 * serialized tensorflow.Event protocol buffer:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; SummaryMetadata metadata = 9; }
 *   SummaryMetadata { PluginData plugin_data = 1; }   PluginData { string plugin_name = 1; bytes content = 2; }
 * Hyperparameters use the hparams plugin (tensorboard/plugins/hparams/plugin_data.proto):
 *   HParamsPluginData { int32 version = 1; Experiment experiment = 2;
 *                       SessionStartInfo session_start_info = 3; SessionEndInfo session_end_info = 4; }
 *   SessionStartInfo  { map<string, google.protobuf.Value> hparams = 1; double start_time_secs = 5; }
 *   Experiment        { repeated HParamInfo hparam_infos = 4; repeated MetricInfo metric_infos = 5; }
 *   HParamInfo        { string name = 1; DataType type = 4; }   MetricInfo { MetricName name = 1; }
 *   MetricName        { string group = 1; string tag = 2; }     SessionEndInfo { Status status = 1; }
 *   google.protobuf.Value { double number_value = 2; string string_value = 3; }
 * as torch.utils.tensorboard.summary.hparams writes them (with the metric "hp_metric",
 * as Lightning's TensorBoardLogger does). */
#include "fabric/logger_impl.h"
#include "weft/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- protobuf writer */

typedef struct pb { uint8_t *p; size_t n, cap; bool oom; } pb;

static void pb_raw(pb *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n) nc *= 2;
        uint8_t *q = wf__realloc(b->p, b->cap, nc);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void pb_varint(pb *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do { t[n] = (uint8_t)(v & 0x7f); v >>= 7; if (v) t[n] |= 0x80; n++; } while (v);
    pb_raw(b, t, (size_t)n);
}
static void pb_key(pb *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }
static void pb_double(pb *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t t[8];
    for (int i = 0; i < 8; i++) t[i] = (uint8_t)(u >> (8 * i));
    pb_key(b, field, 1);
    pb_raw(b, t, 8);
}
static void pb_float(pb *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t t[4];
    for (int i = 0; i < 4; i++) t[i] = (uint8_t)(u >> (8 * i));
    pb_key(b, field, 5);
    pb_raw(b, t, 4);
}
static void pb_int(pb *b, int field, int64_t v) { pb_key(b, field, 0); pb_varint(b, (uint64_t)v); }
static void pb_bytes(pb *b, int field, const void *d, size_t n) { pb_key(b, field, 2); pb_varint(b, n); pb_raw(b, d, n); }
static void pb_str(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
static void pb_msg(pb *b, int field, pb *m) {
    if (m->oom) b->oom = true;
    pb_bytes(b, field, m->p, m->n);
}
static void pb_free(pb *b) { wf__free(b->p, b->cap); memset(b, 0, sizeof *b); }

/* ---------------------------------------------------------------- the logger */

typedef struct tb_impl {
    FILE *f;
    char *path;
    int64_t counter;
} tb_impl;

static double now_s(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static int write_record(wf_logger *l, pb *ev) {
    tb_impl *t = l->impl;
    if (ev->oom) return wf__error(WF_ENOMEM, "TensorBoardLogger: out of memory");
    uint8_t hdr[12];
    uint64_t len = ev->n;
    for (int i = 0; i < 8; i++) hdr[i] = (uint8_t)(len >> (8 * i));
    uint32_t c1 = wf_crc32c_mask(wf_crc32c(0, hdr, 8));
    for (int i = 0; i < 4; i++) hdr[8 + i] = (uint8_t)(c1 >> (8 * i));
    uint32_t c2 = wf_crc32c_mask(wf_crc32c(0, ev->p, ev->n));
    uint8_t tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (uint8_t)(c2 >> (8 * i));
    if (fwrite(hdr, 1, 12, t->f) != 12 || fwrite(ev->p, 1, ev->n, t->f) != ev->n || fwrite(tail, 1, 4, t->f) != 4 ||
        fflush(t->f))
        return wf__error(WF_EIO, "TensorBoardLogger: writing %s failed: %s", t->path, strerror(errno));
    return 0;
}

/* An Event holding one Summary.Value (already encoded in val). */
static int write_summary(wf_logger *l, pb *val, int64_t step) {
    pb sum = { 0 }, ev = { 0 };
    pb_msg(&sum, 1, val);
    pb_double(&ev, 1, now_s());
    pb_int(&ev, 2, step);
    pb_msg(&ev, 5, &sum);
    int rc = write_record(l, &ev);
    pb_free(&sum);
    pb_free(&ev);
    return rc;
}

static int tb_log_metrics(wf_logger *l, const char *const *names, const double *values, int n, int64_t step) {
    tb_impl *t = l->impl;
    if (step < 0) step = t->counter;
    t->counter++;
    for (int i = 0; i < n; i++) {
        pb val = { 0 };
        pb_str(&val, 1, names[i]);
        pb_float(&val, 2, (float)values[i]);
        int rc = write_summary(l, &val, step);
        pb_free(&val);
        if (rc) return rc;
    }
    return 0;
}

/* a Summary.Value "_hparams_/<what>" whose plugin content is HParamsPluginData{field: msg} */
static int write_hparams_value(wf_logger *l, const char *tag, int field, pb *msg) {
    pb content = { 0 }, pd = { 0 }, md = { 0 }, val = { 0 };
    pb_int(&content, 1, 0);          /* version */
    pb_msg(&content, field, msg);
    pb_str(&pd, 1, "hparams");
    pb_msg(&pd, 2, &content);
    pb_msg(&md, 1, &pd);
    pb_str(&val, 1, tag);
    pb_msg(&val, 9, &md);
    int rc = write_summary(l, &val, 0);
    pb_free(&content); pb_free(&pd); pb_free(&md); pb_free(&val);
    return rc;
}

static int tb_log_hyperparams(wf_logger *l, const char *const *names, const char *const *str_values,
                              const double *num_values, const bool *is_number, int n) {
    /* experiment: the hparam infos and the metric "hp_metric" */
    pb exp = { 0 }, ssi = { 0 }, sei = { 0 };
    for (int i = 0; i < n; i++) {
        pb info = { 0 };
        pb_str(&info, 1, names[i]);
        pb_int(&info, 4, is_number[i] ? 3 : 1);   /* DATA_TYPE_FLOAT64 / DATA_TYPE_STRING */
        pb_msg(&exp, 4, &info);
        pb_free(&info);
    }
    pb mname = { 0 }, minfo = { 0 };
    pb_str(&mname, 2, "hp_metric");
    pb_msg(&minfo, 1, &mname);
    pb_msg(&exp, 5, &minfo);
    pb_free(&mname); pb_free(&minfo);
    /* session start: map<string, Value> hparams = 1 (map entries: key = 1, value = 2) */
    for (int i = 0; i < n; i++) {
        pb v = { 0 }, entry = { 0 };
        if (is_number[i]) pb_double(&v, 2, num_values[i]);
        else pb_str(&v, 3, str_values[i]);
        pb_str(&entry, 1, names[i]);
        pb_msg(&entry, 2, &v);
        pb_msg(&ssi, 1, &entry);
        pb_free(&v); pb_free(&entry);
    }
    pb_double(&ssi, 5, now_s());
    pb_int(&sei, 1, 1);   /* STATUS_SUCCESS */
    int rc = write_hparams_value(l, "_hparams_/experiment", 2, &exp);
    if (!rc) rc = write_hparams_value(l, "_hparams_/session_start_info", 3, &ssi);
    if (!rc) rc = write_hparams_value(l, "_hparams_/session_end_info", 4, &sei);
    pb_free(&exp); pb_free(&ssi); pb_free(&sei);
    if (!rc) {
        /* Lightning logs hp_metric = -1 so the hparams tab has a metric column */
        const char *hp = "hp_metric";
        double v = -1;
        rc = tb_log_metrics(l, &hp, &v, 1, 0);
        ((tb_impl *)l->impl)->counter--;
    }
    return rc;
}

static int tb_flush(wf_logger *l) {
    tb_impl *t = l->impl;
    if (fflush(t->f)) return wf__error(WF_EIO, "TensorBoardLogger: flushing %s failed: %s", t->path, strerror(errno));
    return 0;
}

static void tb_free(wf_logger *l) {
    tb_impl *t = l->impl;
    if (t) {
        if (t->f && fclose(t->f)) fprintf(stderr, "weft: warning: TensorBoardLogger: closing %s failed\n", t->path);
        wf__free(t->path, 0);
        wf__free(t, sizeof *t);
    }
    wf__logger_release(l);
}

static const wf_logger_vtable tb_vt = {
    .kind = "tensorboard", .log_metrics = tb_log_metrics, .log_hyperparams = tb_log_hyperparams,
    .flush = tb_flush, .free = tb_free,
};

wf_logger *wf_tensorboard_logger_new(const char *root_dir, const wf_logger_opts *opts) {
    static int uid;
    wf_logger *l = wf__logger_new("wf_tensorboard_logger_new", &tb_vt, root_dir, opts);
    if (!l) return NULL;
    tb_impl *t = wf__calloc(1, sizeof *t);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    size_t pl = strlen(l->log_dir) + strlen(host) + 96;
    if (!t || !(t->path = wf__malloc(pl))) {
        wf__free(t, sizeof *t);
        wf__logger_release(l);
        wf__error(WF_ENOMEM, "wf_tensorboard_logger_new: out of memory");
        return NULL;
    }
    snprintf(t->path, pl, "%s/events.out.tfevents.%010lld.%s.%d.%d", l->log_dir, (long long)now_s(), host,
             (int)getpid(), uid++);
    l->impl = t;
    t->f = fopen(t->path, "wb");
    if (!t->f) {
        wf__error(WF_EIO, "wf_tensorboard_logger_new: cannot create %s: %s", t->path, strerror(errno));
        tb_free(l);
        return NULL;
    }
    pb ev = { 0 };
    pb_double(&ev, 1, now_s());
    pb_str(&ev, 3, "brain.Event:2");
    int rc = write_record(l, &ev);
    pb_free(&ev);
    if (rc) { tb_free(l); return NULL; }
    return l;
}
