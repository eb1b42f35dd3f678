/* tensor/cuda/cuda_optim.cu: multi-tensor kernels of the optimizer step on the GPU, the CUDA
 * twins of optim/update.c's batched Adam and optim/clip.c's one-pass norm (PyTorch's fused
 * AdamW and _foreach_norm / clip_grad_norm_).
 *
 * A step updates ~150 tensors for GPT-2; one kernel per tensor and per op (PyTorch's
 * for-loop path) spends its time in launch overhead. Here every tensor is cut into chunks of
 * CHUNK elements and a launch runs one block per chunk, over as many tensors as fit in the
 * kernel's argument block (4 KiB): the tensor pointers, sizes, scalars and the block -> (tensor,
 * chunk) table. Nothing is copied to the device first, so a list costs a few launches and
 * no host synchronization. */
#include "cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

#define CHUNK 65536
#define THREADS 512
#define ADAM_TENSORS 24
#define LIST_TENSORS 48
#define BLOCKS 320

/* ---------------------------------------------------------------- fused Adam/AdamW */

struct adam_scalars { float nstep, bc2s, eps, w1, b2, w2, wd, decay; };
struct adam_args {
    void *p[ADAM_TENSORS];
    const void *g[ADAM_TENSORS];
    void *m[ADAM_TENSORS], *v[ADAM_TENSORS];
    int64_t n[ADAM_TENSORS];
    adam_scalars s[ADAM_TENSORS];
    uint8_t dt[ADAM_TENSORS][4];   /* p, g, m, v */
    uint8_t blk_tensor[BLOCKS];
    int32_t blk_chunk[BLOCKS];
};
static_assert(sizeof(adam_args) <= 4000, "kernel arguments are limited to 4 KiB");

/* torch.lerp's formula (as update.c's LERP), so the two paths round alike */
__device__ __forceinline__ float lerpf(float a, float b, float w) {
    return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* all_f32: the common case (f32 parameters, gradients and state) without dtype switches */
template <bool all_f32>
__global__ void __launch_bounds__(THREADS) adam_kernel(adam_args a, const float *inv_scale, const float *found_inf) {
    if (found_inf && *found_inf != 0.0f) return;
    const float gs = inv_scale ? *inv_scale : 1.0f;
    const int t = a.blk_tensor[blockIdx.x];
    const int64_t lo = (int64_t)a.blk_chunk[blockIdx.x] * CHUNK;
    const int64_t hi = lo + CHUNK < a.n[t] ? lo + CHUNK : a.n[t];
    const adam_scalars s = a.s[t];
    char *p = (char *)a.p[t], *m = (char *)a.m[t], *v = (char *)a.v[t];
    const char *g = (const char *)a.g[t];
    const int pdt = a.dt[t][0], gdt = a.dt[t][1], mdt = a.dt[t][2], vdt = a.dt[t][3];
    for (int64_t i = lo + threadIdx.x; i < hi; i += THREADS) {
        float pi, gi, mi, vi;
        if (all_f32) {
            pi = ((float *)p)[i], gi = ((const float *)g)[i], mi = ((float *)m)[i], vi = ((float *)v)[i];
        } else {
            pi = wfc_ld<float>(p + i * wfc_dtype_size(pdt), pdt);
            gi = wfc_ld<float>(g + i * wfc_dtype_size(gdt), gdt);
            mi = wfc_ld<float>(m + i * wfc_dtype_size(mdt), mdt);
            vi = wfc_ld<float>(v + i * wfc_dtype_size(vdt), vdt);
        }
        pi = pi * s.decay;
        float d = gi * gs + s.wd * pi;
        mi = lerpf(mi, d, s.w1);
        vi = vi * s.b2 + s.w2 * (d * d);
        float denom = sqrtf(vi) / s.bc2s + s.eps;
        pi = pi + s.nstep * (mi / denom);
        if (all_f32) {
            ((float *)p)[i] = pi, ((float *)m)[i] = mi, ((float *)v)[i] = vi;
        } else {
            wfc_st<float>(p + i * wfc_dtype_size(pdt), pdt, pi);
            wfc_st<float>(m + i * wfc_dtype_size(mdt), mdt, mi);
            wfc_st<float>(v + i * wfc_dtype_size(vdt), vdt, vi);
        }
    }
}

/* A captured launch: its node in the graph, its arguments, and the parameter (index into the
 * list) each slot holds, so a replay can get new scalars (cudaGraphExecKernelNodeSetParams). */
struct adam_node {
    cudaGraphNode_t node;
    adam_args args;
    int param[ADAM_TENSORS];
    int nslots, nblocks;
    bool all_f32;
};
struct adam_record {
    adam_node *nodes;
    int n, cap;
    const float *inv_scale, *found_inf;
    int dev;
};

static int adam_launch(adam_args *a, int nblocks, bool all_f32, const float *inv_scale, const float *found_inf,
                       cudaStream_t st, int dev, adam_record *rec, const int *param, int nslots) {
    if (!nblocks) return 0;
    if (all_f32) adam_kernel<true><<<nblocks, THREADS, 0, st>>>(*a, inv_scale, found_inf);
    else adam_kernel<false><<<nblocks, THREADS, 0, st>>>(*a, inv_scale, found_inf);
    int rc = wfc_check("adam multi-tensor kernel", dev);
    if (rc || !rec) return rc;
    if (rec->n == rec->cap) {
        int nc = rec->cap ? 2 * rec->cap : 4;
        adam_node *nn = (adam_node *)realloc(rec->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return wfc_error(WF_ENOMEM, "adam multi-tensor: out of host memory to record a captured launch");
        rec->nodes = nn, rec->cap = nc;
    }
    adam_node *an = &rec->nodes[rec->n];
    void *node = NULL;
    if ((rc = wf__cuda_graph_last_node(dev, &node))) return rc;
    an->node = (cudaGraphNode_t)node;
    an->args = *a;
    memcpy(an->param, param, (size_t)nslots * sizeof *param);
    an->nslots = nslots, an->nblocks = nblocks, an->all_f32 = all_f32;
    rec->n++;
    return 0;
}

static int adam_multi(const wf_cuda_adam_param *ps, int n, const float *inv_scale, const float *found_inf, int dev,
                      adam_record *rec) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "adam multi-tensor", &st);
    if (rc) return rc;
    adam_args a;
    memset(&a, 0, sizeof a);
    int param[ADAM_TENSORS];
    int nt = 0, nb = 0;
    bool all_f32 = true;
    for (int j = 0; j < n && !rc; j++) {
        const wf_cuda_adam_param *q = &ps[j];
        int64_t chunks = (q->n + CHUNK - 1) / CHUNK;
        if (chunks > INT32_MAX) return wfc_error(WF_EINVAL, "adam multi-tensor: parameter %d has too many elements (%lld)",
                                                  j, (long long)q->n);
        int slot = -1;
        for (int64_t c = 0; c < chunks && !rc; c++) {
            if (slot < 0) {   /* q enters this launch's table */
                if (nt == ADAM_TENSORS) {
                    rc = adam_launch(&a, nb, all_f32, inv_scale, found_inf, st, dev, rec, param, nt);
                    nt = nb = 0, all_f32 = true;
                }
                slot = nt++;
                param[slot] = j;
                a.p[slot] = q->p, a.g[slot] = q->g, a.m[slot] = q->m, a.v[slot] = q->v, a.n[slot] = q->n;
                a.s[slot] = adam_scalars{ q->nstep, q->bc2s, q->eps, q->w1, q->b2, q->w2, q->wd, q->decay };
                a.dt[slot][0] = (uint8_t)q->pdt, a.dt[slot][1] = (uint8_t)q->gdt;
                a.dt[slot][2] = (uint8_t)q->mdt, a.dt[slot][3] = (uint8_t)q->vdt;
                all_f32 = all_f32 && q->pdt == WF_F32 && q->gdt == WF_F32 && q->mdt == WF_F32 && q->vdt == WF_F32;
            }
            a.blk_tensor[nb] = (uint8_t)slot, a.blk_chunk[nb] = (int32_t)c, nb++;
            if (nb == BLOCKS) {   /* table full: launch; q's remaining chunks start the next table */
                rc = adam_launch(&a, nb, all_f32, inv_scale, found_inf, st, dev, rec, param, nt);
                nt = nb = 0, all_f32 = true, slot = -1;
            }
        }
    }
    if (!rc) rc = adam_launch(&a, nb, all_f32, inv_scale, found_inf, st, dev, rec, param, nt);
    return rc;
}

extern "C" int wf__cuda_adam_multi(const wf_cuda_adam_param *ps, int n, const float *inv_scale,
                                   const float *found_inf, int dev) {
    return adam_multi(ps, n, inv_scale, found_inf, dev, NULL);
}

extern "C" void wf__cuda_adam_record_free(void *record) {
    adam_record *rec = (adam_record *)record;
    if (!rec) return;
    free(rec->nodes);
    free(rec);
}

extern "C" int wf__cuda_adam_multi_capture(const wf_cuda_adam_param *ps, int n, const float *inv_scale,
                                           const float *found_inf, int dev, void **record) {
    *record = NULL;
    adam_record *rec = (adam_record *)calloc(1, sizeof *rec);
    if (!rec) return wfc_error(WF_ENOMEM, "adam multi-tensor: out of host memory for a capture record");
    rec->inv_scale = inv_scale, rec->found_inf = found_inf, rec->dev = dev;
    int rc = adam_multi(ps, n, inv_scale, found_inf, dev, rec);
    if (rc) { wf__cuda_adam_record_free(rec); return rc; }
    *record = rec;
    return 0;
}

extern "C" int wf__cuda_adam_record_update(void *record, void *exec, const wf_cuda_adam_param *ps, int n) {
    adam_record *rec = (adam_record *)record;
    cudaError_t e = cudaSetDevice(rec->dev);
    for (int i = 0; i < rec->n && e == cudaSuccess; i++) {
        adam_node *an = &rec->nodes[i];
        for (int k = 0; k < an->nslots; k++) {
            int j = an->param[k];
            if (j < 0 || j >= n)
                return wfc_error(WF_EINVAL, "adam multi-tensor: a replay passed %d parameters, the capture %d or more",
                                 n, j + 1);
            const wf_cuda_adam_param *q = &ps[j];
            an->args.s[k] = adam_scalars{ q->nstep, q->bc2s, q->eps, q->w1, q->b2, q->w2, q->wd, q->decay };
        }
        /* the argument values are copied by the call: an->args may change for the next replay */
        void *kargs[3] = { &an->args, (void *)&rec->inv_scale, (void *)&rec->found_inf };
        cudaKernelNodeParams kp = {};
        kp.func = an->all_f32 ? (void *)adam_kernel<true> : (void *)adam_kernel<false>;
        kp.gridDim = dim3((unsigned)an->nblocks);
        kp.blockDim = dim3(THREADS);
        kp.sharedMemBytes = 0;
        kp.kernelParams = kargs;
        e = cudaGraphExecKernelNodeSetParams((cudaGraphExec_t)exec, an->node, &kp);
    }
    if (e != cudaSuccess) return wfc_report(e, "adam multi-tensor: cudaGraphExecKernelNodeSetParams", rec->dev);
    return 0;
}

/* ---------------------------------------------------------------- global norm, scaling */

struct list_args {
    void *x[LIST_TENSORS];
    int64_t n[LIST_TENSORS];
    uint8_t dt[LIST_TENSORS];
    uint8_t blk_tensor[BLOCKS];
    int32_t blk_chunk[BLOCKS];
};
static_assert(sizeof(list_args) <= 4000, "kernel arguments are limited to 4 KiB");

enum { NK_SQ, NK_ABS, NK_MAX, NK_POW };

/* partial[base + block] = the chunk's sum of |x|^p (max |x| for the infinity norm) */
__global__ void __launch_bounds__(THREADS) norm_partial_kernel(list_args a, float *partial, int64_t base, int kind, float p) {
    const int t = a.blk_tensor[blockIdx.x];
    const int64_t lo = (int64_t)a.blk_chunk[blockIdx.x] * CHUNK;
    const int64_t hi = lo + CHUNK < a.n[t] ? lo + CHUNK : a.n[t];
    const char *x = (const char *)a.x[t];
    const int dt = a.dt[t], es = wfc_dtype_size(dt);
    float acc = 0.0f;
    for (int64_t i = lo + threadIdx.x; i < hi; i += THREADS) {
        float v = dt == WF_F32 ? ((const float *)x)[i] : wfc_ld<float>(x + i * es, dt);
        float av = fabsf(v);
        switch (kind) {
        case NK_SQ: acc += v * v; break;
        case NK_ABS: acc += av; break;
        case NK_MAX: acc = (av > acc || av != av) ? av : acc; break;
        default: acc += powf(av, p); break;
        }
    }
    if (kind == NK_MAX) acc = wfc_block_reduce(acc, wfc_max_f(), 0.0f);
    else acc = wfc_block_reduce(acc, wfc_add_f(), 0.0f);
    if (threadIdx.x == 0) partial[base + blockIdx.x] = acc;
}

/* one block: combine the partials in a fixed order (double), then the norm and the clip
 * coefficient */
__global__ void __launch_bounds__(THREADS) norm_finish_kernel(const float *partial, int64_t np, int kind, double p,
                                                              float *norm, float *coef, double max_norm) {
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < np; i += THREADS) {
        double v = partial[i];
        if (kind == NK_MAX) acc = (v > acc || v != v) ? v : acc;
        else acc += v;
    }
    if (kind == NK_MAX) acc = wfc_block_reduce(acc, wfc_max_f(), 0.0);
    else acc = wfc_block_reduce(acc, wfc_add_f(), 0.0);
    if (threadIdx.x == 0) {
        double total = kind == NK_SQ ? sqrt(acc) : kind == NK_POW ? pow(acc, 1.0 / p) : acc;
        *norm = (float)total;
        if (coef) {
            double c = max_norm / ((double)(float)total + 1e-6);
            *coef = (float)(c < 1.0 || c != c ? c : 1.0);
        }
    }
}

__global__ void __launch_bounds__(THREADS) scale_kernel(list_args a, const float *coef) {
    const float c = *coef;
    if (c == 1.0f) return;
    const int t = a.blk_tensor[blockIdx.x];
    const int64_t lo = (int64_t)a.blk_chunk[blockIdx.x] * CHUNK;
    const int64_t hi = lo + CHUNK < a.n[t] ? lo + CHUNK : a.n[t];
    char *x = (char *)a.x[t];
    const int dt = a.dt[t], es = wfc_dtype_size(dt);
    for (int64_t i = lo + threadIdx.x; i < hi; i += THREADS) {
        if (dt == WF_F32) ((float *)x)[i] *= c;
        else if (dt == WF_F64) ((double *)x)[i] *= (double)c;
        else wfc_st<float>(x + i * es, dt, wfc_ld<float>(x + i * es, dt) * c);
    }
}

/* Walk xs chunk by chunk, calling launch(args, nblocks, first_block) each time the table
 * fills and once at the end. */
template <class F> static int list_walk(const wf_cuda_span *xs, int n, F launch) {
    list_args a;
    memset(&a, 0, sizeof a);
    int nt = 0, nb = 0, rc = 0;
    int64_t done = 0;
    for (int j = 0; j < n && !rc; j++) {
        int64_t chunks = (xs[j].n + CHUNK - 1) / CHUNK;
        if (chunks > INT32_MAX) return wfc_error(WF_EINVAL, "multi-tensor list: tensor %d has too many elements (%lld)",
                                                  j, (long long)xs[j].n);
        int slot = -1;
        for (int64_t c = 0; c < chunks && !rc; c++) {
            if (slot < 0) {
                if (nt == LIST_TENSORS) {
                    rc = launch(a, nb, done);
                    done += nb, nt = nb = 0;
                }
                slot = nt++;
                a.x[slot] = xs[j].data, a.n[slot] = xs[j].n, a.dt[slot] = (uint8_t)xs[j].dtype;
            }
            a.blk_tensor[nb] = (uint8_t)slot, a.blk_chunk[nb] = (int32_t)c, nb++;
            if (nb == BLOCKS) {
                rc = launch(a, nb, done);
                done += nb, nt = nb = 0, slot = -1;
            }
        }
    }
    if (!rc && nb) rc = launch(a, nb, done);
    return rc;
}

static int check_spans(const char *what, const wf_cuda_span *xs, int n) {
    for (int j = 0; j < n; j++)
        if (!wfc_is_float(xs[j].dtype) || xs[j].n < 0 || (xs[j].n && !xs[j].data))
            return wfc_error(WF_EDTYPE, "%s: tensor %d is not a floating tensor (dtype %d, %lld elements)", what, j,
                             xs[j].dtype, (long long)xs[j].n);
    return 0;
}

extern "C" int wf__cuda_multi_norm(const wf_cuda_span *xs, int n, double norm_type, float *norm, float *coef,
                                   double max_norm, int dev) {
    const char *what = "multi-tensor norm";
    cudaStream_t st;
    int rc = wfc_begin(dev, what, &st);
    if (rc || (rc = check_spans(what, xs, n))) return rc;
    int kind = isinf(norm_type) ? NK_MAX : norm_type == 2 ? NK_SQ : norm_type == 1 ? NK_ABS : NK_POW;
    int64_t np = 0;
    for (int j = 0; j < n; j++) np += (xs[j].n + CHUNK - 1) / CHUNK;
    float *partial = np ? (float *)wf__cuda_alloc(dev, (size_t)np * sizeof(float)) : NULL;
    if (np && !partial) return WF_ENOMEM;   /* recorded by the allocator */
    rc = list_walk(xs, n, [&](const list_args &a, int nb, int64_t base) {
        norm_partial_kernel<<<nb, THREADS, 0, st>>>(a, partial, base, kind, (float)norm_type);
        return wfc_check("multi-tensor norm kernel", dev);
    });
    if (!rc) {
        norm_finish_kernel<<<1, THREADS, 0, st>>>(partial, np, kind, norm_type, norm, coef, max_norm);
        rc = wfc_check("multi-tensor norm finish kernel", dev);
    }
    if (partial) wf__cuda_free(dev, partial, (size_t)np * sizeof(float));   /* stream-ordered: after the kernels */
    return rc;
}

extern "C" int wf__cuda_multi_scale(const wf_cuda_span *xs, int n, const float *coef, int dev) {
    const char *what = "multi-tensor scale";
    cudaStream_t st;
    int rc = wfc_begin(dev, what, &st);
    if (rc || (rc = check_spans(what, xs, n))) return rc;
    return list_walk(xs, n, [&](const list_args &a, int nb, int64_t) {
        scale_kernel<<<nb, THREADS, 0, st>>>(a, coef);
        return wfc_check("multi-tensor scale kernel", dev);
    });
}
