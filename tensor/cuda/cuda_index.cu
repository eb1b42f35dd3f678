/* tensor/cuda/cuda_index.cu: gather / scatter_add / index_select / index_add on the GPU, the
 * CUDA twin of tensor/cpu/index.c (im2col / col2im: cuda_conv.cu; pooling: cuda_pool.cu).
 *
 * Index kernels check every index against its range: an out-of-range index is skipped
 * (gather and index_select write 0) and raises the device's index flag, which the next
 * synchronize or copy to the host reports as WF_EINDEX; a bad index never becomes an
 * illegal address (which would make the CUDA context unusable). */
#include "cuda_common.cuh"

#include <string.h>

#define THREADS 256
#define GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- gather / scatter family
 * Iterate tensor A (shape `shape`); index element at off1; tensor B is addressed with A's
 * coordinates except along dim, where it takes the index value. Strides in bytes. */
struct idx_geo {
    int ndim, dim;
    int64_t n, dimsize;
    int64_t shape[WF_CUDA_MAX_DIMS], sa[WF_CUDA_MAX_DIMS], si[WF_CUDA_MAX_DIMS], sb[WF_CUDA_MAX_DIMS];
    char *a; int adt;
    const char *idx; int idt;
    char *b; int bdt;
    int *flag;
};

__device__ __forceinline__ bool idx_offsets(const idx_geo &g, int64_t i, int64_t &oa, int64_t &ob) {
    int64_t oi = 0;
    oa = 0; ob = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
        int64_t s = g.shape[d], q = i / s, c = i - q * s;
        i = q;
        oa += c * g.sa[d];
        oi += c * g.si[d];
        if (d != g.dim) ob += c * g.sb[d];
    }
    int64_t k = wfc_ld_index(g.idx + oi, g.idt);
    if (k < 0 || k >= g.dimsize) {
        atomicExch(g.flag, 1);
        return false;
    }
    ob += k * g.sb[g.dim];
    return true;
}

/* A[i] = B[...] */
__global__ void gather_kernel(idx_geo g) {
    int es = wfc_dtype_size(g.adt);
    bool same = g.adt == g.bdt;
    GRID_LOOP(i, g.n) {
        int64_t oa, ob;
        char *pa = g.a + 0;
        bool ok = idx_offsets(g, i, oa, ob);
        pa += oa;
        if (!ok) { for (int k = 0; k < es; k++) pa[k] = 0; continue; }
        const char *pb = g.b + ob;
        if (same) {
            switch (es) {
            case 8: *(uint64_t *)pa = *(const uint64_t *)pb; break;
            case 4: *(uint32_t *)pa = *(const uint32_t *)pb; break;
            case 2: *(uint16_t *)pa = *(const uint16_t *)pb; break;
            default: *pa = *pb; break;
            }
        } else {
            wfc_st<double>(pa, g.adt, wfc_ld<double>(pb, g.bdt));
        }
    }
}

/* B[...] += A[i] (atomic) */
__global__ void scatter_add_kernel(idx_geo g) {
    GRID_LOOP(i, g.n) {
        int64_t oa, ob;
        if (!idx_offsets(g, i, oa, ob)) continue;
        wfc_atomic_add(g.b + ob, g.bdt, wfc_ld<double>(g.a + oa, g.adt));
    }
}

/* it: the iterated tensor (A); other: B; index strides follow A's coordinates, or only
 * `dim` when index_1d */
static idx_geo make_idx_geo(const wf_cuda_view *it, const wf_cuda_view *other, const wf_cuda_view *index, int dim,
                            bool index_1d, int dev) {
    idx_geo g;
    memset(&g, 0, sizeof g);
    /* the iteration shape: the index's for gather / scatter_add (PyTorch lets it be smaller
     * than src), the iterated tensor's for the 1-D index forms */
    const wf_cuda_view *sh = index_1d ? it : index;
    g.ndim = sh->ndim;
    g.dim = dim;
    g.n = wfc_numel(sh);
    g.dimsize = other->ndim ? other->shape[dim] : 1;
    int ea = wfc_dtype_size(it->dtype), eb = wfc_dtype_size(other->dtype), ei = wfc_dtype_size(index->dtype);
    for (int d = 0; d < sh->ndim; d++) {
        g.shape[d] = sh->shape[d];
        g.sa[d] = it->stride[d] * ea;
        g.sb[d] = other->stride[d] * eb;
        if (index_1d) g.si[d] = d == dim && index->ndim ? index->stride[0] * ei : 0;
        else g.si[d] = index->stride[d] * ei;
    }
    g.a = (char *)it->data; g.adt = it->dtype;
    g.b = (char *)other->data; g.bdt = other->dtype;
    g.idx = (const char *)index->data; g.idt = index->dtype;
    g.flag = wfc_index_flag(dev);
    return g;
}

/* B[...] += A[i], deterministic: one thread per line of A along dim (every coordinate but
 * dim's), adding the line's elements in order. Lines land on disjoint lines of B (B takes
 * A's coordinates off dim), so no two threads meet and no atomics are needed; the price is
 * parallelism (an embedding's backward has embedding_dim lines). */
__global__ void scatter_add_det_kernel(idx_geo g, int64_t lines) {
    GRID_LOOP(l, lines) {
        int64_t oa = 0, oi = 0, ob = 0, r = l;
        for (int d = g.ndim - 1; d >= 0; d--) {
            if (d == g.dim) continue;
            int64_t s = g.shape[d], q = r / s, c = r - q * s;
            r = q;
            oa += c * g.sa[d];
            oi += c * g.si[d];
            ob += c * g.sb[d];
        }
        for (int64_t j = 0; j < g.shape[g.dim]; j++) {
            int64_t k = wfc_ld_index(g.idx + oi + j * g.si[g.dim], g.idt);
            if (k < 0 || k >= g.dimsize) {
                atomicExch(g.flag, 1);
                continue;
            }
            char *pb = g.b + ob + k * g.sb[g.dim];
            wfc_st<double>(pb, g.bdt, wfc_ld<double>(pb, g.bdt) + wfc_ld<double>(g.a + oa + j * g.sa[g.dim], g.adt));
        }
    }
}

static int run_idx(bool gather, const idx_geo &g, int dev, cudaStream_t st, const char *name) {
    if (!g.n) return 0;
    if (gather) gather_kernel<<<wfc_blocks(g.n, THREADS, dev), THREADS, 0, st>>>(g);
    else if (wf_are_deterministic_algorithms_enabled()) {
        int64_t lines = g.n / g.shape[g.dim];   /* g.n > 0: no dim is 0 */
        scatter_add_det_kernel<<<wfc_blocks(lines, THREADS, dev), THREADS, 0, st>>>(g, lines);
    } else scatter_add_kernel<<<wfc_blocks(g.n, THREADS, dev), THREADS, 0, st>>>(g);
    return wfc_check(name, dev);
}

extern "C" int wf__cuda_gather(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index, int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "gather", &st);
    if (rc) return rc;
    return run_idx(true, make_idx_geo(y, x, index, dim, false, dev), dev, st, "gather kernel");
}
extern "C" int wf__cuda_scatter_add(const wf_cuda_view *y, int dim, const wf_cuda_view *index, const wf_cuda_view *src,
                                    int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "scatter_add", &st);
    if (rc) return rc;
    return run_idx(false, make_idx_geo(src, y, index, dim, false, dev), dev, st, "scatter_add kernel");
}
extern "C" int wf__cuda_index_select(const wf_cuda_view *y, const wf_cuda_view *x, int dim, const wf_cuda_view *index,
                                     int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "index_select", &st);
    if (rc) return rc;
    return run_idx(true, make_idx_geo(y, x, index, dim, true, dev), dev, st, "index_select kernel");
}
extern "C" int wf__cuda_index_add(const wf_cuda_view *gx, int dim, const wf_cuda_view *index, const wf_cuda_view *gy,
                                  int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "index_add", &st);
    if (rc) return rc;
    return run_idx(false, make_idx_geo(gy, gx, index, dim, true, dev), dev, st, "index_add kernel");
}
