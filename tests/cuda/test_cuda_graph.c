/* tests/cuda/test_cuda_graph.c: CUDA graphs (tensor/cuda/cuda_graph.cu, weft/cuda.h) on the GPU:
 *  - a small MLP (two Linear layers as raw tensors, ReLU, MSE, clip_grad_norm_tensor_, AdamW
 *    with a learning rate that changes every step, zero_grad(set_to_none)) trained 3 steps
 *    eagerly then N steps by replaying one captured step equals N+3 eager steps to the bit
 *    (deterministic algorithms on), loss of the last step included; the optimizer's step
 *    count advanced once per replay;
 *  - allocations during the capture come from the graph's pool (its counters), frees return
 *    there, eager allocations after the capture do not touch it;
 *  - errors: nested captures, a host read (wf_item), a synchronize, a copy from the host and
 *    emptying the cache inside a capture (refused, naming it; capture_end then fails), replay
 *    of an empty or failed graph, a CPU device, NULL, an optimizer state created in a capture.
 * A plain program (suite 'cuda'): one line per check and, last, {"checks":N,"failed":M};
 * exit 1 if any failed, 77 (skip) without a GPU. */
#include "weft/weft.h"
#include "weft/optim.h"
#include "weft/nn.h"
#include "weft/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_checks, n_failed;
#define GPU WF_CUDA(0)
#define IN 16
#define HID 64
#define OUT 4
#define BATCH 32
#define WARMUP 3
#define REPLAYS 6

static void check(bool ok, const char *name) {
    n_checks++;
    if (!ok) n_failed++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    if (!ok && wf_error()) printf("     last error: %s\n", wf_error_message());
}

/* the error code and a piece of its message */
static void check_err(int rc, int want, const char *needle, const char *name) {
    bool ok = rc == want && (!needle || strstr(wf_error_message(), needle));
    n_checks++;
    if (!ok) n_failed++;
    printf("%s %s (rc %d, want %d: %s)\n", ok ? "ok  " : "FAIL", name, rc, want, wf_error_message());
    wf_clear_error();
}

typedef struct mlp {
    wf_tensor *p[4];   /* W1 [IN,HID], b1 [HID], W2 [HID,OUT], b2 [OUT] on the GPU, owned */
    wf_optimizer *opt;
    wf_lr_scheduler *sched;
} mlp;

static double lr_lambda(int epoch, void *ud) { (void)ud; return 1.0 / (1.0 + 0.25 * epoch); }

static int mlp_init(mlp *m) {
    memset(m, 0, sizeof *m);
    wf_manual_seed(7);
    const int64_t shapes[4][2] = { { IN, HID }, { HID, 0 }, { HID, OUT }, { OUT, 0 } };
    for (int i = 0; i < 4; i++) {
        wf_tensor *c = wf_randn(shapes[i], shapes[i][1] ? 2 : 1, WF_F32);
        m->p[i] = c ? wf_to_device(c, GPU) : NULL;
        wf_tensor_free(c);
        if (!m->p[i] || wf_set_requires_grad(m->p[i], true)) return -1;
    }
    m->opt = wf_adamw_new(m->p, 4, &(wf_adam_opts){ .lr = 1e-2, .betas = { 0.9, 0.95 }, .weight_decay = 0.1 });
    m->sched = m->opt ? wf_lambda_lr_new(m->opt, lr_lambda, NULL) : NULL;
    return m->sched ? 0 : -1;
}

static void mlp_free(mlp *m) {
    wf_lr_scheduler_free(m->sched);
    wf_optimizer_free(m->opt);
    for (int i = 0; i < 4; i++) wf_tensor_free(m->p[i]);
}

/* batch k (host tensors, deterministic): x [BATCH,IN], y [BATCH,OUT]; owned by the caller */
static int make_batch(int k, wf_tensor **x, wf_tensor **y) {
    wf_manual_seed(1000 + (uint64_t)k);
    *x = wf_randn((int64_t[]){ BATCH, IN }, 2, WF_F32);
    *y = wf_randn((int64_t[]){ BATCH, OUT }, 2, WF_F32);
    return *x && *y ? 0 : -1;
}

/* one training step on device tensors x, y; *loss (owned by the caller) when asked */
static int step(mlp *m, wf_tensor *x, wf_tensor *y, wf_tensor **loss_out) {
    int rc = 0;
    wf_scope_begin();
    wf_tensor *h = wf_relu(wf_add(wf_matmul(x, m->p[0]), m->p[1]));
    wf_tensor *out = wf_add(wf_matmul(h, m->p[2]), m->p[3]);
    wf_tensor *loss = wf_mse_loss(out, y, WF_REDUCTION_MEAN);
    if (!loss) rc = wf_error() ? wf_error() : -1;
    if (!rc) rc = wf_backward(loss, NULL, false);
    if (!rc && !wf_clip_grad_norm_tensor_(m->p, 4, 0.5, 2.0)) rc = wf_error() ? wf_error() : -1;
    if (!rc) rc = wf_optimizer_step(m->opt);
    if (!rc) rc = wf_optimizer_zero_grad(m->opt, true);
    if (!rc && loss_out) *loss_out = wf_tensor_retain(loss);
    wf_scope_end();
    return rc;
}

static bool same_bits(wf_tensor *a, wf_tensor *b) {
    int64_t n = wf_numel(a);
    if (n != wf_numel(b)) return false;
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    bool ok = x && y && !wf_to_array(a, x, WF_F32) && !wf_to_array(b, y, WF_F32) && !memcmp(x, y, sizeof(float) * (size_t)n);
    free(x), free(y);
    return ok;
}

/* eager: WARMUP + REPLAYS steps */
static int run_eager(mlp *m, float *last_loss) {
    int rc = 0;
    for (int k = 0; k < WARMUP + REPLAYS && !rc; k++) {
        wf_tensor *xc, *yc, *x = NULL, *y = NULL, *loss = NULL;
        rc = make_batch(k, &xc, &yc);
        if (!rc) { x = wf_to_device(xc, GPU), y = wf_to_device(yc, GPU); rc = x && y ? 0 : -1; }
        if (!rc) rc = step(m, x, y, &loss);
        if (!rc && k == WARMUP + REPLAYS - 1) *last_loss = (float)wf_item(loss);
        if (!rc) rc = wf_lr_scheduler_step(m->sched);
        wf_tensor_free(xc), wf_tensor_free(yc), wf_tensor_free(x), wf_tensor_free(y), wf_tensor_free(loss);
    }
    return rc;
}

/* WARMUP eager steps, then one captured step replayed REPLAYS times on new batches copied into
 * static inputs */
static int run_graph(mlp *m, float *last_loss, wf_memory_stats *pool_after) {
    int rc = 0;
    wf_tensor *sx = wf_zeros_on((int64_t[]){ BATCH, IN }, 2, WF_F32, GPU);
    wf_tensor *sy = wf_zeros_on((int64_t[]){ BATCH, OUT }, 2, WF_F32, GPU);
    wf_tensor *loss = NULL;
    wf_cuda_graph *g = wf_cuda_graph_new();
    if (!sx || !sy || !g) rc = -1;
    for (int k = 0; k < WARMUP + REPLAYS && !rc; k++) {
        wf_tensor *xc, *yc;
        rc = make_batch(k, &xc, &yc);
        if (!rc) rc = wf_copy_(sx, xc);
        if (!rc) rc = wf_copy_(sy, yc);
        wf_tensor_free(xc), wf_tensor_free(yc);
        if (rc) break;
        if (k < WARMUP) {
            rc = step(m, sx, sy, NULL);
        } else {
            if (k == WARMUP) {
                rc = wf_cuda_graph_capture_begin(g, GPU);
                if (!rc) rc = step(m, sx, sy, &loss);
                int rc2 = wf_cuda_graph_capture_end(g);
                if (!rc) rc = rc2;
            }
            if (!rc) rc = wf_cuda_graph_replay(g);
        }
        if (!rc && k == WARMUP + REPLAYS - 1) *last_loss = (float)wf_item(loss);
        if (!rc) rc = wf_lr_scheduler_step(m->sched);
    }
    if (!rc) rc = wf_cuda_synchronize(0);
    if (!rc) rc = wf_cuda_graph_pool_stats(g, pool_after);
    wf_tensor_free(loss);
    wf_tensor_free(sx), wf_tensor_free(sy);
    wf_cuda_graph_free(g);
    return rc;
}

static void test_training(void) {
    wf_use_deterministic_algorithms(true);
    mlp a, b;
    float la = NAN, lb = NAN;
    wf_memory_stats ps = { 0 };
    int ra = mlp_init(&a) || run_eager(&a, &la);
    check(!ra, "eager MLP: 9 steps");
    int rb = mlp_init(&b) || run_graph(&b, &lb, &ps);
    check(!rb, "graph MLP: 3 eager steps, capture, 6 replays");
    bool same = !ra && !rb;
    for (int i = 0; i < 4 && same; i++) same = same_bits(a.p[i], b.p[i]);
    check(same, "graph MLP parameters equal the eager run's to the bit");
    check(!ra && !rb && memcmp(&la, &lb, sizeof la) == 0, "graph MLP last loss equals the eager run's to the bit");
    printf("     last loss eager %.9g, graph %.9g\n", la, lb);
    check(!rb && fabs(wf_optimizer_get_lr(b.opt, 0) - wf_optimizer_get_lr(a.opt, 0)) == 0,
          "the scheduler's learning rate advanced alike");
    check(!rb && ps.n_system_allocs > 0 && ps.reserved > 0, "the capture's allocations came from the graph's pool");
    mlp_free(&a), mlp_free(&b);
    wf_use_deterministic_algorithms(false);
}

static void test_pool(void) {
    wf_cuda_graph *g = wf_cuda_graph_new();
    wf_memory_stats p0, p1, p2, p3;
    wf_tensor *warm = wf_empty_on((int64_t[]){ 1 << 16 }, 1, WF_F32, GPU);   /* a block of that size in the cache */
    wf_tensor_free(warm);
    int rc = wf_cuda_graph_capture_begin(g, GPU);
    check(!rc && wf_cuda_is_capturing(0), "capture begins; wf_cuda_is_capturing says so");
    wf_cuda_graph_pool_stats(g, &p0);
    wf_tensor *t = wf_empty_on((int64_t[]){ 1 << 16 }, 1, WF_F32, GPU);   /* would reuse the cached block eagerly */
    wf_tensor *keep = wf_empty_on((int64_t[]){ 1000 }, 1, WF_F32, GPU);
    wf_cuda_graph_pool_stats(g, &p1);
    check(t && keep && p1.allocated >= p0.allocated + (1u << 18) + 4000 && p1.n_system_allocs >= 2,
          "allocations during a capture come from the graph's pool");
    wf_tensor_free(t);
    wf_cuda_graph_pool_stats(g, &p2);
    check(p2.allocated + (1u << 18) <= p1.allocated, "a tensor freed in the capture returns its block to the pool");
    rc = wf_cuda_graph_capture_end(g);
    check(!rc && !wf_cuda_is_capturing(0), "an empty capture ends");
    wf_tensor *e = wf_empty_on((int64_t[]){ 1 << 16 }, 1, WF_F32, GPU);   /* eager: the device cache's block */
    wf_cuda_graph_pool_stats(g, &p3);
    check(e && p3.allocated == p2.allocated, "eager allocations after the capture do not use the pool");
    wf_tensor_free(e);
    wf_tensor_free(keep);
    wf_cuda_graph_pool_stats(g, &p3);
    check(p3.allocated + 4000 <= p2.allocated, "freeing a captured tensor after the capture returns it to the pool");
    check(!wf_cuda_graph_replay(g), "an empty graph replays");
    wf_cuda_graph_free(g);
    /* a tensor of a capture outlives its graph: the pool stays until it is freed */
    g = wf_cuda_graph_new();
    rc = wf_cuda_graph_capture_begin(g, GPU);
    wf_tensor *late = rc ? NULL : wf_zeros_on((int64_t[]){ 64 }, 1, WF_F32, GPU);
    rc = wf_cuda_graph_capture_end(g);
    if (!rc) rc = wf_cuda_graph_replay(g);
    wf_cuda_graph_free(g);
    float v[64] = { 1 };
    check(!rc && late && !wf_to_array(late, v, WF_F32) && v[0] == 0 && v[63] == 0,
          "a captured tensor outlives its graph (zeros filled by the replay)");
    wf_tensor_free(late);
    wf_clear_error();
}

/* begin a capture, run fn (which should be refused), end it: the codes */
static void test_errors(void) {
    wf_cuda_graph *g = wf_cuda_graph_new(), *h = wf_cuda_graph_new();
    check_err(wf_cuda_graph_capture_begin(NULL, GPU), WF_EINVAL, "NULL", "capture_begin(NULL)");
    check_err(wf_cuda_graph_capture_begin(g, WF_CPU), WF_ENOTSUP, "CUDA", "capture on the CPU");
    check_err(wf_cuda_graph_replay(g), WF_EINVAL, "empty", "replay of a graph never captured");
    check_err(wf_cuda_graph_capture_end(g), WF_EINVAL, "not being captured", "capture_end without begin");
    check_err(wf_cuda_graph_capture_begin(g, WF_CUDA(999)), WF_EDEVICE, NULL, "capture on cuda:999");

    /* nested */
    check(!wf_cuda_graph_capture_begin(g, GPU), "capture begins");
    check_err(wf_cuda_graph_capture_begin(h, GPU), WF_EINVAL, "nested", "a second capture inside the first");
    check_err(wf_cuda_graph_capture_begin(g, GPU), WF_EINVAL, NULL, "the same graph again");
    check_err(wf_cuda_graph_replay(g), WF_EINVAL, "still being captured", "replay inside its own capture");
    check(!wf_cuda_graph_capture_end(g), "the outer capture still ends cleanly");
    check_err(wf_cuda_graph_capture_begin(g, GPU), WF_EINVAL, "already", "capturing a graph twice");
    wf_cuda_graph_free(g);

    /* a host read inside a capture */
    wf_tensor *t = wf_zeros_on((int64_t[]){ 4 }, 1, WF_F32, GPU);
    wf_tensor *c = wf_zeros((int64_t[]){ 4 }, 1, WF_F32);
    struct { const char *name, *needle; int what; } cases[] = {
        { "wf_to_array inside a capture", "copy to the host", 0 },
        { "wf_cuda_synchronize inside a capture", "host synchronization", 1 },
        { "a random op inside a capture", "random op", 2 },
        { "wf_cuda_empty_cache inside a capture", "wf_cuda_empty_cache", 3 },
    };
    for (int i = 0; i < 4; i++) {
        g = wf_cuda_graph_new();
        int rc = wf_cuda_graph_capture_begin(g, GPU);
        if (!rc) {
            if (cases[i].what == 0) {   /* t has 4 elements: a copy of all of them (wf_item wants one) */
                float host[4];
                rc = wf_to_array(t, host, WF_F32) ? wf_error() : 0;
            }
            else if (cases[i].what == 1) rc = wf_cuda_synchronize(0);
            else if (cases[i].what == 2) {
                wf_tensor *r = wf_rand_like(t);
                rc = r ? 0 : wf_error();
                wf_tensor_free(r);
            }
            else { wf_cuda_empty_cache(); rc = WF_EINVAL; }
        }
        char name[120];
        snprintf(name, sizeof name, "%s is refused", cases[i].name);
        if (cases[i].what != 3) check_err(rc, WF_EINVAL, cases[i].needle, name);
        snprintf(name, sizeof name, "%s: capture_end fails naming it", cases[i].name);
        check_err(wf_cuda_graph_capture_end(g), WF_EINVAL, cases[i].needle, name);
        check_err(wf_cuda_graph_replay(g), WF_EINVAL, "failed", "replay of a failed capture");
        check(!wf_cuda_is_capturing(0), "the device is no longer capturing");
        wf_cuda_graph_free(g);
    }
    check(!wf_cuda_synchronize(0), "the device works after the failed captures");

    /* a copy from the host inside a capture is a constant: the replay copies the captured values */
    {
        float one[4] = { 1, 2, 3, 4 }, got[4] = { 0 };
        wf_tensor *src = wf_from_data(one, (int64_t[]){ 4 }, 1, WF_F32);
        g = wf_cuda_graph_new();
        int rc = wf_cuda_graph_capture_begin(g, GPU);
        if (!rc) rc = wf_copy_(t, src);
        int end = wf_cuda_graph_capture_end(g);
        check(!rc && !end, "a copy from the host is captured");
        wf_fill_(src, 9.0);                       /* later host values are not what the graph copies */
        rc = wf_copy_(t, src);                    /* eager: t = 9 */
        if (!rc) rc = wf_cuda_graph_replay(g);    /* t = the captured 1 2 3 4 */
        check(!rc && !wf_to_array(t, got, WF_F32) && got[0] == 1 && got[3] == 4,
              "a replay copies the values of the capture");
        wf_cuda_graph_free(g);
        wf_tensor_free(src);
        wf_clear_error();
    }

    /* an optimizer whose state would be made (and zeroed by every replay) inside the capture */
    wf_tensor *p = wf_zeros_on((int64_t[]){ 8 }, 1, WF_F32, GPU);
    wf_set_requires_grad(p, true);
    wf_optimizer *opt = wf_adamw_new(&p, 1, &(wf_adam_opts){ .lr = 1e-3, .betas = { 0.9, 0.999 } });
    wf_tensor *gr = wf_ones_like(p);
    wf_set_grad(p, gr);
    g = wf_cuda_graph_new();
    int rc = wf_cuda_graph_capture_begin(g, GPU);
    if (!rc) rc = wf_optimizer_step(opt);
    check_err(rc, WF_EINVAL, "eagerly once", "a first optimizer step inside a capture");
    check_err(wf_cuda_graph_capture_end(g), WF_EINVAL, "eagerly once", "its capture_end fails naming it");
    wf_cuda_graph_free(g);
    /* abandoning a capture: free leaves capture mode */
    g = wf_cuda_graph_new();
    check(!wf_cuda_graph_capture_begin(g, GPU), "capture begins");
    wf_cuda_graph_free(g);
    check(!wf_cuda_is_capturing(0) && !wf_cuda_synchronize(0), "freeing a graph mid-capture abandons it");
    wf_tensor_free(gr), wf_optimizer_free(opt), wf_tensor_free(p);
    wf_tensor_free(t), wf_tensor_free(c);
    wf_cuda_graph_free(h);
    wf_clear_error();
}

int main(void) {
    if (wf_cuda_device_count() < 1) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    test_errors();
    test_pool();
    test_training();
    printf("{\"checks\":%d,\"failed\":%d}\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
