/* fabric/throughput.c: Lightning's throughput utilities (lightning.fabric.utilities.throughput):
 * the peak table (get_available_flops), measure_flops on the meta device, and Throughput /
 * ThroughputMonitor's sliding window of rates and MFU. */
#include "fabric/fabric_impl.h"
#include "weft/fabric.h"
#include "weft/cuda.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* ---------------------------------------------------------------- peak table */

/* Dense tensor-core figures per card (NVIDIA data sheets; their headline numbers assume 2:4
 * sparsity and are twice these). H200 has the H100 SXM's compute with more, faster memory. */
enum { P_F64, P_F32, P_TF32, P_BF16, P_F16, P_FP8, P_N };
static const struct { const char *name; double flops[P_N]; } gpu_peaks[] = {
    { "h100 sxm", { 33.5e12, 66.9e12, 494.7e12, 989.4e12, 989.4e12, 1978.9e12 } },
    { "h100 pcie", { 25.6e12, 51.2e12, 378e12, 756e12, 756e12, 1513e12 } },
    { "h100 nvl", { 30e12, 60e12, 417.5e12, 835.5e12, 835.5e12, 1670.5e12 } },
    { "h200", { 34e12, 67e12, 494.7e12, 989.4e12, 989.4e12, 1978.9e12 } },
    { "a100", { 9.7e12, 19.5e12, 156e12, 312e12, 312e12, 0 } },
};

static bool has(const char *hay, const char *needle) {
    for (; *hay; hay++) {
        size_t i = 0;
        while (needle[i] && hay[i] && tolower((unsigned char)hay[i]) == needle[i]) i++;
        if (!needle[i]) return true;
    }
    return false;
}

/* "NVIDIA H100 80GB HBM3" -> "h100 sxm" (the SXM card is the one without a form factor in
 * its name), as Lightning's get_available_flops maps torch.cuda.get_device_name. */
static int gpu_row(const char *name) {
    if (has(name, "h200")) return 3;
    if (has(name, "h100")) return has(name, "pcie") ? 1 : has(name, "nvl") ? 2 : 0;
    if (has(name, "a100")) return 4;
    return -1;
}

static int precision_col(const char *p, bool tf32) {
    if (!strcmp(p, "64-true") || !strcmp(p, "64")) return P_F64;
    if (!strcmp(p, "32-true") || !strcmp(p, "32")) return tf32 ? P_TF32 : P_F32;
    if (!strncmp(p, "bf16", 4)) return P_BF16;
    if (!strcmp(p, "16-mixed") || !strcmp(p, "16-true") || !strcmp(p, "16")) return P_F16;
    if (!strncmp(p, "transformer-engine", 18)) return P_FP8;
    return -1;
}

double wf_get_available_flops(const char *device_name, const char *precision, bool tf32) {
    if (!device_name || !precision) {
        wf__error(WF_ENULL, "wf_get_available_flops: device_name and precision must not be NULL");
        return 0;
    }
    int row = gpu_row(device_name), col = precision_col(precision, tf32);
    if (row < 0) {
        wf__error(WF_ENOTFOUND, "wf_get_available_flops: no peak FLOP/s known for device '%s' "
                  "(known: H100 SXM/PCIe/NVL, H200, A100; the CPU: wf_cpu_peak_flops)", device_name);
        return 0;
    }
    if (col < 0 || gpu_peaks[row].flops[col] == 0) {
        wf__error(WF_ENOTFOUND, "wf_get_available_flops: no peak FLOP/s known for precision '%s' on %s",
                  precision, gpu_peaks[row].name);
        return 0;
    }
    return gpu_peaks[row].flops[col];
}

/* the highest "cpu MHz" line: cores idle at lower clocks, the peak is the fastest */
static double cpuinfo_ghz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[512];
    double best = 0;
    while (fgets(line, sizeof line, f)) {
        double mhz;
        if (!strncmp(line, "cpu MHz", 7) && sscanf(strchr(line, ':') ? strchr(line, ':') + 1 : "", "%lf", &mhz) == 1 &&
            mhz > best)
            best = mhz;
    }
    fclose(f);
    return best / 1000.0;
}

double wf_cpu_peak_flops(int cores, double ghz, double flops_per_cycle, int dtype_bytes) {
    if (cores <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cores = n > 0 ? (int)n : 1;
    }
    if (!(ghz > 0)) ghz = cpuinfo_ghz();
    if (!(ghz > 0)) {
        wf__error(WF_ENOTFOUND, "wf_cpu_peak_flops: the clock is not in /proc/cpuinfo; give ghz");
        return 0;
    }
    if (!(flops_per_cycle > 0)) flops_per_cycle = dtype_bytes == 8 ? 16 : 32;
    return (double)cores * ghz * 1e9 * flops_per_cycle;
}

static int copy_name(const char *src, char *buf, size_t n) {
    while (isspace((unsigned char)*src)) src++;
    size_t len = strcspn(src, "\n");
    while (len && isspace((unsigned char)src[len - 1])) len--;
    if (len >= n) len = n - 1;
    memcpy(buf, src, len);
    buf[len] = 0;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wf_device_name(wf_device dev, char *buf, size_t n) {
    if (!buf || !n) return wf__error(WF_ENULL, "wf_device_name: buf is NULL or empty");
    buf[0] = 0;
    char line[512];
    if (dev.type == WF_DEV_CPU) {
        FILE *f = fopen("/proc/cpuinfo", "r");
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
                fclose(f);
                return copy_name(strchr(line, ':') + 1, buf, n);
            }
        if (f) fclose(f);
        return wf__error(WF_ENOTFOUND, "wf_device_name: no \"model name\" in /proc/cpuinfo");
    }
    if (dev.type != WF_DEV_CUDA) return wf__error(WF_ENOTFOUND, "wf_device_name: the meta device has no name");
    /* the driver's per-GPU directories are PCI bus ids: sorted, they are the default order */
    const char *root = "/proc/driver/nvidia/gpus";
    DIR *d = opendir(root);
    if (!d) return wf__error(WF_ENOTFOUND, "wf_device_name: %s is not readable (no NVIDIA driver)", root);
    char *ids[64];
    int k = 0;
    struct dirent *de;
    while ((de = readdir(d)) && k < 64)
        if (de->d_name[0] != '.' && (ids[k] = wf__strdup(de->d_name))) k++;
    closedir(d);
    qsort(ids, (size_t)k, sizeof *ids, cmp_str);
    int rc = WF_ENOTFOUND;
    if (dev.index >= 0 && dev.index < k) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/information", root, ids[dev.index]);
        FILE *f = fopen(path, "r");
        while (f && rc && fgets(line, sizeof line, f))
            if (!strncmp(line, "Model:", 6)) rc = copy_name(line + 6, buf, n);
        if (f) fclose(f);
    }
    for (int i = 0; i < k; i++) wf__free(ids[i], strlen(ids[i]) + 1);
    if (rc) return wf__error(WF_ENOTFOUND, "wf_device_name: cuda:%d not found under %s (%d GPUs)", dev.index, root, k);
    return 0;
}

/* ---------------------------------------------------------------- measure_flops */

int wf_measure_flops(wf_module *model, wf_flops_forward_fn forward, wf_flops_loss_fn loss, void *ud,
                     int64_t *flops) {
    if (!model || !forward || !flops)
        return wf__error(WF_ENULL, "wf_measure_flops: model, forward and flops must not be NULL");
    *flops = 0;
    int np = wf_module_parameters(model, NULL, NULL, 0);
    if (np < 0) return np;
    wf_tensor **ps = np ? wf__malloc((size_t)np * sizeof *ps) : NULL;
    if (np && !ps) return wf__error(WF_ENOMEM, "wf_measure_flops: out of memory");
    wf_module_parameters(model, ps, NULL, np);
    for (int i = 0; i < np; i++)
        if (wf_tensor_device(ps[i]).type != WF_DEV_META) {
            char dv[32];
            const char *nm;
            wf_module_parameters(model, ps, &nm, 1);
            wf__free(ps, (size_t)np * sizeof *ps);
            return wf__error(WF_EDEVICE, "wf_measure_flops: parameters must be on the meta device (nothing is "
                             "computed there), found one on %s (first parameter '%s'); build the model with "
                             "wf_set_default_device(WF_META) or move it with wf_module_to",
                             wf_device_str(wf_tensor_device(ps[i]), dv, sizeof dv), nm ? nm : "?");
        }
    wf__free(ps, (size_t)np * sizeof *ps);
    int rc = 0;
    int64_t before = wf__meta_flops();
    WF_SCOPE {
        wf_tensor *y = forward(model, ud);
        if (!y) rc = wf_error() ? wf_error() : wf__error(WF_EINVAL, "wf_measure_flops: forward returned NULL");
        else if (loss) {
            wf_tensor *l = loss(y, ud);
            if (!l) rc = wf_error() ? wf_error() : wf__error(WF_EINVAL, "wf_measure_flops: loss returned NULL");
            else rc = wf_backward(l, NULL, false);
        }
    }
    wf_module_zero_grad(model, true);
    if (rc) return rc;
    *flops = wf__meta_flops() - before;
    return 0;
}

/* ---------------------------------------------------------------- Throughput */

enum { M_TIME, M_BATCHES, M_SAMPLES, M_LENGTHS, M_DEV_BPS, M_DEV_SPS, M_DEV_IPS, M_DEV_FPS, M_DEV_MFU,
       M_BPS, M_SPS, M_IPS, M_FPS, M_N };
static const char *const metric_base[M_N] = { "time", "batches", "samples", "lengths", "batches_per_sec",
    "samples_per_sec", "items_per_sec", "flops_per_sec", "mfu", "batches_per_sec", "samples_per_sec",
    "items_per_sec", "flops_per_sec" };

typedef struct tp_entry { double time, flops; int64_t batches, samples, lengths; } tp_entry;

struct wf_throughput {
    double available_flops;
    int world_size, window, n, head;   /* ring of the last `window` updates; head = oldest */
    int lengths_mode;                  /* 0 unknown, 1 tracked, -1 not tracked */
    int flops_mode;
    tp_entry *ring;
    wf_fabric *fab;                    /* the monitor's, or NULL */
    char *names[M_N];
};

void wf_throughput_free(wf_throughput *t) {
    if (!t) return;
    for (int i = 0; i < M_N; i++)
        if (t->names[i]) wf__free(t->names[i], strlen(t->names[i]) + 1);
    if (t->ring) wf__free(t->ring, (size_t)t->window * sizeof *t->ring);
    wf__free(t, sizeof *t);
}

wf_throughput *wf_throughput_new(const wf_throughput_opts *o) {
    wf_throughput_opts d = { 0 };
    if (!o) o = &d;
    int window = o->window_size ? o->window_size : 100, ws = o->world_size ? o->world_size : 1;
    const char *sep = o->separator ? o->separator : "/";
    if (window < 2) { wf__error(WF_EINVAL, "wf_throughput_new: window_size must be >= 2, got %d", window); return NULL; }
    if (ws < 1) { wf__error(WF_EINVAL, "wf_throughput_new: world_size must be >= 1, got %d", ws); return NULL; }
    if (!(o->available_flops >= 0) || isinf(o->available_flops)) {
        wf__error(WF_EINVAL, "wf_throughput_new: available_flops must be finite and >= 0, got %g", o->available_flops);
        return NULL;
    }
    if (strlen(sep) > 8) { wf__error(WF_EINVAL, "wf_throughput_new: separator longer than 8 characters"); return NULL; }
    wf_throughput *t = wf__calloc(1, sizeof *t);
    if (!t) { wf__error(WF_ENOMEM, "wf_throughput_new: out of memory"); return NULL; }
    t->available_flops = o->available_flops;
    t->world_size = ws;
    t->window = window;
    t->ring = wf__calloc((size_t)window, sizeof *t->ring);
    bool ok = t->ring != NULL;
    for (int i = 0; ok && i < M_N; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s%s%s", i >= M_DEV_BPS && i <= M_DEV_MFU ? "device" : "",
                 i >= M_DEV_BPS && i <= M_DEV_MFU ? sep : "", metric_base[i]);
        ok = (t->names[i] = wf__strdup(buf)) != NULL;
    }
    if (!ok) { wf_throughput_free(t); wf__error(WF_ENOMEM, "wf_throughput_new: out of memory"); return NULL; }
    return t;
}

void wf_throughput_reset(wf_throughput *t) {
    if (!t) return;
    t->n = t->head = 0;
    t->lengths_mode = t->flops_mode = 0;
}

static const tp_entry *at(const wf_throughput *t, int i) { return &t->ring[(t->head + i) % t->window]; }

int wf_throughput_update(wf_throughput *t, double time, int64_t batches, int64_t samples, int64_t lengths,
                         double flops) {
    if (!t) return wf__error(WF_ENULL, "wf_throughput_update: t is NULL");
    if (!isfinite(time) || batches < 0 || samples < 0 || isnan(flops))
        return wf__error(WF_EINVAL, "wf_throughput_update: time must be finite and batches, samples >= 0 "
                         "(got time %g, batches %lld, samples %lld)", time, (long long)batches, (long long)samples);
    int lm = lengths >= 0 ? 1 : -1, fm = flops >= 0 ? 1 : -1;
    if (lm > 0 && lengths < samples)
        return wf__error(WF_EINVAL, "wf_throughput_update: lengths (%lld) must be >= samples (%lld): they count "
                         "the items (tokens) of all the samples", (long long)lengths, (long long)samples);
    if (t->lengths_mode && lm != t->lengths_mode)
        return wf__error(WF_EINVAL, "wf_throughput_update: lengths must be given on every update or on none");
    if (t->flops_mode && fm != t->flops_mode)
        return wf__error(WF_EINVAL, "wf_throughput_update: flops must be given on every update or on none");
    if (t->n) {
        const tp_entry *last = at(t, t->n - 1);
        if (time < last->time || batches < last->batches || samples < last->samples ||
            (lm > 0 && lengths < last->lengths))
            return wf__error(WF_EINVAL, "wf_throughput_update: the totals went backwards (time %g after %g, batches "
                             "%lld after %lld, samples %lld after %lld): pass running totals, not per-step values",
                             time, last->time, (long long)batches, (long long)last->batches, (long long)samples,
                             (long long)last->samples);
    }
    t->lengths_mode = lm;
    t->flops_mode = fm;
    /* FLOPs are this device's; the window keeps the world's, as Lightning multiplies */
    tp_entry e = { time, fm > 0 ? flops * t->world_size : 0, batches, samples, lm > 0 ? lengths : 0 };
    if (t->n < t->window) t->ring[(t->head + t->n++) % t->window] = e;
    else {
        t->ring[t->head] = e;
        t->head = (t->head + 1) % t->window;
    }
    return 0;
}

static void put(const wf_throughput *t, wf_throughput_metrics *m, int id, double v) {
    m->names[m->n] = t->names[id];
    m->values[m->n++] = v;
}

int wf_throughput_compute(const wf_throughput *t, wf_throughput_metrics *out) {
    if (!t || !out) return wf__error(WF_ENULL, "wf_throughput_compute: t and out must not be NULL");
    out->n = 0;
    if (!t->n) return wf__error(WF_ESTATE, "wf_throughput_compute: no update yet");
    const tp_entry *first = at(t, 0), *last = at(t, t->n - 1);
    put(t, out, M_TIME, last->time);
    put(t, out, M_BATCHES, (double)last->batches);
    put(t, out, M_SAMPLES, (double)last->samples);
    if (t->lengths_mode > 0) put(t, out, M_LENGTHS, (double)last->lengths);
    double dt = last->time - first->time;
    if (t->n < t->window || !(dt > 0)) return 0;   /* rates once the window is full */
    bool world = t->world_size > 1;
    double bps = (double)(last->batches - first->batches) / dt, sps = (double)(last->samples - first->samples) / dt;
    put(t, out, M_DEV_BPS, bps);
    put(t, out, M_DEV_SPS, sps);
    if (world) {
        put(t, out, M_BPS, bps * t->world_size);
        put(t, out, M_SPS, sps * t->world_size);
    }
    if (t->lengths_mode > 0) {
        double ips = (double)(last->lengths - first->lengths) / dt;
        put(t, out, M_DEV_IPS, ips);
        if (world) put(t, out, M_IPS, ips * t->world_size);
    }
    if (t->flops_mode > 0) {
        double f = 0;
        for (int i = 1; i < t->n; i++) f += at(t, i)->flops;   /* the work done between first and last */
        double fps = f / dt, dev = fps / t->world_size;
        if (world) put(t, out, M_FPS, fps);
        put(t, out, M_DEV_FPS, dev);
        if (t->available_flops > 0) put(t, out, M_DEV_MFU, dev / t->available_flops);
    }
    return 0;
}

double wf_throughput_metric(const wf_throughput_metrics *m, const char *name) {
    if (!m || !name) return NAN;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], name)) return m->values[i];
    return NAN;
}

double wf_throughput_available_flops(const wf_throughput *t) { return t ? t->available_flops : 0; }

/* ---------------------------------------------------------------- ThroughputMonitor */

wf_throughput *wf_throughput_monitor_new(wf_fabric *fab, const wf_throughput_opts *o) {
    if (!fab) { wf__error(WF_ENULL, "wf_throughput_monitor_new: fab is NULL"); return NULL; }
    wf_throughput_opts opts = o ? *o : (wf_throughput_opts){ 0 };
    if (!opts.world_size) opts.world_size = wf_fabric_world_size(fab);
    if (opts.available_flops == 0) {
        /* no known peak leaves MFU out (Lightning warns and goes on): not an error */
        int saved = wf_error();
        char msg[512];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        wf_device dev = wf_fabric_device(fab);
        const char *prec = wf_fabric_precision_name(fab);
        if (dev.type == WF_DEV_CPU) opts.available_flops = wf_cpu_peak_flops(0, 0, 0, !strcmp(prec, "64-true") ? 8 : 4);
        else {
            char name[256];
            if (!wf_device_name(dev, name, sizeof name)) opts.available_flops = wf_get_available_flops(name, prec, wf_cuda_get_tf32());
        }
        if (saved) wf__error(saved, "%s", msg);
        else wf_clear_error();
    }
    wf_throughput *t = wf_throughput_new(&opts);
    if (t) t->fab = fab;
    return t;
}

int wf_throughput_compute_and_log(wf_throughput *t, int64_t step, wf_throughput_metrics *out) {
    if (!t) return wf__error(WF_ENULL, "wf_throughput_compute_and_log: t is NULL");
    wf_throughput_metrics m;
    if (!out) out = &m;
    int rc = wf_throughput_compute(t, out);
    if (rc) return rc;
    if (!t->fab) return wf__error(WF_ESTATE, "wf_throughput_compute_and_log: not a monitor (make it with "
                                  "wf_throughput_monitor_new)");
    return wf_fabric_log_dict(t->fab, out->names, out->values, out->n, step);
}
