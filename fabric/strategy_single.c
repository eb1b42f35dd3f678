/* fabric/strategy_single.c: the single-device strategy: one process, so every collective
 * is local (Lightning's SingleDeviceStrategy). */
#include "fabric/fabric_impl.h"

static int single_setup_environment(wf_strategy *s) { (void)s; return 0; }
static int single_setup_module(wf_strategy *s, wf_module *m) { (void)s; (void)m; return 0; }

static int single_backward(wf_strategy *s, wf_tensor *loss, wf_module *m) {
    (void)m;
    return wf_precision_backward(s->precision, loss);
}

static int single_optimizer_step(wf_strategy *s, wf_optimizer *o, bool *skipped) {
    return wf_precision_optimizer_step(s->precision, o, skipped);
}

static int single_barrier(wf_strategy *s, const char *name) { (void)s; (void)name; return 0; }
static int single_broadcast(wf_strategy *s, wf_tensor *t, int src) { (void)s; (void)t; (void)src; return 0; }
static int single_broadcast_bytes(wf_strategy *s, void *buf, size_t n, int src) {
    (void)s; (void)buf; (void)n; (void)src;
    return 0;
}

/* one process: t itself, no extra dimension (Fabric's single-device all_gather) */
static wf_tensor *single_all_gather(wf_strategy *s, wf_tensor *t, bool sync_grads) {
    (void)s;
    if (sync_grads) return wf_view(t, wf_shape(t), wf_ndim(t));   /* keeps the graph */
    return wf_detach(t);
}

static wf_tensor *single_all_reduce(wf_strategy *s, wf_tensor *t, wf_fabric_reduce op) {
    (void)s; (void)op;
    wf_tensor *r = NULL;
    WF_NO_GRAD { r = wf_clone(t); }
    return r;
}

static int single_reduce_boolean_decision(wf_strategy *s, bool decision, bool all, bool *out) {
    (void)s; (void)all;
    *out = decision;
    return 0;
}

static int single_broadcast_status(wf_strategy *s, bool local, int *code, char *msg, size_t n) {
    (void)s; (void)local; (void)code; (void)msg; (void)n;
    return 0;
}

static int single_save_checkpoint(wf_strategy *s, wf_st_writer *w, const char *path, int prior) {
    return prior ? prior : s->io.save(&s->io, w, path);
}

static void single_teardown(wf_strategy *s) { (void)s; }

const wf_strategy_ops wf__single_device_ops = {
    .setup_environment = single_setup_environment,
    .setup_module = single_setup_module,
    .backward = single_backward,
    .optimizer_step = single_optimizer_step,
    .barrier = single_barrier,
    .broadcast = single_broadcast,
    .broadcast_bytes = single_broadcast_bytes,
    .all_gather = single_all_gather,
    .all_reduce = single_all_reduce,
    .reduce_boolean_decision = single_reduce_boolean_decision,
    .broadcast_status = single_broadcast_status,
    .save_checkpoint = single_save_checkpoint,
    .teardown = single_teardown,
};
