/* examples/gpt/gpt_train.c: train a GPT-2 (gpt_model.c) through Fabric, nanoGPT's train.py
 * in C.
 *
 *   gpt --config tiny|shakespeare-char|gpt2|gpt2-medium --data FILE [--val-data FILE]
 *       [--out-dir DIR [--save-every N] [--always-save-checkpoint 0|1]] [--logger csv|tensorboard|none]
 *       [--accelerator auto|cpu|cuda] [--precision 32-true|bf16-mixed|16-mixed|...]
 *       [--n-layer N --n-head N --n-embd N --block-size N --dropout P --bias 0|1 --vocab-size N]
 *       [--batch-size N --grad-accum N --max-iters N --lr X --min-lr X --warmup-iters N
 *        --lr-decay-iters N --weight-decay X --beta1 X --beta2 X --grad-clip X]
 *       [--eval-interval N --eval-iters N --log-interval N --seed S --deterministic 0|1 --threads N --peak-tflops X]
 *       [--cuda-graphs 0|1] [--fused-loss 0|1] [--recompute-gelu 0|1] [--gelu tanh|erf]
 *       [--sample N [--temperature X --top-k K --prompt TEXT]]
 *
 * FILE is text (character level, 90/10 train/val split) or a ".bin" of uint16 tokens.
 * Each iteration: grad-accum micro-batches (no gradient sync on all but the last), clipping,
 * AdamW (decay on 2-D weights only), and nanoGPT's learning rate: linear warmup, cosine decay
 * to min_lr at lr-decay-iters (default max-iters). Every eval-interval iterations (and at the
 * end) the mean loss of eval-iters batches of each split; every log-interval a progress
 * line with the loss, ms/iter, tokens/s and MFU (Fabric's throughput monitor, FLOPs counted
 * by wf_measure_flops on a meta copy of the model).
 *
 * --fused-loss 1 (the default) computes the loss from the hidden states with
 * wf_linear_cross_entropy, chunk by chunk, so the [B*T, vocab] logits and their gradient never
 * exist whole (GPT-2 124M at 16 x 1024 tokens: 3.3 GB each in f32); 0 materializes the logits
 * and calls wf_cross_entropy. --recompute-gelu 1 runs each MLP as one wf_fused_mlp, which makes
 * its GELU's output again in backward instead of keeping it (GPT-2 124M at 16 x 1024 tokens:
 * 1.2 GB less for one elementwise pass per layer); the same parameters and checkpoints.
 * --gelu picks the MLP's GELU: tanh (GPT-2's approximation, as llm.c and bench/peer_gpt2.py;
 * the gpt2 and gpt2-medium configs' default) or erf (the exact form, nanoGPT's nn.GELU(); the
 * tiny and shakespeare-char configs' default). On CUDA in bf16 / f16 the tanh form runs inside
 * c_fc's GEMM (cuBLASLt's GELU epilogues). The form is part of the checkpoint ("gelu_tanh"); a
 * resumed run takes the checkpoint's (one written before the flag existed: erf), and an
 * explicit --gelu that disagrees with it is an error.
 *
 * With --out-dir the run saves DIR/last.ckpt (model, optimizer, schedule, RNG, precision,
 * iteration) every --save-every iterations and at the end, logs metrics under DIR/logs, and
 * resumes from DIR/last.ckpt when it exists: a resumed run is bit-identical to one that was
 * never stopped (the batches come from the checkpointed RNG). Change --max-iters to go on.
 * --always-save-checkpoint 0 (the shakespeare-char config's, as nanoGPT's) saves only at an
 * evaluation (iteration > 0) whose val loss is the best so far, so DIR/last.ckpt holds the
 * best model (nanoGPT's ckpt.pt); --save-every and the save at the end are then off. Such a
 * checkpoint carries the RNG as it was before that evaluation, which a resumed run repeats.
 * The best val loss of the evaluations every eval-interval iterations (the one at the end
 * counts when max-iters is a multiple, as in nanoGPT's loop) and its iteration are part of
 * the checkpoint; they are nanoGPT's reported figure on a run that overfits.
 * Last line: one JSON object with the losses ("best_val_loss", "best_iter" among them) and
 * speed.
 *
 * --cuda-graphs 1 (CUDA only): after 3 eager iterations, one whole iteration (zero_grad,
 * forward, backward, clipping, AdamW step) is captured into a CUDA graph (weft/cuda.h) and
 * replayed for every later one, with each batch copied into static device tensors first; no
 * per-iteration host synchronization (the loss is read only when a line is logged, the
 * gradient norm not at all). Needs --grad-accum 1, --dropout 0 and one process; clipping
 * then does not stop on a non-finite norm. It computes what the eager loop does (with
 * --deterministic 1, the same bits). */
#include "gpt_data.h"
#include "gpt_model.h"
#include "../example_args.h"
#include "weft/cuda.h"
#include "weft/fabric.h"
#include "weft/io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct train_cfg {
    gpt_config model;
    int64_t batch_size, grad_accum, max_iters, warmup_iters, lr_decay_iters, eval_interval, eval_iters, log_interval;
    double lr, min_lr, weight_decay, beta1, beta2, grad_clip;
    int fused_loss, always_save_checkpoint;
} train_cfg;

/* the mean loss of one batch (gpt_model.c's gpt_batch_loss: the forward and the loss each in a
 * scope of their own), x and y moved to the model's device */
static wf_tensor *batch_loss(wf_fabric *fab, wf_module *model, wf_tensor *x, wf_tensor *y, const train_cfg *c) {
    return gpt_batch_loss(fab, model, wf_fabric_to_device(fab, x), wf_fabric_to_device(fab, y), c->fused_loss != 0, 0);
}

/* nanoGPT's configs: config/train_shakespeare_char.py, config/train_gpt2.py (gpt2-medium
 * changes the model only); tiny is ours, seconds on a CPU */
static bool preset(const char *name, train_cfg *c) {
    train_cfg base = { .model = { .vocab_size = 50304, .bias = false }, .batch_size = 12, .grad_accum = 40,
                       .max_iters = 600000, .warmup_iters = 2000, .lr_decay_iters = -1, .eval_interval = 1000,
                       .eval_iters = 200, .log_interval = 10, .lr = 6e-4, .min_lr = 6e-5, .weight_decay = 0.1,
                       .beta1 = 0.9, .beta2 = 0.95, .grad_clip = 1.0, .fused_loss = 1,
                       .always_save_checkpoint = 1 };
    *c = base;
    if (!strcmp(name, "tiny")) {
        c->model = (gpt_config){ .block_size = 32, .n_layer = 2, .n_head = 2, .n_embd = 64 };
        c->batch_size = 16, c->grad_accum = 1, c->max_iters = 200, c->warmup_iters = 10, c->eval_interval = 50;
        c->eval_iters = 10, c->lr = 1e-3, c->min_lr = 1e-4, c->beta2 = 0.99;
    } else if (!strcmp(name, "shakespeare-char")) {
        c->model = (gpt_config){ .block_size = 256, .n_layer = 6, .n_head = 6, .n_embd = 384, .dropout = 0.2 };
        c->batch_size = 64, c->grad_accum = 1, c->max_iters = 5000, c->warmup_iters = 100, c->eval_interval = 250;
        c->lr = 1e-3, c->min_lr = 1e-4, c->beta2 = 0.99;
        c->always_save_checkpoint = 0;   /* it overfits: keep the best model */
    } else if (!strcmp(name, "gpt2")) {   /* GPT-2's tanh GELU, as llm.c and the bench's peer */
        c->model = (gpt_config){ .vocab_size = 50304, .block_size = 1024, .n_layer = 12, .n_head = 12, .n_embd = 768,
                                 .gelu = WF_GELU_TANH };
    } else if (!strcmp(name, "gpt2-medium")) {
        c->model = (gpt_config){ .vocab_size = 50304, .block_size = 1024, .n_layer = 24, .n_head = 16, .n_embd = 1024,
                                 .gelu = WF_GELU_TANH };
    } else return false;
    return true;
}

/* nanoGPT's get_lr, as a factor of the base lr for LambdaLR */
static double lr_factor(int it, void *ud) {
    const train_cfg *c = ud;
    double lr;
    if (it < c->warmup_iters) lr = c->lr * (it + 1) / (double)(c->warmup_iters + 1);
    else if (it > c->lr_decay_iters) lr = c->min_lr;
    else {
        double ratio = c->lr_decay_iters > c->warmup_iters
                           ? (double)(it - c->warmup_iters) / (double)(c->lr_decay_iters - c->warmup_iters) : 1.0;
        lr = c->min_lr + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (c->lr - c->min_lr);
    }
    return lr / c->lr;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mean loss over eval_iters batches of each split, in eval mode (nanoGPT's estimate_loss) */
static int estimate_loss(wf_fabric *fab, wf_module *model, const gpt_data *d, const train_cfg *c, double out[2]) {
    int rc = 0;
    wf_module_eval(model);
    for (int split = 0; split < 2 && !rc; split++) {
        double sum = 0;
        for (int64_t k = 0; k < c->eval_iters && !rc; k++) WF_SCOPE WF_NO_GRAD {
            wf_tensor *x, *y;
            rc = gpt_get_batch(d, split == 0, c->batch_size, c->model.block_size, &x, &y);
            wf_tensor *loss = rc ? NULL : batch_loss(fab, model, x, y, c);
            if (!rc && !loss) rc = wf_error();
            if (!rc) sum += wf_item(loss);
        }
        out[split] = sum / (double)c->eval_iters;
    }
    wf_module_train(model, true);
    return rc;
}

/* The losses before iteration `iter` runs, printed. `counted`: one of the evaluations every
 * eval_interval iterations, which keep the best val loss and its iteration and, with
 * --always-save-checkpoint 0, save when the val loss improved (iter > 0, as nanoGPT). That
 * checkpoint gets the RNG of before the evaluation: a run resumed from it evaluates at `iter`
 * again, drawing the same batches, then trains on exactly what the run that went on did. */
static int evaluate(wf_fabric *fab, wf_module *model, const gpt_data *d, const train_cfg *c, bool counted,
                    wf_fabric_state *st, const char *ckpt, int64_t iter, double losses[2], double *best_val,
                    int64_t *best_iter) {
    wf_rng_state before = wf_rng_get_state();
    int rc = estimate_loss(fab, model, d, c, losses);
    /* several processes: rank 0's losses everywhere (nanoGPT's master decides), so every rank
     * takes the same branch into the collective save */
    if (!rc && wf_fabric_world_size(fab) > 1) rc = wf_fabric_broadcast_bytes(fab, losses, 2 * sizeof *losses, 0);
    if (rc) return rc;
    wf_fabric_print(fab, "step %lld: train loss %.4f, val loss %.4f\n", (long long)iter, losses[0], losses[1]);
    if (!counted || !(losses[1] < *best_val)) return 0;
    *best_val = losses[1], *best_iter = iter;
    if (!st || c->always_save_checkpoint || iter == 0) return 0;
    wf_rng_state after = wf_rng_get_state();
    wf_rng_set_state(before);
    rc = wf_fabric_save(fab, ckpt, st, NULL);
    wf_rng_set_state(after);
    if (!rc) wf_fabric_print(fab, "step %lld: val loss %.4f is the best so far: saved %s\n", (long long)iter, losses[1], ckpt);
    return rc;
}

/* FLOPs of one micro-batch (forward + backward), counted on a meta copy of the model */
static wf_tensor *meta_forward(wf_module *m, void *ud) {
    const int64_t *bt = ud;
    return wf_module_forward(m, wf_zeros_on(WF_SHAPE(bt[0], bt[1]), WF_I64, WF_META));
}
static wf_tensor *meta_loss(wf_tensor *logits, void *ud) {
    (void)ud;
    return wf_mean_all(logits);   /* the same GEMMs as cross-entropy's backward, no target values needed */
}
static int64_t micro_batch_flops(const gpt_config *mc, int64_t B) {
    wf_rng_state rng = wf_rng_get_state();   /* the meta init must not move the training's RNG */
    wf_device prev = wf_get_default_device();
    wf_set_default_device(WF_META);
    wf_module *meta = gpt_new(mc);
    wf_set_default_device(prev);
    int64_t bt[2] = { B, mc->block_size }, flops = 0;
    if (!meta || wf_measure_flops(meta, meta_forward, meta_loss, bt, &flops)) {
        fprintf(stderr, "warning: no FLOP count (MFU n/a): %s\n", wf_error_message());
        flops = 0;
        wf_clear_error();
    }
    wf_module_free(meta);
    wf_rng_set_state(rng);
    return flops;
}

static int usage(const char *prog) {
    fprintf(stderr, "usage: %s --config tiny|shakespeare-char|gpt2|gpt2-medium --data FILE [--val-data FILE] "
            "[--out-dir DIR] [--save-every N] [--always-save-checkpoint 0|1] [--logger csv|tensorboard|none] [--accelerator NAME] [--precision NAME] "
            "[--n-layer N] [--n-head N] [--n-embd N] [--block-size N] [--dropout P] [--bias 0|1] [--vocab-size N] "
            "[--batch-size N] [--grad-accum N] [--max-iters N] [--lr X] [--min-lr X] [--warmup-iters N] "
            "[--lr-decay-iters N] [--weight-decay X] [--beta1 X] [--beta2 X] [--grad-clip X] [--eval-interval N] "
            "[--eval-iters N] [--log-interval N] [--seed S] [--deterministic 0|1] [--threads N] [--peak-tflops X] [--sample N] "
            "[--temperature X] [--top-k K] [--prompt TEXT] [--cuda-graphs 0|1] [--fused-loss 0|1] [--recompute-gelu 0|1] "
            "[--gelu tanh|erf]\n", prog);
    return 2;
}

/* --cuda-graphs: the eager iterations before the capture (cuBLAS plans, the optimizer's state
 * and the memory cache are made there, never inside the capture) */
#define GRAPH_WARMUP 3

/* One iteration on the static inputs sx, sy (one micro-batch): what --cuda-graphs captures.
 * *loss_keep (owned by the caller) receives this iteration's loss tensor; the captured one is
 * where every replay writes its loss. No host synchronization. */
static int static_step(wf_fabric *fab, wf_module *model, wf_optimizer *opt, const train_cfg *c, wf_tensor *sx,
                       wf_tensor *sy, wf_tensor **loss_keep) {
    int rc = wf_optimizer_zero_grad(opt, true);
    WF_SCOPE {
        wf_tensor *loss = rc ? NULL : batch_loss(fab, model, sx, sy, c);   /* sx, sy already on the device */
        if (!rc && !loss) rc = wf_error();
        if (!rc) rc = wf_fabric_backward(fab, loss, model);
        if (!rc) {
            wf_tensor_free(*loss_keep);
            *loss_keep = wf_tensor_retain(loss);
        }
    }
    if (!rc && c->grad_clip > 0)   /* the norm is not read back: the no-sync variant */
        rc = wf_fabric_clip_gradients(fab, model, opt, &(wf_clip_opts){ .max_norm = c->grad_clip,
                                                                         .no_error_if_nonfinite = true }, NULL);
    if (!rc) rc = wf_fabric_step(fab, opt, NULL);
    return rc;
}

/* The GELU form of a run that resumes from ckpt (when it exists): the checkpoint's "gelu_tanh"
 * (absent: written before --gelu existed, the erf form then). An explicit --gelu (gelu_flag
 * >= 0) that disagrees is an error: the weights were trained with the other form. Nonzero
 * after printing the error. */
static int resume_gelu(const char *ckpt, int gelu_flag, gpt_config *mc) {
    struct stat sb;
    if (stat(ckpt, &sb) || !S_ISREG(sb.st_mode)) return 0;   /* nothing to resume, or not one file: checked after the load */
    wf_st_file *f = wf_st_open(ckpt);
    if (!f) {
        wf_clear_error();   /* the load reports what is wrong with it */
        return 0;
    }
    const char *v = wf_st_metadata(f, "gelu_tanh");
    int tanh = v && atoi(v[0] == '"' ? v + 1 : v) != 0;
    wf_st_close(f);
    if (gelu_flag >= 0 && gelu_flag != tanh) {
        fprintf(stderr, "error: resuming from %s: its model uses the %s GELU%s, not --gelu %s\n", ckpt,
                tanh ? "tanh" : "erf", v ? "" : " (a checkpoint from before --gelu)", gelu_flag ? "tanh" : "erf");
        return 1;
    }
    mc->gelu = tanh ? WF_GELU_TANH : WF_GELU_NONE;
    return 0;
}

/* report, then release what exists (out: at the end of main) */
#define FAIL(...) do { fprintf(stderr, "error: " __VA_ARGS__); fprintf(stderr, "\n"); rc = 1; goto out; } while (0)

int main(int argc, char **argv) {
    const char *config = "tiny", *data_path = NULL, *val_path = NULL, *out_dir = NULL, *logger = NULL;
    const char *accelerator = "auto", *precision = "32-true", *prompt = NULL;
    /* first pass: the preset, so flags anywhere on the line override it */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) config = argv[i + 1];
    train_cfg c;
    if (!preset(config, &c)) {
        fprintf(stderr, "error: unknown --config '%s' (tiny, shakespeare-char, gpt2, gpt2-medium)\n", config);
        return usage(argv[0]);
    }
    int64_t save_every = 0, sample = 0, top_k = 200, threads = 0, vocab_override = 0;
    int bias = -1, deterministic = 0, cuda_graphs = 0, recompute_gelu = 0, gelu_flag = -1;   /* -1: not given */
    uint64_t seed = 1337;
    double temperature = 0.8, peak_tflops = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(argv[0]);
            return 0;
        }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return usage(argv[0]); }
        const int64_t BIG = INT64_C(1) << 40;
        bool ok = true, known = true;
        if (!strcmp(a, "--config")) {}
        else if (!strcmp(a, "--data")) data_path = v;
        else if (!strcmp(a, "--val-data")) val_path = v;
        else if (!strcmp(a, "--out-dir")) out_dir = v;
        else if (!strcmp(a, "--logger")) { logger = v; ok = !strcmp(v, "csv") || !strcmp(v, "tensorboard") || !strcmp(v, "none"); }
        else if (!strcmp(a, "--accelerator") || !strcmp(a, "--device")) accelerator = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--save-every")) ok = ex_parse_i64(v, 0, BIG, &save_every);
        else if (!strcmp(a, "--n-layer")) ok = ex_parse_i64(v, 1, 4096, &c.model.n_layer);
        else if (!strcmp(a, "--n-head")) ok = ex_parse_i64(v, 1, 4096, &c.model.n_head);
        else if (!strcmp(a, "--n-embd")) ok = ex_parse_i64(v, 1, 1 << 20, &c.model.n_embd);
        else if (!strcmp(a, "--block-size")) ok = ex_parse_i64(v, 1, 1 << 20, &c.model.block_size);
        else if (!strcmp(a, "--vocab-size")) ok = ex_parse_i64(v, 1, 65536, &vocab_override);
        else if (!strcmp(a, "--dropout")) ok = ex_parse_double(v, false, &c.model.dropout) && c.model.dropout >= 0 && c.model.dropout < 1;
        else if (!strcmp(a, "--bias")) ok = ex_parse_int(v, 0, 1, &bias);
        else if (!strcmp(a, "--fused-loss")) ok = ex_parse_int(v, 0, 1, &c.fused_loss);
        else if (!strcmp(a, "--recompute-gelu")) ok = ex_parse_int(v, 0, 1, &recompute_gelu);
        else if (!strcmp(a, "--gelu")) { ok = !strcmp(v, "tanh") || !strcmp(v, "erf"); gelu_flag = !strcmp(v, "tanh"); }
        else if (!strcmp(a, "--always-save-checkpoint")) ok = ex_parse_int(v, 0, 1, &c.always_save_checkpoint);
        else if (!strcmp(a, "--batch-size")) ok = ex_parse_i64(v, 1, BIG, &c.batch_size);
        else if (!strcmp(a, "--grad-accum")) ok = ex_parse_i64(v, 1, BIG, &c.grad_accum);
        else if (!strcmp(a, "--max-iters")) ok = ex_parse_i64(v, 0, INT32_MAX, &c.max_iters);
        else if (!strcmp(a, "--warmup-iters")) ok = ex_parse_i64(v, 0, INT32_MAX, &c.warmup_iters);
        else if (!strcmp(a, "--lr-decay-iters")) ok = ex_parse_i64(v, 0, INT32_MAX, &c.lr_decay_iters);
        else if (!strcmp(a, "--eval-interval")) ok = ex_parse_i64(v, 1, BIG, &c.eval_interval);
        else if (!strcmp(a, "--eval-iters")) ok = ex_parse_i64(v, 1, BIG, &c.eval_iters);
        else if (!strcmp(a, "--log-interval")) ok = ex_parse_i64(v, 1, BIG, &c.log_interval);
        else if (!strcmp(a, "--lr")) ok = ex_parse_double(v, true, &c.lr);
        else if (!strcmp(a, "--min-lr")) ok = ex_parse_double(v, false, &c.min_lr) && c.min_lr >= 0;
        else if (!strcmp(a, "--weight-decay")) ok = ex_parse_double(v, false, &c.weight_decay) && c.weight_decay >= 0;
        else if (!strcmp(a, "--beta1")) ok = ex_parse_double(v, false, &c.beta1) && c.beta1 >= 0 && c.beta1 < 1;
        else if (!strcmp(a, "--beta2")) ok = ex_parse_double(v, false, &c.beta2) && c.beta2 >= 0 && c.beta2 < 1;
        else if (!strcmp(a, "--grad-clip")) ok = ex_parse_double(v, false, &c.grad_clip) && c.grad_clip >= 0;
        else if (!strcmp(a, "--seed")) ok = ex_parse_u64(v, &seed);
        else if (!strcmp(a, "--deterministic")) ok = ex_parse_int(v, 0, 1, &deterministic);
        else if (!strcmp(a, "--cuda-graphs")) ok = ex_parse_int(v, 0, 1, &cuda_graphs);
        else if (!strcmp(a, "--threads")) ok = ex_parse_i64(v, 0, 1024, &threads);
        else if (!strcmp(a, "--peak-tflops")) ok = ex_parse_double(v, true, &peak_tflops);
        else if (!strcmp(a, "--sample")) ok = ex_parse_i64(v, 0, BIG, &sample);
        else if (!strcmp(a, "--temperature")) ok = ex_parse_double(v, true, &temperature);
        else if (!strcmp(a, "--top-k")) ok = ex_parse_i64(v, 0, 65536, &top_k);
        else ok = known = false;
        if (!ok) {
            if (known) fprintf(stderr, "error: invalid value '%s' for %s\n", v, a);
            else fprintf(stderr, "error: unknown option %s\n", a);
            return usage(argv[0]);
        }
        i++;
    }
    if (bias >= 0) c.model.bias = bias;
    c.model.recompute_gelu = recompute_gelu;
    if (gelu_flag >= 0) c.model.gelu = gelu_flag ? WF_GELU_TANH : WF_GELU_NONE;
    if (c.lr_decay_iters < 0) c.lr_decay_iters = c.max_iters;
    if (c.model.n_embd % c.model.n_head) {
        fprintf(stderr, "error: --n-embd %lld is not divisible by --n-head %lld\n", (long long)c.model.n_embd, (long long)c.model.n_head);
        return usage(argv[0]);
    }
    if (c.min_lr > c.lr) { fprintf(stderr, "error: --min-lr %g is above --lr %g\n", c.min_lr, c.lr); return usage(argv[0]); }
    if (cuda_graphs && c.grad_accum > 1) {
        fprintf(stderr, "error: --cuda-graphs 1 captures one micro-batch per iteration: use --grad-accum 1 (not %lld), "
                "or --cuda-graphs 0\n", (long long)c.grad_accum);
        return usage(argv[0]);
    }
    if (cuda_graphs && c.model.dropout > 0) {
        fprintf(stderr, "error: --cuda-graphs 1 with --dropout %g: a replay would draw the same dropout masks every "
                "iteration; use --dropout 0 or --cuda-graphs 0\n", c.model.dropout);
        return usage(argv[0]);
    }
    if (!data_path) { fprintf(stderr, "error: --data FILE is required (a text file, or a .bin of uint16 tokens)\n"); return usage(argv[0]); }
    if (threads > 0) wf_set_num_threads((int)threads);
    /* the same bits run after run (and across a resume) on CUDA too, a little slower */
    wf_use_deterministic_algorithms(deterministic != 0);

    int rc = 0;
    gpt_data d = { 0 };
    wf_fabric *fab = NULL;
    wf_module *model = NULL;
    wf_optimizer *opt = NULL;
    wf_lr_scheduler *sched = NULL;
    wf_fabric_state *st = NULL;
    wf_throughput *tp = NULL;
    int64_t *ctx = NULL;
    wf_cuda_graph *graph = NULL;
    wf_tensor *sx = NULL, *sy = NULL, *loss_t = NULL;   /* --cuda-graphs: static inputs, the captured loss */
    if (gpt_data_load(&d, data_path, val_path)) FAIL("%s", wf_error_message());
    /* tokens: the preset's vocabulary (GPT-2's 50304), or the data's for tiny; --vocab-size overrides */
    c.model.vocab_size = d.chars ? d.vocab_size : vocab_override ? vocab_override : c.model.vocab_size ? c.model.vocab_size : d.vocab_size;
    if (d.vocab_size > c.model.vocab_size)
        FAIL("%s holds token %lld but --vocab-size is %lld", data_path, (long long)d.vocab_size - 1, (long long)c.model.vocab_size);

    /* the Fabric: device, precision, loggers */
    char ckpt[4096] = "";
    wf_logger *loggers[1];
    int n_loggers = 0;
    if (!logger) logger = out_dir ? "csv" : "none";
    if (out_dir) {
        if (snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", out_dir) >= (int)sizeof ckpt) FAIL("--out-dir is too long");
        if (mkdir(out_dir, 0777) && errno != EEXIST) FAIL("cannot create %s: %s", out_dir, strerror(errno));
        if (resume_gelu(ckpt, gelu_flag, &c.model)) { rc = 2; goto out; }
    }
    if (strcmp(logger, "none")) {
        wf_logger_opts lo = { .name = "logs" };
        const char *root = out_dir ? out_dir : ".";
        loggers[0] = !strcmp(logger, "csv") ? wf_csv_logger_new(root, &lo) : wf_tensorboard_logger_new(root, &lo);
        if (!loggers[0]) FAIL("%s", wf_error_message());
        n_loggers = 1;
    }
    fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = accelerator, .precision = precision,
                                                        .loggers = loggers, .n_loggers = n_loggers });
    if (!fab) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        rc = 2;
        goto out;
    }
    wf_seed_everything(seed, false);

    int64_t flops_per_iter = micro_batch_flops(&c.model, c.batch_size) * c.grad_accum;
    model = gpt_new(&c.model);
    opt = model ? gpt_configure_optimizer(model, c.weight_decay, c.lr, c.beta1, c.beta2) : NULL;
    if (!opt || wf_fabric_setup(fab, model, &opt, 1, NULL)) FAIL("%s", wf_error_message());
    sched = wf_lambda_lr_new(opt, lr_factor, &c);
    if (!sched) FAIL("%s", wf_error_message());

    int64_t iter = 0, best_iter = -1, gelu_tanh = c.model.gelu == WF_GELU_TANH;
    double best_val = 1e9;
    if (out_dir) {
        st = wf_fabric_state_new();
        if (!st || wf_fabric_state_add_module(st, "model", model) || wf_fabric_state_add_optimizer(st, "optimizer", opt) ||
            wf_fabric_state_add_scheduler(st, "scheduler", sched) || wf_fabric_state_add_rng(st, "rng") ||
            wf_fabric_state_add_precision(st, "precision", fab) || wf_fabric_state_add_int(st, "iter", &iter) ||
            wf_fabric_state_add_double(st, "best_val_loss", &best_val))
            FAIL("%s", wf_error_message());
        struct stat sb;
        if (!stat(ckpt, &sb)) {
            wf_fabric_state *rest = wf_fabric_load(fab, ckpt, st, true);
            if (!rest) FAIL("resuming from %s: %s", ckpt, wf_error_message());
            /* best_iter came later than the rest: a checkpoint written before it still resumes
             * (its best iteration unknown, -1: the final line prints null) */
            if (wf_fabric_state_find(rest, "best_iter") >= 0 && wf_fabric_state_get_int(rest, "best_iter", &best_iter)) {
                wf_fabric_state_free(rest);
                FAIL("resuming from %s: %s", ckpt, wf_error_message());
            }
            wf_clear_error();
            /* resume_gelu read it already; this catches a checkpoint it could not open alone */
            int64_t ck_tanh = 0;
            if (wf_fabric_state_find(rest, "gelu_tanh") >= 0 && wf_fabric_state_get_int(rest, "gelu_tanh", &ck_tanh)) {
                wf_fabric_state_free(rest);
                FAIL("resuming from %s: %s", ckpt, wf_error_message());
            }
            wf_clear_error();
            wf_fabric_state_free(rest);
            if ((ck_tanh != 0) != (gelu_tanh != 0))
                FAIL("resuming from %s: its model uses the %s GELU, this run's the %s one (--gelu %s)", ckpt,
                     ck_tanh ? "tanh" : "erf", gelu_tanh ? "tanh" : "erf", ck_tanh ? "tanh" : "erf");
            wf_fabric_print(fab, "resumed from %s at iteration %lld\n", ckpt, (long long)iter);
        }
        /* after the load, as best_iter: a checkpoint from before they existed still resumes */
        if (wf_fabric_state_add_int(st, "best_iter", &best_iter) || wf_fabric_state_add_int(st, "gelu_tanh", &gelu_tanh))
            FAIL("%s", wf_error_message());
    }
    /* several processes: the same initial weights everywhere, then each rank its own batches
     * (nanoGPT's seed_offset). A resume restores rank 0's generator on every rank, so there the
     * ranks are reseeded from the iteration: a multi-rank resume is exact per rank only in
     * distribution, the one-process resume bit for bit. */
    int world = wf_fabric_world_size(fab), rank = wf_fabric_global_rank(fab);
    if (world > 1) wf_manual_seed(seed + (uint64_t)rank * 1000003u + (uint64_t)iter);
    const char *hp_names[] = { "n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "lr", "max_iters" };
    double hp_vals[] = { (double)c.model.n_layer, (double)c.model.n_head, (double)c.model.n_embd, (double)c.model.block_size,
                         (double)c.batch_size, (double)c.grad_accum, c.lr, (double)c.max_iters };
    bool hp_num[8] = { true, true, true, true, true, true, true, true };
    wf_fabric_log_hyperparams(fab, hp_names, NULL, hp_vals, hp_num, 8);   /* CSV does not log them: WF_ENOTSUP is fine */
    wf_clear_error();

    double peak = peak_tflops * 1e12;
    if (!(peak > 0) && threads > 0 && wf_fabric_device(fab).type == WF_DEV_CPU) {   /* the cores this run uses */
        peak = wf_cpu_peak_flops((int)threads, 0, 0, !strcmp(wf_fabric_precision_name(fab), "64-true") ? 8 : 4);
        wf_clear_error();   /* no clock known: MFU n/a */
    }
    tp = wf_throughput_monitor_new(fab, &(wf_throughput_opts){
        .available_flops = peak, .window_size = (int)(c.log_interval < 2 ? 2 : c.log_interval + 1) });
    if (!tp) FAIL("%s", wf_error_message());
    int64_t tokens_per_iter = c.batch_size * c.grad_accum * c.model.block_size;
    wf_fabric_print(fab, "%s: %.2fM parameters, GELU %s, %lld tokens/iter, %.3g GFLOP/iter, %s on %s, %s\n", config,
                    (double)gpt_num_params(model) / 1e6, c.model.gelu == WF_GELU_TANH ? "tanh" : "erf",
                    (long long)tokens_per_iter, (double)flops_per_iter / 1e9,
                    wf_fabric_precision_name(fab), wf_fabric_accelerator_name(fab),
                    wf_throughput_available_flops(tp) > 0 ? "MFU against the device's peak" : "no peak known (MFU n/a)");

    double losses[2] = { NAN, NAN }, first_val = NAN, t_start = now(), t_eval = 0, last_loss = NAN, tok_s = 0, ms_iter = 0;
    int64_t start_iter = iter;
    if (cuda_graphs) {
        if (wf_fabric_device(fab).type != WF_DEV_CUDA) FAIL("--cuda-graphs 1 needs a CUDA device (--accelerator cuda)");
        if (world > 1) FAIL("--cuda-graphs 1 runs in one process (this run has %d)", world);
        sx = wf_zeros_on(WF_SHAPE(c.batch_size, c.model.block_size), WF_I64, wf_fabric_device(fab));
        sy = wf_zeros_on(WF_SHAPE(c.batch_size, c.model.block_size), WF_I64, wf_fabric_device(fab));
        if (!sx || !sy) FAIL("%s", wf_error_message());
    }
    for (; iter < c.max_iters; iter++) {
        if (iter % c.eval_interval == 0) {
            double te = now();
            if (evaluate(fab, model, &d, &c, true, st, ckpt, iter, losses, &best_val, &best_iter))
                FAIL("%s", wf_error_message());
            if (isnan(first_val)) first_val = losses[1];
            const char *names[3] = { "train/loss_eval", "val/loss", "lr" };
            double vals[3] = { losses[0], losses[1], wf_optimizer_get_lr(opt, 0) };
            if (wf_fabric_log_dict(fab, names, vals, 3, iter)) FAIL("%s", wf_error_message());
            t_eval += now() - te;
        }
        double t0 = now(), loss_sum = 0;
        bool log_now = (iter + 1) % c.log_interval == 0 || iter + 1 == c.max_iters;
        int rc = cuda_graphs ? 0 : wf_optimizer_zero_grad(opt, true);
        if (cuda_graphs) {
            WF_SCOPE {   /* the batch into the static inputs: the graph reads them there */
                wf_tensor *x, *y;
                rc = gpt_get_batch(&d, true, c.batch_size, c.model.block_size, &x, &y);
                if (!rc) rc = wf_copy_(sx, x);
                if (!rc) rc = wf_copy_(sy, y);
            }
            if (!rc && iter - start_iter < GRAPH_WARMUP) rc = static_step(fab, model, opt, &c, sx, sy, &loss_t);
            else if (!rc) {
                if (!graph) {   /* capture this iteration (nothing runs), then replay it at once */
                    wf_cuda_empty_cache();   /* the eager iterations' cached blocks: the capture has its own pool */
                    graph = wf_cuda_graph_new();
                    rc = graph ? wf_cuda_graph_capture_begin(graph, wf_fabric_device(fab)) : wf_error();
                    if (!rc) {
                        rc = static_step(fab, model, opt, &c, sx, sy, &loss_t);
                        int end = wf_cuda_graph_capture_end(graph);
                        if (!rc) rc = end;
                    }
                    if (!rc) wf_fabric_print(fab, "iter %lld: captured one iteration into a CUDA graph\n", (long long)iter);
                }
                if (!rc) rc = wf_cuda_graph_replay(graph);
            }
            if (!rc && log_now) loss_sum = wf_item(loss_t);   /* the only read of the device, when logging */
        }
        for (int64_t micro = 0; micro < c.grad_accum && !rc && !cuda_graphs; micro++) {
            bool sync = micro == c.grad_accum - 1;   /* reduce the gradients once, after the last micro-batch */
            if (!sync) rc = wf_fabric_no_backward_sync_begin(fab, model, true);
            WF_SCOPE {
                wf_tensor *x, *y;
                if (!rc) rc = gpt_get_batch(&d, true, c.batch_size, c.model.block_size, &x, &y);
                wf_tensor *loss = rc ? NULL : batch_loss(fab, model, x, y, &c);
                if (!rc && !loss) rc = wf_error();
                if (!rc) {
                    loss_sum += wf_item(loss);
                    rc = wf_fabric_backward(fab, wf_div_scalar(loss, (double)c.grad_accum), model);
                }
            }
            if (!sync && wf_fabric_no_backward_sync_end(fab) && !rc) rc = wf_error();
        }
        double norm = cuda_graphs ? NAN : 0;
        if (!rc && c.grad_clip > 0 && !cuda_graphs)
            rc = wf_fabric_clip_gradients(fab, model, opt, &(wf_clip_opts){ .max_norm = c.grad_clip }, &norm);
        if (!rc && !cuda_graphs) rc = wf_fabric_step(fab, opt, NULL);
        if (!rc) rc = wf_fabric_scheduler_step(fab, sched);
        if (rc) FAIL("iteration %lld: %s", (long long)iter, wf_error_message());
        if (!cuda_graphs) last_loss = loss_sum / (double)c.grad_accum;
        else if (log_now) last_loss = loss_sum;   /* read only when logging */
        double t1 = now();
        int64_t done = iter + 1 - start_iter;
        if (wf_throughput_update(tp, t1 - t_start - t_eval, done, done * c.batch_size * c.grad_accum, done * tokens_per_iter,
                                 (double)flops_per_iter))
            FAIL("%s", wf_error_message());
        ms_iter = 1000.0 * (t1 - t0);
        if (log_now) {
            wf_throughput_metrics m;
            if (wf_throughput_compute_and_log(tp, iter + 1, &m)) FAIL("%s", wf_error_message());
            double ips = wf_throughput_metric(&m, "device/items_per_sec"), mfu = wf_throughput_metric(&m, "device/mfu");
            tok_s = isnan(ips) ? (double)tokens_per_iter / (t1 - t0) : ips;   /* before the window fills: this iteration */
            if (isnan(mfu) && wf_throughput_available_flops(tp) > 0)
                mfu = (double)flops_per_iter / (t1 - t0) / wf_throughput_available_flops(tp);
            const char *names[3] = { "train/loss", "lr", "grad_norm" };
            double vals[3] = { last_loss, wf_optimizer_get_lr(opt, 0), norm };
            if (wf_fabric_log_dict(fab, names, vals, cuda_graphs ? 2 : 3, iter + 1)) FAIL("%s", wf_error_message());
            char mfu_s[32] = "n/a";
            if (!isnan(mfu)) snprintf(mfu_s, sizeof mfu_s, "%.2f%%", 100 * mfu);
            wf_fabric_print(fab, "iter %lld: loss %.4f, %.2f ms/iter, %.0f tokens/s, mfu %s\n", (long long)iter + 1, last_loss,
                            ms_iter, tok_s, mfu_s);
        }
        if (st && c.always_save_checkpoint && save_every > 0 && (iter + 1) % save_every == 0) {
            int64_t at_iter = iter;
            iter++;   /* the checkpoint's "iter" is the next one to run */
            int src = wf_fabric_save(fab, ckpt, st, NULL);
            iter = at_iter;
            if (src) FAIL("%s", wf_error_message());
        }
    }
    if (st && c.always_save_checkpoint && wf_fabric_save(fab, ckpt, st, NULL)) FAIL("%s", wf_error_message());
    /* the last evaluation: one of the loop's (best loss, save) when max-iters is a multiple of
     * eval-interval, as nanoGPT's loop runs it; else the final figure only */
    if (evaluate(fab, model, &d, &c, iter % c.eval_interval == 0, st, ckpt, iter, losses, &best_val, &best_iter))
        FAIL("%s", wf_error_message());
    if (isnan(first_val)) first_val = losses[1];

    if (sample > 0) {
        ctx = calloc((size_t)(sample + 1 + (prompt ? strlen(prompt) : 0)), sizeof *ctx);
        int64_t n_ctx = 1;
        if (!ctx) FAIL("out of memory");
        if (prompt && d.chars) {
            if (gpt_encode(&d, prompt, ctx, (int64_t)strlen(prompt), &n_ctx)) FAIL("%s", wf_error_message());
        } else ctx[0] = d.chars && d.stoi['\n'] >= 0 ? d.stoi['\n'] : d.val[0];   /* nanoGPT starts from "\n" */
        if (n_ctx == 0) ctx[0] = d.val[0], n_ctx = 1;
        if (gpt_generate(model, ctx, n_ctx, sample, temperature, top_k)) FAIL("sampling: %s", wf_error_message());
        if (wf_fabric_is_global_zero(fab)) {
            printf("---- sample (temperature %g, top_k %lld)\n", temperature, (long long)top_k);
            gpt_decode(&d, ctx, n_ctx + sample, stdout);
            printf("\n----\n");
        }
    }
    char best_s[128] = "\"best_val_loss\":null,\"best_iter\":null";   /* no evaluation counted (a resumed old checkpoint) */
    if (best_iter >= 0)
        snprintf(best_s, sizeof best_s, "\"best_val_loss\":%.6f,\"best_iter\":%lld", best_val, (long long)best_iter);
    wf_fabric_print(fab, "{\"config\":\"%s\",\"iters\":%lld,\"first_val_loss\":%.6f,\"train_loss\":%.6f,\"val_loss\":%.6f,"
                    "%s,\"last_batch_loss\":%.6f,\"tokens_per_s\":%.0f,\"ms_per_iter\":%.3f,\"params\":%lld}\n", config,
                    (long long)iter, first_val, losses[0], losses[1], best_s, last_loss, tok_s, ms_iter,
                    (long long)gpt_num_params(model));
out:
    wf_cuda_graph_free(graph);
    wf_tensor_free(loss_t);
    wf_tensor_free(sx);
    wf_tensor_free(sy);
    free(ctx);
    wf_throughput_free(tp);
    wf_fabric_state_free(st);
    wf_lr_scheduler_free(sched);
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_fabric_free(fab);
    gpt_data_free(&d);
    return rc;
}
