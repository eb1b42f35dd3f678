/* fabric/fabric.c: the Fabric object: construction through the connector, properties,
 * setup of modules/optimizers/loaders, the training-step methods, collectives of a world of
 * one, callbacks and logging. Checkpoints are in checkpoint.c. */
#include "fabric/fabric_impl.h"
#include "tensor/meta_init.h"
#include "fabric/ddp_reducer.h"
#include "dist/trace.h"
#include "optim/optim_impl.h"
#include "weft/cuda.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- warnings */

void wf__fabric_warn(wf_fabric *fab, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!fab) { fprintf(stderr, "weft: warning: %s\n", msg); return; }
    if (!fab->quiet && fab->global_rank == 0) fprintf(stderr, "weft: warning: %s\n", msg);
    size_t add = strlen(msg) + 1;
    char *w = wf__realloc(fab->warnings, fab->warnings ? fab->warnings_len + 1 : 0, fab->warnings_len + add + 1);
    if (!w) return;
    memcpy(w + fab->warnings_len, msg, add - 1);
    w[fab->warnings_len + add - 1] = '\n';
    w[fab->warnings_len + add] = 0;
    fab->warnings = w;
    fab->warnings_len += add;
}

const char *wf_fabric_warnings(const wf_fabric *fab) {
    return fab && fab->warnings ? fab->warnings : "";
}

/* ---------------------------------------------------------------- live Fabrics
 * Module forward hooks carry a Fabric's id, not its address: a module may outlive the
 * Fabric that set it up (freed in either order), and its hooks then find no live Fabric
 * and do nothing, instead of touching freed memory. */

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { uint64_t id; wf_fabric *fab; } *live;
static int n_live, cap_live;
static uint64_t next_id = 1;

static int live_add(wf_fabric *fab) {
    int rc = 0;
    pthread_mutex_lock(&live_mu);
    if (n_live == cap_live) {
        int nc = cap_live ? cap_live * 2 : 4;
        void *p = wf__realloc(live, (size_t)cap_live * sizeof *live, (size_t)nc * sizeof *live);
        if (!p) rc = WF_ENOMEM;
        else { live = p; cap_live = nc; }
    }
    if (!rc) {
        fab->id = next_id++;
        live[n_live].id = fab->id;
        live[n_live].fab = fab;
        n_live++;
    }
    pthread_mutex_unlock(&live_mu);
    return rc;
}

static void live_remove(wf_fabric *fab) {
    pthread_mutex_lock(&live_mu);
    for (int i = 0; i < n_live; i++)
        if (live[i].fab == fab) { live[i] = live[--n_live]; break; }
    if (!n_live) { wf__free(live, (size_t)cap_live * sizeof *live); live = NULL; cap_live = 0; }
    pthread_mutex_unlock(&live_mu);
}

static wf_fabric *live_find(void *ud) {
    uint64_t id = (uint64_t)(uintptr_t)ud;
    wf_fabric *f = NULL;
    pthread_mutex_lock(&live_mu);
    for (int i = 0; i < n_live; i++) if (live[i].id == id) { f = live[i].fab; break; }
    pthread_mutex_unlock(&live_mu);
    return f;
}

/* ---------------------------------------------------------------- construction */

static bool cli_used(void) {
    const char *v = getenv("WF_CLI_USED");
    return v && !strcmp(v, "1");
}

wf_fabric *wf_fabric_new(const wf_fabric_config *cfg) {
    static const wf_fabric_config zero;
    if (!cfg) cfg = &zero;
    wf_fabric *fab = wf__calloc(1, sizeof *fab);
    if (!fab) {
        for (int i = 0; i < cfg->n_loggers; i++) if (cfg->loggers) wf_logger_free(cfg->loggers[i]);
        wf_precision_free(cfg->plugins.precision);
        wf__error(WF_ENOMEM, "wf_fabric_new: out of memory");
        return NULL;
    }
    fab->quiet = cfg->quiet;
    fab->world_size = 1;
    int rc = live_add(fab) ? wf__error(WF_ENOMEM, "wf_fabric_new: out of memory") : 0;
    if (cfg->n_loggers < 0 || cfg->n_callbacks < 0 || (cfg->n_loggers && !cfg->loggers) ||
        (cfg->n_callbacks && !cfg->callbacks))
        rc = wf__error(WF_EINVAL, "wf_fabric_new: callbacks/loggers: a count without an array (or a negative count)");
    if (!rc && cfg->n_loggers > 0) {
        fab->loggers = wf__calloc((size_t)cfg->n_loggers, sizeof *fab->loggers);
        if (!fab->loggers) rc = wf__error(WF_ENOMEM, "wf_fabric_new: out of memory");
        else {
            for (int i = 0; i < cfg->n_loggers; i++) {
                if (!cfg->loggers[i]) { rc = wf__error(WF_ENULL, "wf_fabric_new: loggers[%d] is NULL", i); continue; }
                fab->loggers[fab->n_loggers++] = cfg->loggers[i];
            }
        }
    } else if (cfg->n_loggers > 0) {
        for (int i = 0; i < cfg->n_loggers; i++) wf_logger_free(cfg->loggers[i]);
    }
    if (!rc && cfg->n_callbacks > 0) {
        fab->callbacks = wf__calloc((size_t)cfg->n_callbacks, sizeof *fab->callbacks);
        if (!fab->callbacks) rc = wf__error(WF_ENOMEM, "wf_fabric_new: out of memory");
        else {
            memcpy(fab->callbacks, cfg->callbacks, (size_t)cfg->n_callbacks * sizeof *fab->callbacks);
            fab->n_callbacks = cfg->n_callbacks;
            for (int i = 0; i < cfg->n_callbacks && !rc; i++)
                if (!cfg->callbacks[i].hooks)
                    rc = wf__error(WF_ENULL, "wf_fabric_new: callbacks[%d] (%s) has no hook table", i,
                                   cfg->callbacks[i].name ? cfg->callbacks[i].name : "unnamed");
        }
    }
    wf_precision *plugin_prec = cfg->plugins.precision;
    if (!rc && plugin_prec && cfg->precision && *cfg->precision)
        rc = wf__error(WF_EINVAL, "wf_fabric_new: received both precision=\"%s\" and plugins.precision (%s): "
                       "choose one", cfg->precision, wf_precision_name(plugin_prec));
    if (!rc) rc = wf__connector_resolve(cfg, &fab->conn);
    for (int i = 0; !rc && i < fab->conn.n_warnings; i++) wf__fabric_warn(fab, "%s", fab->conn.warnings[i]);
    if (!rc) {
        const wf_cluster_info *ci = &fab->conn.cluster;
        fab->world_size = fab->conn.n_devices * fab->conn.num_nodes;
        bool external = ci->creates_processes_externally;
        fab->global_rank = external ? ci->global_rank : 0;
        fab->local_rank = external ? ci->local_rank : 0;
        fab->node_rank = external ? ci->node_rank : 0;
        int dev = fab->conn.devices[fab->local_rank < fab->conn.n_devices ? fab->local_rank : 0];
        fab->device = fab->conn.accel->device_type == WF_DEV_CUDA ? WF_CUDA(dev) : WF_CPU;
        if (plugin_prec) {
            fab->precision = plugin_prec;
            plugin_prec = NULL;
        } else {
            char warn[512] = "";
            fab->precision = wf_precision_new(fab->conn.precision, fab->device, warn, sizeof warn);
            if (!fab->precision) {
                rc = wf_error() ? wf_error() : WF_EINVAL;
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", wf_error_message());
                wf__error(rc, "wf_fabric_new: precision: %s", msg);
            } else if (warn[0]) {
                wf__fabric_warn(fab, "%s", warn);
            }
        }
    }
    if (!rc) {
        /* the strategy's view of the processes: those the environment started, or those
         * wf_fabric_launch will start (this process is then rank 0 until it re-executes) */
        wf_cluster_info ci = fab->conn.cluster;
        if (!ci.creates_processes_externally) {
            ci.world_size = fab->world_size;
            ci.num_nodes = fab->conn.num_nodes;
            ci.local_world_size = fab->conn.n_devices;
        }
        fab->strategy = wf__strategy_new(fab->conn.strategy, fab->precision, fab->device, &ci,
                                         cfg->plugins.checkpoint_io, cfg->timeout_s);
        if (!fab->strategy) rc = wf_error() ? wf_error() : WF_ENOMEM;
    }
    if (!rc) rc = wf__ddp_check_opts(&cfg->ddp);
    if (!rc) rc = wf__fsdp_settings_from(&cfg->fsdp, fab->conn.strategy->name, fab->conn.num_nodes, &fab->strategy->fsdp);
    if (!rc) {
        wf_strategy *st = fab->strategy;
        st->ddp = cfg->ddp;
        snprintf(st->comm_hook_buf, sizeof st->comm_hook_buf, "%s", cfg->ddp.comm_hook ? cfg->ddp.comm_hook : "");
        st->ddp.comm_hook = st->comm_hook_buf;
        snprintf(st->pg_backend, sizeof st->pg_backend, "%s", fab->conn.pg_backend);
    }
    if (!rc && fab->world_size == 1) fab->launched = true;
    if (!rc && fab->world_size == 1 && wf__trace_enabled()) wf__trace_start_or_warn(0, 1);   /* WF_TRACE, one process */
    /* under `weft run` the processes exist: set up the process group now, as Fabric does */
    if (!rc && !fab->launched && cli_used() && fab->conn.cluster.creates_processes_externally) {
        rc = fab->strategy->ops->setup_environment(fab->strategy);
        if (!rc) fab->launched = true;
    }
    wf_precision_free(plugin_prec);   /* not handed over (an earlier error) */
    if (rc) { wf_fabric_free(fab); return NULL; }
    return fab;
}

/* Release what the Fabric holds for a module. The module itself may already be freed: its
 * forward hooks stay registered and find no live Fabric (see live_find). The gradient
 * detectors sit on parameters the Fabric retains, so they are removed safely. */
static void unhook_module(wf_fab_module *fm, bool module_alive) {
    if (module_alive && fm->pre_hook >= 0) wf_module_remove_hook(fm->m, fm->pre_hook);
    if (module_alive && fm->post_hook >= 0) wf_module_remove_hook(fm->m, fm->post_hook);
    for (int i = 0; i < fm->n_params; i++) {
        wf_remove_grad_hook(fm->params[i], fm->hook_ids[i]);
        wf_tensor_free(fm->params[i]);
    }
    wf__free(fm->params, 0);
    wf__free(fm->hook_ids, 0);
}

void wf_fabric_free(wf_fabric *fab) {
    if (!fab) return;
    wf__trace_finish_or_warn();   /* WF_TRACE: write this rank's file (no-op when off) */
    live_remove(fab);
    if (fab->init_meta) wf__meta_forget_all();   /* notes of meta tensors never set up */
    for (int i = 0; i < fab->n_modules; i++) unhook_module(&fab->modules[i], false);
    wf__free(fab->modules, 0);
    wf__free(fab->opts, 0);
    for (int i = 0; i < fab->n_loggers; i++) wf_logger_free(fab->loggers[i]);
    wf__free(fab->loggers, 0);
    wf__free(fab->callbacks, 0);
    wf__free(fab->warnings, 0);
    wf__strategy_free(fab->strategy);
    wf_precision_free(fab->precision);
    wf__free(fab, sizeof *fab);
}

/* ---------------------------------------------------------------- properties */

wf_device wf_fabric_device(const wf_fabric *fab) { return fab ? fab->device : WF_CPU; }
int wf_fabric_global_rank(const wf_fabric *fab) { return fab ? fab->global_rank : 0; }
int wf_fabric_local_rank(const wf_fabric *fab) { return fab ? fab->local_rank : 0; }
int wf_fabric_node_rank(const wf_fabric *fab) { return fab ? fab->node_rank : 0; }
int wf_fabric_world_size(const wf_fabric *fab) { return fab ? fab->world_size : 1; }
bool wf_fabric_is_global_zero(const wf_fabric *fab) { return !fab || fab->global_rank == 0; }
int wf_fabric_num_nodes(const wf_fabric *fab) { return fab ? fab->conn.num_nodes : 1; }
int wf_fabric_num_devices(const wf_fabric *fab) { return fab ? fab->conn.n_devices : 1; }
const char *wf_fabric_accelerator_name(const wf_fabric *fab) { return fab ? fab->conn.accel->name : ""; }
const char *wf_fabric_strategy_name(const wf_fabric *fab) { return fab ? fab->conn.strategy->name : ""; }
const char *wf_fabric_precision_name(const wf_fabric *fab) { return fab ? wf_precision_name(fab->precision) : ""; }
wf_precision *wf_fabric_precision(wf_fabric *fab) { return fab ? fab->precision : NULL; }
int wf_fabric_num_loggers(const wf_fabric *fab) { return fab ? fab->n_loggers : 0; }
wf_logger *wf_fabric_logger_at(const wf_fabric *fab, int i) {
    return fab && i >= 0 && i < fab->n_loggers ? fab->loggers[i] : NULL;
}
wf_logger *wf_fabric_logger(const wf_fabric *fab) { return wf_fabric_logger_at(fab, 0); }

/* ---------------------------------------------------------------- module hooks */

static double trace_forward_t0 = -1;   /* WF_TRACE: the outermost forward's start */

static int fab_pre_hook(wf_module *m, wf_tensor **input, void *ud) {
    wf_fabric *fab = live_find(ud);
    if (!fab) return 0;
    if (fab->forward_depth++ == 0) {
        trace_forward_t0 = wf__trace_begin();
        int rc = wf_precision_forward_begin(fab->precision);
        if (rc) { fab->forward_depth--; return rc; }
        /* DDP: rank 0's buffers before each forward (broadcast_buffers) */
        if (fab->launched && fab->strategy->ops->pre_forward) rc = fab->strategy->ops->pre_forward(fab->strategy, m);
        if (rc) { fab->forward_depth--; wf_precision_forward_end(fab->precision); return rc; }
    }
    if (fab->forward_depth == 1 && wf_precision_param_dtype(fab->precision) != WF_F32 &&
        !wf_precision_is_mixed(fab->precision)) {
        wf_tensor *x = wf_precision_convert_input(fab->precision, *input);
        if (!x) return wf_error() ? wf_error() : WF_ENOMEM;
        *input = x;
    }
    return 0;
}

static int fab_post_hook(wf_module *m, wf_tensor *input, wf_tensor **output, void *ud) {
    wf_fabric *fab = live_find(ud);
    (void)m; (void)input;
    if (!fab || fab->forward_depth <= 0) return 0;
    int rc = 0;
    if (--fab->forward_depth == 0) {
        wf__trace_end(WF_TRACE_HOST, "forward", "fabric", trace_forward_t0, NULL);
        rc = wf_precision_forward_end(fab->precision);
        if (!rc && wf_precision_param_dtype(fab->precision) != WF_F32 && !wf_precision_is_mixed(fab->precision)) {
            wf_tensor *y = wf_precision_convert_output(fab->precision, *output);
            if (!y) return wf_error() ? wf_error() : WF_ENOMEM;
            *output = y;
        }
    }
    return rc;
}

/* A forward that failed between its hooks leaves the precision's forward context open:
 * close it before anything that runs outside a forward. */
static void unwind_forward(wf_fabric *fab) {
    if (fab->forward_depth > 0) {
        fab->forward_depth = 0;
        wf_precision_forward_end(fab->precision);
    }
}

static void plain_backward_detector(wf_tensor *leaf, void *ud) {
    wf_fabric *fab = ud;
    (void)leaf;
    if (!fab->in_backward) fab->plain_backward_seen = true;
}

static int find_module(const wf_fabric *fab, const wf_module *m) {
    for (int i = 0; i < fab->n_modules; i++) if (fab->modules[i].m == m) return i;
    return -1;
}
static int find_opt(const wf_fabric *fab, const wf_optimizer *o) {
    for (int i = 0; i < fab->n_opts; i++) if (fab->opts[i] == o) return i;
    return -1;
}
bool wf_fabric_is_setup_module(const wf_fabric *fab, const wf_module *m) { return fab && m && find_module(fab, m) >= 0; }
bool wf_fabric_is_setup_optimizer(const wf_fabric *fab, const wf_optimizer *o) { return fab && o && find_opt(fab, o) >= 0; }

static int grow(void **arr, int *cap, int n, size_t elem) {
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 4;
    void *p = wf__realloc(*arr, (size_t)*cap * elem, (size_t)nc * elem);
    if (!p) return WF_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Fabric's _validate_launched: a multi-process strategy needs its processes first. */
static int check_launched(const wf_fabric *fab, const char *op) {
    if (fab->launched) return 0;
    return wf__error(WF_ESTATE, "%s: to use the \"%s\" strategy with %d processes, call wf_fabric_launch(fab, fn, ud) "
                     "first (or start the program with `weft run`)", op, fab->conn.strategy->name, fab->world_size);
}

/* fsdp.activation_checkpointing_policy: every module of m's tree (m too) of a listed type
 * recomputes its forward in backward. Lightning has the option on FSDP only; weft applies it
 * under any strategy (the recompute is strategy-independent) and says so once. */
static int mark_checkpointed(const wf__fsdp_settings *fs, wf_module *m, int *count) {
    for (int i = 0; i < fs->n_ac_types; i++)
        if (!strcmp(fs->ac_types[i], wf_module_type(m))) {
            int rc = wf_module_set_activation_checkpointing(m, true);
            if (rc) return rc;
            ++*count;
            break;
        }
    for (int c = 0; c < wf_module_num_children(m); c++) {
        int rc = mark_checkpointed(fs, wf_module_child_at(m, c, NULL), count);
        if (rc) return rc;
    }
    return 0;
}

static int apply_checkpointing_policy(wf_fabric *fab, wf_module *m) {
    const wf__fsdp_settings *fs = &fab->strategy->fsdp;
    if (!fs->n_ac_types) return 0;
    int count = 0, rc = mark_checkpointed(fs, m, &count);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        return wf__error(rc, "wf_fabric_setup: fsdp.activation_checkpointing_policy: %s", msg);
    }
    if (fab->strategy->ops != &wf__fsdp_ops && !fab->warned_ac_policy) {
        fab->warned_ac_policy = true;
        wf__fabric_warn(fab, "fsdp.activation_checkpointing_policy is an FSDP option in Lightning; weft applies it under "
                        "the \"%s\" strategy too (%d module%s recompute their forward in backward)",
                        fab->strategy->desc ? fab->strategy->desc->name : "single_device", count, count == 1 ? "" : "s");
    }
    return 0;
}

static int setup_impl(const char *op, wf_fabric *fab, wf_module *m, wf_optimizer *const *opts, int n_opts,
                      bool move) {
    if (!fab || !m) return wf__error(WF_ENULL, "%s: NULL %s", op, fab ? "module" : "fabric");
    if (n_opts < 0 || (n_opts && !opts)) return wf__error(WF_EINVAL, "%s: n_opts=%d without an array", op, n_opts);
    int lrc = check_launched(fab, op);
    if (lrc) return lrc;
    if (find_module(fab, m) >= 0)
        return wf__error(WF_ESTATE, "%s: the module (%s) has already been set up with this Fabric; set it up once",
                         op, wf_module_type(m));
    for (int k = 0; k < n_opts; k++) {
        if (!opts[k]) return wf__error(WF_ENULL, "%s: optimizer %d is NULL", op, k);
        if (find_opt(fab, opts[k]) >= 0)
            return wf__error(WF_ESTATE, "%s: optimizer %d (%s) has already been set up with this Fabric", op, k,
                             wf_optimizer_name(opts[k]));
        for (int j = 0; j < k; j++)
            if (opts[j] == opts[k]) return wf__error(WF_EINVAL, "%s: optimizer %d is passed twice", op, k);
    }
    wf_tensor **olds = NULL, **news = NULL;
    int np = wf__module_params(m, &olds);
    if (np < 0) return np;
    int rc = 0;
    /* every optimizer parameter must belong to the module */
    for (int k = 0; k < n_opts && !rc; k++) {
        wf_optimizer *o = opts[k];
        for (int g = 0; g < o->n_groups && !rc; g++)
            for (int i = 0; i < o->groups[g].n && !rc; i++) {
                bool found = false;
                for (int j = 0; j < np && !found; j++) found = o->groups[g].params[i] == olds[j];
                if (!found)
                    rc = wf__error(WF_EINVAL, "%s: optimizer %d (%s) holds a parameter (group %d, index %d) that is "
                                   "not a parameter of the module being set up", op, k, wf_optimizer_name(o), g, i);
            }
    }
    for (int j = 0; j < np; j++) wf_tensor_retain(olds[j]);   /* keep old handles alive for the mapping */
    if (!rc && fab->init_meta) rc = wf__fsdp_adopt_meta(m, fab->device, op);
    if (!rc) rc = wf_precision_convert_module(fab->precision, m);
    if (!rc && move) rc = wf_module_to(m, fab->device, WF_DTYPE_DEFAULT);
    if (!rc) {
        int np2 = wf__module_params(m, &news);
        if (np2 < 0) rc = np2;
        else if (np2 != np) rc = wf__error(WF_ESTATE, "%s: the module's parameter count changed while moving it", op);
    }
    /* the module's tensors were replaced (cast / moved): the optimizers follow */
    for (int k = 0; k < n_opts && !rc; k++) rc = wf__optimizer_replace_params(opts[k], olds, news, np);
    for (int j = 0; j < np; j++) wf_tensor_free(olds[j]);
    wf__free(olds, 0);
    /* register */
    if (!rc && (grow((void **)&fab->modules, &fab->cap_modules, fab->n_modules, sizeof *fab->modules) ||
                grow((void **)&fab->opts, &fab->cap_opts, fab->n_opts + n_opts, sizeof *fab->opts)))
        rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    while (!rc && fab->n_opts + n_opts > fab->cap_opts)
        if (grow((void **)&fab->opts, &fab->cap_opts, fab->cap_opts, sizeof *fab->opts))
            rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (!rc) {
        wf_fab_module fm = { .m = m, .pre_hook = -1, .post_hook = -1 };
        fm.pre_hook = wf_module_register_forward_pre_hook(m, fab_pre_hook, (void *)(uintptr_t)fab->id);
        fm.post_hook = fm.pre_hook >= 0 ? wf_module_register_forward_hook(m, fab_post_hook, (void *)(uintptr_t)fab->id) : -1;
        if (fm.pre_hook < 0 || fm.post_hook < 0) rc = wf_error() ? wf_error() : WF_ENOMEM;
        if (!rc && (wf_precision_needs_fabric_backward(fab->precision) || fab->force_backward_check) && np > 0) {
            fm.params = wf__calloc((size_t)np, sizeof *fm.params);
            fm.hook_ids = wf__calloc((size_t)np, sizeof *fm.hook_ids);
            if (!fm.params || !fm.hook_ids) rc = wf__error(WF_ENOMEM, "%s: out of memory", op);
            for (int j = 0; j < np && !rc; j++) {
                int h = wf_register_grad_hook(news[j], plain_backward_detector, fab);
                if (h < 0) { rc = h; break; }
                fm.params[j] = wf_tensor_retain(news[j]);
                fm.hook_ids[j] = h;
                fm.n_params++;
            }
        }
        if (!rc) rc = apply_checkpointing_policy(fab, m);
        if (!rc) rc = fab->strategy->ops->setup_module(fab->strategy, m);
        /* FSDP: the optimizers step on the shards */
        if (!rc && n_opts && fab->strategy->ops->setup_optimizers)
            rc = fab->strategy->ops->setup_optimizers(fab->strategy, m, opts, n_opts);
        if (rc) unhook_module(&fm, true);
        else {
            fab->modules[fab->n_modules++] = fm;
            for (int k = 0; k < n_opts; k++) fab->opts[fab->n_opts++] = opts[k];
        }
    }
    wf__free(news, 0);
    return rc;
}

int wf_fabric_setup(wf_fabric *fab, wf_module *m, wf_optimizer *const *opts, int n_opts, wf_lr_scheduler *sched) {
    (void)sched;   /* schedulers need no wrapping; kept for Fabric's signature */
    return setup_impl("wf_fabric_setup", fab, m, opts, n_opts, true);
}

int wf_fabric_setup_module(wf_fabric *fab, wf_module *m, bool move_to_device) {
    return setup_impl("wf_fabric_setup_module", fab, m, NULL, 0, move_to_device);
}

int wf_fabric_setup_optimizers(wf_fabric *fab, wf_optimizer *const *opts, int n_opts) {
    const char *op = "wf_fabric_setup_optimizers";
    if (!fab) return wf__error(WF_ENULL, "%s: NULL fabric", op);
    if (n_opts < 1 || !opts) return wf__error(WF_EINVAL, "%s: at least one optimizer is required", op);
    for (int k = 0; k < n_opts; k++) {
        if (!opts[k]) return wf__error(WF_ENULL, "%s: optimizer %d is NULL", op, k);
        if (find_opt(fab, opts[k]) >= 0)
            return wf__error(WF_ESTATE, "%s: optimizer %d (%s) has already been set up with this Fabric", op, k,
                             wf_optimizer_name(opts[k]));
        for (int g = 0; g < opts[k]->n_groups; g++)
            for (int i = 0; i < opts[k]->groups[g].n; i++) {
                wf_tensor *p = opts[k]->groups[g].params[i];
                if (!wf_device_eq(p->device, fab->device)) {
                    char a[16], b[16];
                    return wf__error(WF_EDEVICE, "%s: optimizer %d has a parameter on %s, the Fabric runs on %s: call "
                                     "wf_fabric_setup_module first and build the optimizer from its parameters", op, k,
                                     wf_device_str(p->device, a, sizeof a), wf_device_str(fab->device, b, sizeof b));
                }
            }
    }
    while (fab->n_opts + n_opts > fab->cap_opts)
        if (grow((void **)&fab->opts, &fab->cap_opts, fab->cap_opts, sizeof *fab->opts))
            return wf__error(WF_ENOMEM, "%s: out of memory", op);
    if (fab->strategy->ops->setup_optimizers) {
        int rc = fab->strategy->ops->setup_optimizers(fab->strategy, NULL, opts, n_opts);
        if (rc) return rc;
    }
    for (int k = 0; k < n_opts; k++) fab->opts[fab->n_opts++] = opts[k];
    return 0;
}

/* ---------------------------------------------------------------- loaders */

wf_fabric_loader *wf_fabric_setup_dataloader(wf_fabric *fab, wf_dataloader *dl, const wf_fabric_loader_opts *o) {
    static const wf_fabric_loader_opts zero;
    if (!o) o = &zero;
    if (!fab || !dl) {
        wf_dataloader_free(dl);
        wf__error(WF_ENULL, "wf_fabric_setup_dataloader: NULL %s", fab ? "loader" : "fabric");
        return NULL;
    }
    wf_fabric_loader *l = wf__calloc(1, sizeof *l);
    if (!l) {
        wf_dataloader_free(dl);
        wf__error(WF_ENOMEM, "wf_fabric_setup_dataloader: out of memory");
        return NULL;
    }
    l->fab = fab;
    l->dl = dl;
    l->move = !o->no_move_to_device && fab->device.type != WF_DEV_CPU;
    /* With several processes each rank draws its own shard (DistributedSampler, or the
     * wrapper around a custom sampler), every rank the same number of batches. */
    if (fab->world_size > 1 && !o->no_distributed_sampler) {
        int rc = check_launched(fab, "wf_fabric_setup_dataloader");
        if (!rc) rc = wf_dataloader_distribute(dl, fab->world_size, fab->global_rank);
        if (rc) {
            wf_fabric_loader_free(l);
            return NULL;
        }
    }
    return l;
}

int wf_fabric_loader_set_epoch(wf_fabric_loader *l, uint64_t epoch) {
    if (!l) return wf__error(WF_ENULL, "wf_fabric_loader_set_epoch: NULL loader");
    return wf_dataloader_set_epoch(l->dl, epoch);
}

int wf_fabric_loader_next(wf_fabric_loader *l, wf_tensor **out) {
    if (!l || !out) return wf__error(WF_ENULL, "wf_fabric_loader_next: NULL argument");
    int rc = wf_dataloader_next(l->dl, out);
    if (rc != 1 || !l->move) return rc;
    int nf = wf_dataloader_n_fields(l->dl);
    for (int i = 0; i < nf; i++) {
        wf_tensor *t = wf_to_device(out[i], l->fab->device);
        if (!t) return wf_error() ? wf_error() : WF_ENOMEM;
        out[i] = t;
    }
    return 1;
}

int64_t wf_fabric_loader_len(const wf_fabric_loader *l) {
    return l ? wf_dataloader_len(l->dl) : (wf__error(WF_ENULL, "wf_fabric_loader_len: NULL loader"), -1);
}
wf_dataloader *wf_fabric_loader_inner(wf_fabric_loader *l) { return l ? l->dl : NULL; }
void wf_fabric_loader_free(wf_fabric_loader *l) {
    if (!l) return;
    wf_dataloader_free(l->dl);
    wf__free(l, sizeof *l);
}

/* ---------------------------------------------------------------- training step */

static int check_plain_backward(wf_fabric *fab, const char *op) {
    if (!fab->plain_backward_seen) return 0;
    fab->plain_backward_seen = false;
    return wf__error(WF_ESTATE, "%s: the gradients of a module set up with this Fabric were computed by a plain "
                     "wf_backward(loss); precision \"%s\" needs wf_fabric_backward(fab, loss, model) (the loss must be "
                     "scaled), otherwise the update would use wrongly scaled gradients", op,
                     wf_precision_name(fab->precision));
}

int wf_fabric_backward(wf_fabric *fab, wf_tensor *loss, wf_module *model) {
    if (!fab || !loss) {
        if (!fab) return wf__error(WF_ENULL, "wf_fabric_backward: NULL fabric");
        return wf_error() ? wf_error() : wf__error(WF_ENULL, "wf_fabric_backward: NULL loss");
    }
    if (model && find_module(fab, model) < 0)
        return wf__error(WF_ESTATE, "wf_fabric_backward: the model (%s) was not set up with this Fabric",
                         wf_module_type(model));
    unwind_forward(fab);
    fab->in_backward = true;
    double t0 = wf__trace_begin();
    int rc = fab->strategy->ops->backward(fab->strategy, loss, model);
    wf__trace_end(WF_TRACE_HOST, "backward", "fabric", t0, NULL);
    fab->in_backward = false;
    return rc;
}

int wf_fabric_step(wf_fabric *fab, wf_optimizer *opt, bool *skipped) {
    if (skipped) *skipped = false;
    if (!fab || !opt) return wf__error(WF_ENULL, "wf_fabric_step: NULL %s", fab ? "optimizer" : "fabric");
    if (find_opt(fab, opt) < 0)
        return wf__error(WF_ESTATE, "wf_fabric_step: the optimizer (%s) was not set up with this Fabric "
                         "(wf_fabric_setup or wf_fabric_setup_optimizers)", wf_optimizer_name(opt));
    int rc = check_plain_backward(fab, "wf_fabric_step");
    if (rc) return rc;
    double t0 = wf__trace_begin();
    rc = fab->strategy->ops->optimizer_step(fab->strategy, opt, skipped);
    wf__trace_end(WF_TRACE_HOST, "optimizer_step", "fabric", t0, NULL);
    return rc;
}

int wf_fabric_scheduler_step(wf_fabric *fab, wf_lr_scheduler *sched) {
    if (!fab || !sched) return wf__error(WF_ENULL, "wf_fabric_scheduler_step: NULL argument");
    if (wf_precision_last_step_skipped(fab->precision)) return 0;
    return wf_lr_scheduler_step(sched);
}

int wf_fabric_clip_gradients(wf_fabric *fab, wf_module *m, wf_optimizer *opt, const wf_clip_opts *o,
                             double *total_norm) {
    const char *op = "wf_fabric_clip_gradients";
    if (total_norm) *total_norm = 0;
    if (!fab || !o || (!m && !opt)) return wf__error(WF_ENULL, "%s: NULL argument", op);
    bool has_val = o->clip_val != 0, has_norm = o->max_norm != 0;
    if (has_val && has_norm)
        return wf__error(WF_EINVAL, "%s: only one of clip_val (%g) or max_norm (%g) can be set", op, o->clip_val,
                         o->max_norm);
    if (!has_val && !has_norm) return wf__error(WF_EINVAL, "%s: you have to specify either clip_val or max_norm", op);
    if ((has_val && !(o->clip_val > 0)) || (has_norm && !(o->max_norm > 0)))
        return wf__error(WF_EINVAL, "%s: clip_val and max_norm must be positive, got %g", op,
                         has_val ? o->clip_val : o->max_norm);
    int rc = check_plain_backward(fab, op);
    if (rc) return rc;
    if (opt) {
        if (find_opt(fab, opt) < 0)
            return wf__error(WF_ESTATE, "%s: the optimizer (%s) was not set up with this Fabric", op, wf_optimizer_name(opt));
        if ((rc = wf_precision_unscale(fab->precision, opt))) return rc;
    } else if (wf_precision_grad_scaler(fab->precision)) {
        return wf__error(WF_EINVAL, "%s: precision \"%s\" scales the loss: pass the optimizer so the gradients can be "
                         "unscaled before clipping", op, wf_precision_name(fab->precision));
    }
    wf_tensor **ps = NULL;
    int n = 0;
    if (opt) {
        for (int g = 0; g < opt->n_groups; g++) n += opt->groups[g].n;
        ps = wf__calloc((size_t)(n ? n : 1), sizeof *ps);
        if (!ps) return wf__error(WF_ENOMEM, "%s: out of memory", op);
        int k = 0;
        for (int g = 0; g < opt->n_groups; g++)
            for (int i = 0; i < opt->groups[g].n; i++) ps[k++] = opt->groups[g].params[i];
    } else {
        n = wf__module_params(m, &ps);
        if (n < 0) return n;
    }
    /* FSDP: the gradients live on the shards, and the norm is the ranks' together */
    if (fab->strategy->ops->grad_params) fab->strategy->ops->grad_params(fab->strategy, ps, n);
    if (has_norm && fab->strategy->ops->clip_grad_norm)
        rc = fab->strategy->ops->clip_grad_norm(fab->strategy, ps, n, o->max_norm, o->norm_type ? o->norm_type : 2.0,
                                                !o->no_error_if_nonfinite, total_norm);
    else if (has_norm && !total_norm && o->no_error_if_nonfinite) {
        /* nobody reads the norm on the host: the variant that only queues work (no sync) */
        wf_tensor *t = wf_clip_grad_norm_tensor_(ps, n, o->max_norm, o->norm_type ? o->norm_type : 2.0);
        rc = t ? 0 : (wf_error() ? wf_error() : WF_ENOMEM);
        wf_tensor_free(t);
    } else if (has_norm)
        rc = wf_clip_grad_norm_(ps, n, o->max_norm, o->norm_type ? o->norm_type : 2.0, !o->no_error_if_nonfinite,
                                total_norm);
    else
        rc = wf_clip_grad_value_(ps, n, o->clip_val);
    wf__free(ps, 0);
    return rc;
}

int wf_fabric_autocast_begin(wf_fabric *fab) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_autocast_begin: NULL fabric");
    return wf_precision_forward_begin(fab->precision);
}
static int wf_fabric_autocast_end__body(wf_fabric *fab) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_autocast_end: NULL fabric");
    return wf_precision_forward_end(fab->precision);
}

int wf_fabric_autocast_end(wf_fabric *fab) {
    WF__NAMED("wf_fabric_autocast_end", int, r < 0, wf_fabric_autocast_end__body(fab));
}

wf_tensor *wf_fabric_to_device(wf_fabric *fab, wf_tensor *t) {
    if (!fab) { wf__error(WF_ENULL, "wf_fabric_to_device: NULL fabric"); return NULL; }
    if (!t) return wf__any_null("wf_fabric_to_device", 1, t), NULL;
    return wf_to_device(t, fab->device);
}

int wf_fabric_module_to_device(wf_fabric *fab, wf_module *m) {
    if (!fab || !m) return wf__error(WF_ENULL, "wf_fabric_module_to_device: NULL argument");
    return wf_module_to(m, fab->device, WF_DTYPE_DEFAULT);
}

int wf_fabric_print(const wf_fabric *fab, const char *fmt, ...) {
    if (!fmt) return wf__error(WF_ENULL, "wf_fabric_print: NULL format");
    if (fab && fab->local_rank != 0) return 0;
    va_list ap;
    va_start(ap, fmt);
    int r = vprintf(fmt, ap);
    va_end(ap);
    return r;
}

/* ---------------------------------------------------------------- seeding */

uint64_t wf_seed_everything(uint64_t seed, bool workers) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)seed);
    setenv("WF_GLOBAL_SEED", b, 1);
    setenv("WF_SEED_WORKERS", workers ? "1" : "0", 1);
    wf_manual_seed(seed);
    srand((unsigned)seed);
    return seed;
}

uint64_t wf_fabric_global_seed(bool *found) {
    const char *s = getenv("WF_GLOBAL_SEED");
    if (found) *found = s && *s;
    return s && *s ? strtoull(s, NULL, 10) : 0;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t wf_worker_seed(uint64_t base_seed, int worker, int rank) {
    uint64_t h = splitmix64(base_seed);
    h = splitmix64(h ^ (uint64_t)(uint32_t)worker);
    h = splitmix64(h ^ ((uint64_t)(uint32_t)rank << 32));
    return h;
}

/* ---------------------------------------------------------------- init contexts */

int wf_fabric_init_module_begin(wf_fabric *fab, bool empty_init) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_init_module_begin: NULL fabric");
    if (fab->init_depth >= WF_FABRIC_MAX_INIT_DEPTH)
        return wf__error(WF_ESTATE, "wf_fabric_init_module_begin: init contexts nested deeper than %d",
                         WF_FABRIC_MAX_INIT_DEPTH);
    int d = fab->init_depth;
    fab->init_prev_dev[d] = wf_get_default_device();
    fab->init_prev_meta[d] = wf__meta_recording();
    int rc = wf_precision_init_begin(fab->precision);
    if (rc) return rc;
    /* FSDP (sharded): empty_init builds on the meta device, without memory, and every
     * initializer is noted so that setup materializes each rank's rows of each parameter
     * with the values the module's own initialization gives them (tensor/meta_init.h) */
    bool meta = empty_init && fab->strategy->ops == &wf__fsdp_ops && fab->strategy->fsdp.sharding != 2 /* NO_SHARD */;
    if (meta && (rc = wf_set_default_device(WF_META))) {
        wf_precision_init_end(fab->precision);
        return rc;
    }
    if (meta) {
        wf__meta_record(true);
        fab->init_meta = true;
    }
    /* empty_init elsewhere: the layers built in this context skip their weight initialization */
    fab->init_prev_skip[d] = wf_nn_set_skip_init((empty_init && !meta) || wf_nn_skip_init());
    fab->init_depth++;
    return 0;
}
int wf_fabric_init_module_end(wf_fabric *fab) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_init_module_end: NULL fabric");
    if (fab->init_depth <= 0) return wf__error(WF_ESTATE, "wf_fabric_init_module_end: no init context is open");
    fab->init_depth--;
    wf_nn_set_skip_init(fab->init_prev_skip[fab->init_depth]);
    wf__meta_record(fab->init_prev_meta[fab->init_depth]);
    int rc = wf_precision_init_end(fab->precision);
    /* the precision restores the device it set; the meta device was set above it */
    int r = wf_set_default_device(fab->init_prev_dev[fab->init_depth]);
    return rc ? rc : r;
}
static int wf_fabric_init_tensor_begin__body(wf_fabric *fab) { return wf_fabric_init_module_begin(fab, false); }

int wf_fabric_init_tensor_begin(wf_fabric *fab) {
    WF__NAMED("wf_fabric_init_tensor_begin", int, r < 0, wf_fabric_init_tensor_begin__body(fab));
}

static int wf_fabric_init_tensor_end__body(wf_fabric *fab) { return wf_fabric_init_module_end(fab); }

int wf_fabric_init_tensor_end(wf_fabric *fab) {
    WF__NAMED("wf_fabric_init_tensor_end", int, r < 0, wf_fabric_init_tensor_end__body(fab));
}

/* ---------------------------------------------------------------- collectives */

static int check_src(wf_fabric *fab, const char *op, int src) {
    if (!fab) return wf__error(WF_ENULL, "%s: NULL fabric", op);
    if (src < 0 || src >= fab->world_size)
        return wf__error(WF_EINVAL, "%s: src=%d is not a rank (world size %d)", op, src, fab->world_size);
    return 0;
}

int wf_fabric_barrier(wf_fabric *fab, const char *name) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_barrier: NULL fabric");
    if (!fab->launched) return check_launched(fab, "wf_fabric_barrier");
    return fab->strategy->ops->barrier(fab->strategy, name);
}

wf_tensor *wf_fabric_broadcast(wf_fabric *fab, wf_tensor *t, int src) {
    if (check_src(fab, "wf_fabric_broadcast", src)) return NULL;
    if (!t) return wf__any_null("wf_fabric_broadcast", 1, t), NULL;
    if (check_launched(fab, "wf_fabric_broadcast")) return NULL;
    wf_tensor *r = NULL;
    WF_NO_GRAD { r = wf_contiguous(wf_detach(t)); }
    if (r && fab->world_size > 1) {
        WF_NO_GRAD { r = wf_clone(r); }   /* the caller's t is not overwritten */
        if (r && fab->strategy->ops->broadcast(fab->strategy, r, src)) return NULL;
    }
    return r;
}

int wf_fabric_broadcast_bytes(wf_fabric *fab, void *buf, size_t n, int src) {
    int rc = check_src(fab, "wf_fabric_broadcast_bytes", src);
    if (rc) return rc;
    if (n && !buf) return wf__error(WF_ENULL, "wf_fabric_broadcast_bytes: NULL buffer");
    if ((rc = check_launched(fab, "wf_fabric_broadcast_bytes"))) return rc;
    return fab->strategy->ops->broadcast_bytes(fab->strategy, buf, n, src);
}

wf_tensor *wf_fabric_all_gather(wf_fabric *fab, wf_tensor *t, bool sync_grads) {
    if (!fab) { wf__error(WF_ENULL, "wf_fabric_all_gather: NULL fabric"); return NULL; }
    if (!t) return wf__any_null("wf_fabric_all_gather", 1, t), NULL;
    if (check_launched(fab, "wf_fabric_all_gather")) return NULL;
    return fab->strategy->ops->all_gather(fab->strategy, t, sync_grads);
}

wf_tensor *wf_fabric_all_reduce(wf_fabric *fab, wf_tensor *t, wf_fabric_reduce op) {
    if (!fab) { wf__error(WF_ENULL, "wf_fabric_all_reduce: NULL fabric"); return NULL; }
    if (!t) return wf__any_null("wf_fabric_all_reduce", 1, t), NULL;
    if ((int)op < 0 || op > WF_FABRIC_MIN) {
        wf__error(WF_EINVAL, "wf_fabric_all_reduce: unknown reduce op %d (mean, sum, max, min)", (int)op);
        return NULL;
    }
    if (check_launched(fab, "wf_fabric_all_reduce")) return NULL;
    return fab->strategy->ops->all_reduce(fab->strategy, t, op);
}

/* no_backward_sync blocks nest; each remembers whether it disabled the sync */
int wf_fabric_no_backward_sync_begin(wf_fabric *fab, wf_module *m, bool enabled) {
    if (!fab || !m) return wf__error(WF_ENULL, "wf_fabric_no_backward_sync_begin: NULL argument");
    if (find_module(fab, m) < 0)
        return wf__error(WF_ESTATE, "wf_fabric_no_backward_sync_begin: you need to set up the model first: "
                         "wf_fabric_setup(fab, model, ...)");
    if (fab->no_sync_depth >= 64)
        return wf__error(WF_ESTATE, "wf_fabric_no_backward_sync_begin: blocks nested deeper than 64");
    /* DeepSpeed reduces every backward: Fabric warns and goes on synchronizing */
    if (enabled && fab->strategy->desc && fab->strategy->desc->zero_stage && fab->world_size > 1)
        wf__fabric_warn(fab, "the \"%s\" strategy (DeepSpeed) does not support skipping the gradient "
                        "synchronization: remove no_backward_sync from your code or choose a different strategy",
                        fab->strategy->desc->name);
    fab->no_sync_enabled[fab->no_sync_depth++] = enabled;
    if (enabled) fab->strategy->no_sync_depth++;
    return 0;
}
int wf_fabric_no_backward_sync_end(wf_fabric *fab) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_no_backward_sync_end: NULL fabric");
    if (fab->no_sync_depth <= 0) return wf__error(WF_ESTATE, "wf_fabric_no_backward_sync_end: no block is open");
    if (fab->no_sync_enabled[--fab->no_sync_depth]) fab->strategy->no_sync_depth--;
    return 0;
}

/* rank_zero_first: the other ranks wait in begin for rank 0's (code, message) sent by end or
 * fail; an error on rank 0 thus reaches them as an error instead of a wait without end. */
int wf_fabric_rank_zero_first_begin(wf_fabric *fab, bool local) {
    const char *op = "wf_fabric_rank_zero_first_begin";
    if (!fab) return wf__error(WF_ENULL, "%s: NULL fabric", op);
    if (fab->rzf_depth >= 16) return wf__error(WF_ESTATE, "%s: blocks nested deeper than 16", op);
    int rc = check_launched(fab, op);
    if (rc) return rc;
    int rank = local ? fab->local_rank : fab->global_rank;
    if (rank != 0) {
        int code = 0;
        char msg[500] = "";
        if ((rc = fab->strategy->ops->broadcast_status(fab->strategy, local, &code, msg, sizeof msg))) return rc;
        if (code) return wf__error(WF_EDIST, "%s: rank 0 failed inside its rank_zero_first block (code %d): %s", op,
                                   code, msg);
        return 0;   /* rank 0 is done: run the block; end does not wait */
    }
    fab->rzf_local[fab->rzf_depth++] = local;
    return 0;
}

static int rzf_close(wf_fabric *fab, const char *op, int code) {
    if (!fab) return wf__error(WF_ENULL, "%s: NULL fabric", op);
    if (fab->rzf_depth <= 0) {
        /* ranks other than 0 have nothing open: their wait was in begin */
        if (fab->launched && fab->world_size > 1 && (fab->global_rank != 0 || fab->local_rank != 0)) return code;
        return wf__error(WF_ESTATE, "%s: no block is open", op);
    }
    bool local = fab->rzf_local[--fab->rzf_depth];
    char msg[500] = "";
    if (code) snprintf(msg, sizeof msg, "%s", wf_error_message());
    int c = code;
    int rc = fab->strategy->ops->broadcast_status(fab->strategy, local, &c, msg, sizeof msg);
    if (code) {
        if (msg[0]) wf__error(code, "%s", msg);   /* keep rank 0's own error for its caller */
        return code;
    }
    return rc;
}
int wf_fabric_rank_zero_first_end(wf_fabric *fab) { return rzf_close(fab, "wf_fabric_rank_zero_first_end", 0); }
int wf_fabric_rank_zero_first_fail(wf_fabric *fab, int code) {
    if (!code) code = WF_EINVAL;
    return rzf_close(fab, "wf_fabric_rank_zero_first_fail", code);
}

/* ---------------------------------------------------------------- launching */

int wf_fabric_launch(wf_fabric *fab, wf_fabric_launch_fn fn, void *ud) {
    const char *op = "wf_fabric_launch";
    if (!fab) return wf__error(WF_ENULL, "%s: NULL fabric", op);
    if (cli_used())
        return wf__error(WF_ESTATE, "%s: this program was started by `weft run`, and the processes have already "
                         "been created: calling wf_fabric_launch again is not allowed", op);
    if (fab->launch_called) return wf__error(WF_ESTATE, "%s: called twice", op);
    fab->launch_called = true;
    if (!fab->launched) {
        const wf_cluster_info *ci = &fab->conn.cluster;
        if (!ci->creates_processes_externally) {
            if (fab->conn.num_nodes > 1)
                return wf__error(WF_ENOTSUP, "%s: num_nodes=%d: start the processes on each node with `weft run "
                                 "--num-nodes N --node-rank R ...`, torchrun, SLURM or mpirun", op, fab->conn.num_nodes);
            bool cpu = fab->device.type == WF_DEV_CPU;
            wf_launch_opts lo = { .nprocs = fab->conn.n_devices, .use_mpirun = cpu };
            int rc = wf_launch_self(&lo);   /* returns only when nothing could be started */
            return rc ? rc : wf__error(WF_EDIST, "%s: the processes could not be started", op);
        }
        int rc = wf_launch_rank_begin();
        if (!rc) rc = fab->strategy->ops->setup_environment(fab->strategy);
        if (rc) return rc;
        fab->launched = true;
    }
    return fn ? fn(fab, ud) : 0;
}

wf_process_group *wf_fabric_process_group(wf_fabric *fab) { return fab && fab->strategy ? fab->strategy->pg : NULL; }

/* ---------------------------------------------------------------- memory and FSDP's full values */

int wf_fabric_memory_stats(wf_fabric *fab, wf_memory_stats *out) {
    if (!fab || !out) return wf__error(WF_ENULL, "wf_fabric_memory_stats: NULL %s", fab ? "output" : "fabric");
    if (fab->device.type == WF_DEV_CUDA) return wf_cuda_memory_stats(fab->device.index, out);
    wf_memory_stats_get(out);
    return 0;
}

int wf_fabric_reset_peak_memory_stats(wf_fabric *fab) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_reset_peak_memory_stats: NULL fabric");
    if (fab->device.type == WF_DEV_CUDA)
        return wf__error(WF_ENOTSUP, "wf_fabric_reset_peak_memory_stats: resetting the CUDA allocator's peak is not in "
                         "this build (read wf_cuda_memory_stats before and after instead)");
    wf__host_reset_peak_memory();
    return 0;
}

static int summon(wf_fabric *fab, wf_module *m, bool gather, const char *op) {
    if (!fab || !m) return wf__error(WF_ENULL, "%s: NULL %s", op, fab ? "module" : "fabric");
    if (find_module(fab, m) < 0)
        return wf__error(WF_ESTATE, "%s: the module (%s) was not set up with this Fabric", op, wf_module_type(m));
    return wf__fsdp_summon(fab->strategy, m, gather);
}
int wf_fabric_summon_full_params_begin(wf_fabric *fab, wf_module *m) {
    return summon(fab, m, true, "wf_fabric_summon_full_params_begin");
}
int wf_fabric_summon_full_params_end(wf_fabric *fab, wf_module *m) {
    return summon(fab, m, false, "wf_fabric_summon_full_params_end");
}

/* ---------------------------------------------------------------- logging */

int wf_fabric_log(wf_fabric *fab, const char *name, double value, int64_t step) {
    if (!name) return wf__error(WF_ENULL, "wf_fabric_log: NULL name");
    return wf_fabric_log_dict(fab, &name, &value, 1, step);
}

int wf_fabric_log_dict(wf_fabric *fab, const char *const *names, const double *values, int n, int64_t step) {
    if (!fab || (n > 0 && (!names || !values))) return wf__error(WF_ENULL, "wf_fabric_log_dict: NULL argument");
    if (n < 0) return wf__error(WF_EINVAL, "wf_fabric_log_dict: n = %d", n);
    if (fab->global_rank != 0) return 0;
    int first = 0;
    for (int i = 0; i < fab->n_loggers; i++) {
        int rc = wf_logger_log_metrics(fab->loggers[i], names, values, n, step);
        if (rc && !first) first = rc;
    }
    return first;
}

int wf_fabric_log_hyperparams(wf_fabric *fab, const char *const *names, const char *const *str_values,
                              const double *num_values, const bool *is_number, int n) {
    if (!fab) return wf__error(WF_ENULL, "wf_fabric_log_hyperparams: NULL fabric");
    if (n < 0) return wf__error(WF_EINVAL, "wf_fabric_log_hyperparams: n=%d", n);
    if (fab->global_rank != 0) return 0;
    int first = 0, supported = 0;
    for (int i = 0; i < fab->n_loggers; i++) {
        if (!fab->loggers[i]->vt->log_hyperparams) continue;   /* CSV: as Fabric's CSVLogger */
        supported++;
        int rc = wf_logger_log_hyperparams(fab->loggers[i], names, str_values, num_values, is_number, n);
        if (rc && !first) first = rc;
    }
    if (!first && fab->n_loggers > 0 && !supported)
        return wf__error(WF_ENOTSUP, "wf_fabric_log_hyperparams: none of the Fabric's %d logger(s) logs hyperparameters "
                                     "(Fabric's CSVLogger does not)", fab->n_loggers);
    return first;
}
