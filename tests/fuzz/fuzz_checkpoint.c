/* tests/fuzz/fuzz_checkpoint.c: a file for Fabric's checkpoint loader (fabric/checkpoint.c):
 * wf_fabric_load into a state holding every entry kind (module, optimizer, scheduler, tensor,
 * int, double, string, rng, precision), strict and not, keeping the remainder; and the raw
 * loaders (wf_fabric_load_raw_module / _optimizer). So the entries table, the JSON values,
 * the optimizer's param_groups and the scheduler's state all meet hostile text.
 *
 * The input reaches the loaders from memory: the Fabric's checkpoint IO plugin (Lightning's
 * CheckpointIO, a public extension point) opens every path with wf__st_open_memory on it,
 * the same header parser, checks and tensor reads as wf_st_open without a file. Writing each
 * input to a memfd and opening it again through /proc/self/fd five times an input (open,
 * fstat, pread, close, and the path walk) held this target near 1 300 exec/s; the open/fstat/
 * pread code is fuzzed by the safetensors target, which still goes through a file.
 *
 * The Fabric, model and optimizer are made once; a load that succeeds changes their values,
 * which only varies what the next input meets. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/safetensors_impl.h"
#include "tensor/tensor_impl.h"
#include "weft/fabric.h"

/* the input being run (borrowed from libFuzzer for the call) */
static const uint8_t *g_data;
static size_t g_size;
/* The reader refused this input: its code and message. The five loaders each open the input
 * first and stop when that fails; the reader is deterministic, so the second to fifth opens
 * replay the first one's refusal instead of parsing the same bytes again (each loader's own
 * failure branch still runs). */
static int g_refused;
static char g_refused_msg[1024];

static wf_st_file *load_input(const wf_checkpoint_io *io, const char *path) {
    (void)io;
    if (g_refused) {
        wf__error(g_refused, "%s", g_refused_msg);
        return NULL;
    }
    wf_st_file *f = wf__st_open_memory(g_data, g_size, path);
    if (!f) {
        g_refused = wf_error() ? wf_error() : WF_EIO;
        snprintf(g_refused_msg, sizeof g_refused_msg, "%s", wf_error_message());
    }
    return f;
}

/* no such file or folder: the loader's folder check (a stat) finds nothing and it opens
 * the path through the checkpoint IO */
#define INPUT_PATH "/nonexistent/weft-fuzz-input.ckpt"

static wf_fabric *fab;
static wf_module *model;
static wf_optimizer *opt;
static wf_lr_scheduler *sched;
static wf_tensor *extra;

static int setup(void) {
    if (fab) return 0;
    static const wf_checkpoint_io io = { .name = "fuzz-memory", .load = load_input };
    fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true, .plugins.checkpoint_io = &io });
    if (!fab) return -1;
    model = wf_sequential_new(2, wf_linear_new(2, 3, true), wf_linear_new(3, 1, false));
    wf_tensor *p[8];
    int n = wf_module_parameters(model, p, NULL, 8);
    opt = wf_adamw_new(p, n, &(wf_adam_opts){ .lr = 1e-2 });
    sched = wf_step_lr_new(opt, 2, 0.5);
    extra = wf_zeros(WF_SHAPE(3), WF_I64);
    if (!model || !opt || !sched || !extra || wf_fabric_setup(fab, model, &opt, 1, sched)) return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (setup()) abort();
    static const char path[] = INPUT_PATH;
    g_data = data;
    g_size = size;
    g_refused = 0;
    int64_t it = 0;
    double best = 0;
    char note[16] = "";
    wf_fabric_state *st = wf_fabric_state_new();
    if (!st) abort();
    wf_fabric_state_add_module(st, "model", model);
    wf_fabric_state_add_optimizer(st, "optimizer", opt);
    wf_fabric_state_add_scheduler(st, "scheduler", sched);
    wf_fabric_state_add_tensor(st, "extra", extra);
    wf_fabric_state_add_int(st, "iter", &it);
    wf_fabric_state_add_double(st, "best", &best);
    wf_fabric_state_add_string(st, "note", note, sizeof note);
    wf_fabric_state_add_rng(st, "rng");
    wf_fabric_state_add_precision(st, "precision", fab);
    for (int strict = 0; strict < 2; strict++) {
        wf_fabric_state *rest = wf_fabric_load(fab, path, st, strict);
        if (rest) {
            /* the remainder's accessors on what the file held */
            for (int i = 0; i < wf_fabric_state_count(rest); i++) {
                const char *name = wf_fabric_state_name_at(rest, i);
                int64_t iv;
                double dv;
                (void)wf_fabric_state_get_int(rest, name, &iv);
                (void)wf_fabric_state_get_double(rest, name, &dv);
                (void)wf_fabric_state_get_string(rest, name);
                (void)wf_fabric_state_get_json(rest, name);
                (void)wf_fabric_state_get_tensors(rest, name);
            }
            wf_fabric_state_free(rest);
        }
    }
    wf_fabric_state *all = wf_fabric_load(fab, path, NULL, false);
    wf_fabric_state_free(all);
    wf_fabric_state_free(st);
    (void)wf_fabric_load_raw_module(fab, path, model, false);
    (void)wf_fabric_load_raw_optimizer(fab, path, opt);
    g_data = NULL;
    return 0;
}
