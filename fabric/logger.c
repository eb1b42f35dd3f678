/* fabric/logger.c: the logger interface shared by the CSV and TensorBoard loggers, and the
 * version_N directory layout of Lightning's loggers. */
#include "fabric/logger_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int wf__mkdirs(const char *op, const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return wf__error(WF_EINVAL, "%s: path too long: %s", op, path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            return wf__error(WF_EIO, "%s: cannot create directory %s: %s", op, buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return wf__error(WF_EIO, "%s: %s is not a directory", op, path);
    return 0;
}

wf_logger *wf__logger_new(const char *op, const wf_logger_vtable *vt, const char *root, const wf_logger_opts *o) {
    static const wf_logger_opts zero;
    if (!o) o = &zero;
    if (!root || !*root) { wf__error(WF_ENULL, "%s: root_dir is required", op); return NULL; }
    const char *name = o->name && *o->name ? o->name : "lightning_logs";
    if (strchr(name, '/')) { wf__error(WF_EINVAL, "%s: name \"%s\" must not contain '/'", op, name); return NULL; }
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", root, name) >= sizeof dir) { wf__error(WF_EINVAL, "%s: path too long", op); return NULL; }
    if (wf__mkdirs(op, dir)) return NULL;
    int version = o->version;
    if (version <= 0) {
        /* the next free version_N (Lightning's _get_next_version) */
        int next = 0;
        DIR *d = opendir(dir);
        if (!d) { wf__error(WF_EIO, "%s: cannot list %s: %s", op, dir, strerror(errno)); return NULL; }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "version_", 8)) continue;
            char *end;
            long v = strtol(de->d_name + 8, &end, 10);
            if (*end || end == de->d_name + 8 || v < 0 || v > 1000000000) continue;
            if (v + 1 > next) next = (int)v + 1;
        }
        closedir(d);
        version = next;
    }
    char vdir[4200];
    snprintf(vdir, sizeof vdir, "%s/version_%d", dir, version);
    if (wf__mkdirs(op, vdir)) return NULL;
    wf_logger *l = wf__calloc(1, sizeof *l);
    if (!l || !(l->name = wf__strdup(name)) || !(l->log_dir = wf__strdup(vdir))) {
        if (l) { wf__free(l->name, 0); wf__free(l, sizeof *l); }
        wf__error(WF_ENOMEM, "%s: out of memory", op);
        return NULL;
    }
    l->vt = vt;
    l->version = version;
    return l;
}

void wf__logger_release(wf_logger *l) {
    if (!l) return;
    wf__free(l->name, 0);
    wf__free(l->log_dir, 0);
    wf__free(l, sizeof *l);
}

int wf_logger_log_metrics(wf_logger *l, const char *const *names, const double *values, int n, int64_t step) {
    if (!l || (n > 0 && (!names || !values))) return wf__error(WF_ENULL, "wf_logger_log_metrics: NULL argument");
    if (n < 0) return wf__error(WF_EINVAL, "wf_logger_log_metrics: n=%d", n);
    for (int i = 0; i < n; i++)
        if (!names[i] || !*names[i]) return wf__error(WF_EINVAL, "wf_logger_log_metrics: metric %d has no name", i);
    return l->vt->log_metrics(l, names, values, n, step);
}

int wf_logger_log_hyperparams(wf_logger *l, const char *const *names, const char *const *str_values,
                              const double *num_values, const bool *is_number, int n) {
    if (!l || (n > 0 && (!names || !is_number))) return wf__error(WF_ENULL, "wf_logger_log_hyperparams: NULL argument");
    if (!l->vt->log_hyperparams)
        return wf__error(WF_ENOTSUP, "wf_logger_log_hyperparams: the %s logger does not log hyperparameters", l->vt->kind);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i]) return wf__error(WF_EINVAL, "wf_logger_log_hyperparams: entry %d has no name", i);
        if (is_number[i] ? !num_values : (!str_values || !str_values[i]))
            return wf__error(WF_ENULL, "wf_logger_log_hyperparams: entry \"%s\" has no value", names[i]);
    }
    return l->vt->log_hyperparams(l, names, str_values, num_values, is_number, n);
}

int wf_logger_flush(wf_logger *l) {
    if (!l) return wf__error(WF_ENULL, "wf_logger_flush: NULL logger");
    return l->vt->flush ? l->vt->flush(l) : 0;
}

const char *wf_logger_log_dir(const wf_logger *l) { return l ? l->log_dir : NULL; }

void wf_logger_free(wf_logger *l) {
    if (!l) return;
    l->vt->free(l);
}
