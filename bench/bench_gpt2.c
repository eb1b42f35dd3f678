/* bench/bench_gpt2.c: weft's side of bench/peer_gpt2.py (issue 15): GPT-2 training steps
 * through Fabric with the peer's settings, on random tokens.
 *
 *   bench_gpt2 [--layers 12 --heads 12 --width 768 --vocab 50304 --batch 16 --seq 1024]
 *              [--steps 20 --warmup 5] [--accelerator auto|cpu|cuda] [--precision bf16-mixed]
 *              [--threads N] [--peak-tflops X] [--cuda-graphs 0|1] [--fused-loss 0|1] [--loss-chunk-rows N] [--dropout P]
 *              [--recompute-gelu 0|1] [--gelu-epilogue 0|1]
 *
 * The model is examples/gpt/gpt_model.c (nanoGPT's GPT-2: biases on, dropout 0 or --dropout P, GELU tanh as the
 * peer's (gpt_config.gelu; before it the example's MLP ran the erf form, so the two did not match),
 * tied head, block size = --seq); AdamW lr 6e-4, betas 0.9/0.95, weight decay 0.1 on the 2-D
 * weights only (gpt_configure_optimizer); clip_gradients(max_norm 1.0) without reading the
 * norm back (error_if_nonfinite off, so Fabric uses wf_clip_grad_norm_tensor_ and the step
 * has no host synchronization); zero_grad(set_to_none). The first --warmup steps are not
 * timed. Last line: one JSON object with the peer's keys (tok_s, step_ms, mfu, peak_gb, loss).
 *
 * MFU uses the peer's count (PaLM's, as nanoGPT's estimate_mfu): 6 N + 12 L H Q T FLOPs per
 * token, N = every parameter once (tied head counted once, position embedding included),
 * against wf_get_available_flops for the device and precision (the CPU: wf_cpu_peak_flops of
 * the threads used), or --peak-tflops. Peak memory: the device allocator's peak_allocated
 * (torch.cuda.max_memory_allocated's counterpart); on the CPU the host allocator's.
 *
 * --cuda-graphs 1 (CUDA only): 3 eager steps, then step 4 (forward, backward, clipping,
 * optimizer step, zero_grad) is captured into one CUDA graph (weft/cuda.h) and every step
 * from the 4th on is a replay of it (the batch is the same static tensors every step, as
 * above); "graphs":1 in the JSON. Keep --warmup at 4 or more so the capture is not timed.
 * --fused-loss 1 (the default, as examples/gpt): the loss from the hidden states through
 * wf_linear_cross_entropy, chunked, so the [B*T, V] logits are never whole; 0: from logits.
 * --loss-chunk-rows N: the fused loss's rows per chunk (0, the default: automatic, as few equal
 * chunks as keep one under 2^28 logits), to measure the chunk size's cost in time and memory.
 * --memory-summary 1: the memory census (wf_memory_record_history) is on from before the model
 * is made; after the timed steps it prints to stderr what was alive at the device's peak, per
 * label (the op that allocated it; "forward", "loss", "backward of <Node>", "clip", "optimizer",
 * "zero_grad" around the step's parts), biggest first. The JSON stays the last stdout line.
 * --gelu-epilogue 0: WEFT_NO_GELU_EPILOGUE=1 for this process, so the tanh GELU runs as the GEMM
 * and a bias + GELU kernel instead of inside cuBLASLt's GEMM epilogues: the A/B of one
 * bench/gpt2_run.sh call ("gelu_epilogue" in the JSON). */
#define _POSIX_C_SOURCE 200809L   /* setenv */
#include "gpt_model.h"
#include "weft/fabric.h"
#include "weft/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--layers N] [--heads N] [--width N] [--vocab N] [--batch N] [--seq N] [--steps N] "
                    "[--warmup N] [--accelerator auto|cpu|cuda] [--precision NAME] [--threads N] [--peak-tflops X] "
                    "[--cuda-graphs 0|1] [--fused-loss 0|1] [--loss-chunk-rows N] [--dropout P] [--recompute-gelu 0|1] "
                    "[--memory-summary 0|1] "
                    "[--gelu-epilogue 0|1]\n"
                    "The model: examples/gpt's GPT-2 with biases and the tanh GELU (the peer's F.gelu(approximate=\"tanh\"),\n"
                    "examples/gpt's gpt2 config); on CUDA in bf16 the GELU runs inside c_fc's GEMM (cuBLASLt epilogue;\n"
                    "--gelu-epilogue 0, or WEFT_NO_GELU_EPILOGUE=1: the GEMM and a bias + GELU kernel, for comparison).\n",
            argv0);
    return 2;
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

#define FAIL(...) do { fprintf(stderr, "bench_gpt2: "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); rc = 1; goto done; } while (0)

/* wait for the device's queued work, so the clock measures it */
static int sync_device(wf_device d) { return d.type == WF_DEV_CUDA ? wf_cuda_synchronize(d.index) : 0; }

/* the training step after the loss: backward, clipping, optimizer step, zero_grad */
static int step_rest(wf_fabric *fab, wf_module *model, wf_optimizer *opt, wf_tensor *loss, const wf_clip_opts *clip) {
    wf_memory_set_label("backward");
    int r = loss ? wf_fabric_backward(fab, loss, model) : (wf_error() ? wf_error() : -1);
    wf_memory_set_label("clip");
    if (!r) r = wf_fabric_clip_gradients(fab, model, opt, clip, NULL);
    wf_memory_set_label("optimizer");
    if (!r) r = wf_fabric_step(fab, opt, NULL);
    wf_memory_set_label("zero_grad");
    if (!r) r = wf_optimizer_zero_grad(opt, true);
    wf_memory_set_label(NULL);
    return r;
}

int main(int argc, char **argv) {
    int64_t layers = 12, heads = 12, width = 768, vocab = 50304, batch = 16, seq = 1024, steps = 20, warmup = 5,
            threads = 0, graphs = 0, fused = 1, chunk_rows = 0, recompute_gelu = 0, memory_summary = 0, gelu_epilogue = 1;
    double peak_tflops = 0, dropout = 0;
    const char *accelerator = "auto", *precision = "bf16-mixed";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(argv[0]), 0;
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return usage(argv[0]); }
        bool ok = true;
        const int64_t BIG = (int64_t)1 << 30;
        if (!strcmp(a, "--layers")) ok = parse_i64(v, 1, 1024, &layers);
        else if (!strcmp(a, "--heads")) ok = parse_i64(v, 1, 1024, &heads);
        else if (!strcmp(a, "--width")) ok = parse_i64(v, 1, BIG, &width);
        else if (!strcmp(a, "--vocab")) ok = parse_i64(v, 2, BIG, &vocab);
        else if (!strcmp(a, "--batch")) ok = parse_i64(v, 1, BIG, &batch);
        else if (!strcmp(a, "--seq")) ok = parse_i64(v, 1, BIG, &seq);
        else if (!strcmp(a, "--steps")) ok = parse_i64(v, 1, BIG, &steps);
        else if (!strcmp(a, "--warmup")) ok = parse_i64(v, 0, BIG, &warmup);
        else if (!strcmp(a, "--threads")) ok = parse_i64(v, 0, 1024, &threads);
        else if (!strcmp(a, "--cuda-graphs")) ok = parse_i64(v, 0, 1, &graphs);
        else if (!strcmp(a, "--fused-loss")) ok = parse_i64(v, 0, 1, &fused);
        else if (!strcmp(a, "--recompute-gelu")) ok = parse_i64(v, 0, 1, &recompute_gelu);
        else if (!strcmp(a, "--memory-summary")) ok = parse_i64(v, 0, 1, &memory_summary);
        else if (!strcmp(a, "--gelu-epilogue")) ok = parse_i64(v, 0, 1, &gelu_epilogue);
        else if (!strcmp(a, "--loss-chunk-rows")) ok = parse_i64(v, 0, BIG, &chunk_rows);
        else if (!strcmp(a, "--accelerator")) accelerator = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--dropout")) { char *e; dropout = strtod(v, &e); ok = *v && !*e && dropout >= 0 && dropout < 1; }
        else if (!strcmp(a, "--peak-tflops")) { char *e; peak_tflops = strtod(v, &e); ok = *v && !*e && peak_tflops > 0; }
        else { fprintf(stderr, "error: unknown option %s\n", a); return usage(argv[0]); }
        if (!ok) { fprintf(stderr, "error: invalid value '%s' for %s\n", v, a); return usage(argv[0]); }
        i++;
    }
    if (width % heads) { fprintf(stderr, "error: --width %lld is not divisible by --heads %lld\n", (long long)width, (long long)heads); return usage(argv[0]); }
    if (threads > 0) wf_set_num_threads((int)threads);
    /* read once, at the first GEMM: set before anything runs */
    if (!gelu_epilogue) setenv("WEFT_NO_GELU_EPILOGUE", "1", 1);

    int rc = 0;
    wf_fabric *fab = NULL;
    wf_module *model = NULL;
    wf_optimizer *opt = NULL;
    wf_tensor *x = NULL, *y = NULL, *graph_loss = NULL;
    wf_cuda_graph *graph = NULL;
    double last_loss = NAN;
    fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = accelerator, .precision = precision });
    if (!fab) FAIL("%s", wf_error_message());
    wf_device dev = wf_fabric_device(fab);
    if (memory_summary && wf_memory_record_history(true)) FAIL("%s", wf_error_message());
    wf_manual_seed(0);
    gpt_config cfg = { .vocab_size = vocab, .block_size = seq, .n_layer = layers, .n_head = heads, .n_embd = width,
                       .dropout = dropout, .bias = true, .recompute_gelu = recompute_gelu != 0, .gelu = WF_GELU_TANH };
    model = gpt_new(&cfg);
    if (!model) FAIL("%s", wf_error_message());
    opt = gpt_configure_optimizer(model, 0.1, 6e-4, 0.9, 0.95);
    if (!opt || wf_fabric_setup(fab, model, &opt, 1, NULL)) FAIL("%s", wf_error_message());
    int64_t n_params = wf_module_num_parameters(model);

    /* random tokens [B, T+1] below GPT-2's 50257 (as the peer), inputs and shifted targets */
    wf_manual_seed(1);
    {   /* no scope is open here: every handle is ours to free */
        wf_tensor *idx = wf_randint(0, vocab < 50257 ? vocab : 50257, (int64_t[]){ batch, seq + 1 }, 2, WF_I64);
        wf_tensor *nx = idx ? wf_narrow(idx, 1, 0, seq) : NULL, *ny = idx ? wf_narrow(idx, 1, 1, seq) : NULL;
        wf_tensor *xc = nx ? wf_contiguous(nx) : NULL, *yc = ny ? wf_contiguous(ny) : NULL;
        x = xc ? wf_fabric_to_device(fab, xc) : NULL;
        y = yc ? wf_fabric_to_device(fab, yc) : NULL;
        wf_tensor_free(idx), wf_tensor_free(nx), wf_tensor_free(ny), wf_tensor_free(xc), wf_tensor_free(yc);
    }
    if (!x || !y) FAIL("%s", wf_error_message());
    if (graphs && dev.type != WF_DEV_CUDA) FAIL("--cuda-graphs 1 needs a CUDA device (--accelerator cuda)");

    const wf_clip_opts clip = { .max_norm = 1.0, .no_error_if_nonfinite = true };
    double t0 = now();
    if (wf_fabric_reset_peak_memory_stats(fab)) wf_clear_error();   /* where the peer resets: warmup steps count */
    for (int64_t s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            if (sync_device(dev)) FAIL("%s", wf_error_message());
            t0 = now();
        }
        if (graphs && s >= 3) {   /* step 4 is captured (nothing runs), then every step replays it */
            int r = 0;
            if (!graph) {
                wf_cuda_empty_cache();   /* the eager steps' cached blocks: the capture takes its own pool */
                graph = wf_cuda_graph_new();
                r = graph ? wf_cuda_graph_capture_begin(graph, dev) : (wf_error() ? wf_error() : -1);
                if (!r) {
                    wf_scope_begin();
                    wf_tensor *loss = gpt_batch_loss(fab, model, x, y, fused, chunk_rows);
                    r = step_rest(fab, model, opt, loss, &clip);
                    if (!r) graph_loss = wf_tensor_retain(loss);   /* every replay writes its loss here */
                    wf_scope_end();
                    int end = wf_cuda_graph_capture_end(graph);
                    if (!r) r = end;
                }
                if (r) FAIL("capturing step %lld: %s", (long long)s, wf_error_message());
            }
            if (wf_cuda_graph_replay(graph)) FAIL("step %lld: %s", (long long)s, wf_error_message());
            if (s == warmup + steps - 1) last_loss = wf_item(graph_loss);
            continue;
        }
        wf_scope_begin();
        wf_tensor *loss = gpt_batch_loss(fab, model, x, y, fused, chunk_rows);
        int r = step_rest(fab, model, opt, loss, &clip);
        if (!r && s == warmup + steps - 1) last_loss = wf_item(loss);   /* after the clock stops would be fairer, */
        wf_scope_end();                                                   /* but the peer reads it the same way */
        if (r) FAIL("step %lld: %s", (long long)s, wf_error_message());
    }
    if (sync_device(dev)) FAIL("%s", wf_error_message());
    double dt = (now() - t0) / (double)steps;

    wf_memory_stats ms = { 0 };
    if (wf_fabric_memory_stats(fab, &ms)) { wf_clear_error(); memset(&ms, 0, sizeof ms); }
    char name[128] = "unknown";
    if (wf_device_name(dev, name, sizeof name)) wf_clear_error();
    if (memory_summary) {   /* to stderr: gpt2_run.sh keeps the JSON as the last stdout line */
        static char table[1 << 16];
        if (wf_memory_summary(dev, table, sizeof table) < 0) FAIL("%s", wf_error_message());
        fprintf(stderr, "%s(the allocator's peak_allocated: %zu bytes, rounding and non-tensor blocks included)\n",
                table, ms.peak_allocated);
    }
    double peak = peak_tflops * 1e12;
    if (!(peak > 0) && dev.type == WF_DEV_CUDA) peak = wf_get_available_flops(name, precision, false);
    if (!(peak > 0) && dev.type == WF_DEV_CPU) peak = wf_cpu_peak_flops((int)threads, 0, 0, 4);
    wf_clear_error();
    double tokens = (double)batch * (double)seq;
    double flops_tok = 6.0 * (double)n_params + 12.0 * (double)layers * (double)heads * (double)(width / heads) * (double)seq;
    double mfu = peak > 0 ? flops_tok * tokens / dt / peak : NAN;
    printf("{\"impl\":\"weft+fabric\",\"device\":\"%s\",\"batch\":%lld,\"seq\":%lld,\"params_m\":%.2f,\"step_ms\":%.2f,"
           "\"tok_s\":%.0f,\"mfu\":%.4f,\"peak_gb\":%.2f,\"loss\":%.4f,\"graphs\":%d,\"fused_loss\":%d,\"loss_chunk_rows\":%lld,\"recompute_gelu\":%d,"
           "\"gelu_epilogue\":%d}\n",
           name, (long long)batch, (long long)seq, (double)n_params / 1e6, 1000 * dt, tokens / dt, isnan(mfu) ? 0.0 : mfu,
           (double)ms.peak_allocated / 1e9, last_loss, (int)graphs, (int)fused, (long long)chunk_rows, (int)recompute_gelu,
           (int)gelu_epilogue);
done:
    wf_cuda_graph_free(graph);
    wf_tensor_free(graph_loss);
    wf_tensor_free(x);
    wf_tensor_free(y);
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_fabric_free(fab);
    return rc;
}
