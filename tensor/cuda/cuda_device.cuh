/* tensor/cuda/cuda_device.cuh: the per-device state that cuda_device.cu creates and the
 * files beside it use (cuda_memory.cu: the allocator's free lists and staging buffers;
 * cuda_gemm.cu: the cuBLAS/cuBLASLt handles and plan cache). CUDA C++ only; kernels need only
 * cuda_common.cuh. */
#ifndef WEFT_CUDA_DEVICE_CUH
#define WEFT_CUDA_DEVICE_CUH
#include "cuda_common.cuh"

#include "cuda_blas_api.cuh"   /* cuBLAS through wfc_blas, loaded on first use */
#include <pthread.h>

#define MAX_DEVICES 64
#define N_CLASSES 256
#define STAGE_BYTES ((size_t)4 << 20) /* two pinned buffers of this size per device */

typedef struct free_list { void **p; int n, cap; } free_list;

/* A CUDA graph's private memory pool (cuda_memory.cu): while a graph is captured on a device,
 * every allocation there comes from it, so the addresses baked into the graph are never
 * handed to eager code between replays. Blocks freed later (during the capture or after it)
 * go back to the pool, never to the device cache. Owned by its graph; it outlives the graph
 * until its last block is freed (a tensor made during the capture may outlive the graph). */
typedef struct wfc_pool wfc_pool;

typedef struct dev_state {
    bool ready;
    cudaStream_t stream;
    cublasHandle_t blas;
    int num_sms;
    int *index_flag;         /* device int */
    pthread_mutex_t lock;    /* allocator */
    free_list cache[N_CLASSES];
    wf_memory_stats stats;
    pthread_mutex_t stage_lock;
    void *stage[2];          /* pinned */
    cudaEvent_t stage_ev[2];
    /* cuBLASLt: handle, workspace (from the caching allocator, kept), plan cache */
    pthread_mutex_t lt_lock;
    cublasLtHandle_t lt;
    void *lt_ws;
    bool lt_failed;
    struct lt_plan *lt_plans;
    int lt_next;
    /* CUDA graphs (cuda_graph.cu): the graph being captured on this device and its pool
     * (NULL when none), and every pool that still holds blocks (a free looks there first) */
    struct wf_cuda_graph *capture;
    wfc_pool *capture_pool;
    wfc_pool *pools;
    void *blas_ws;           /* cuBLAS workspace, set once so no GEMM allocates (cudaMalloc) in a capture */
} dev_state;

/* indexed by CUDA device; an entry is set up by wfc_begin on first use (ready) */
extern dev_state wfc_dev[MAX_DEVICES];

/* 0, or WF_EDEVICE (recorded, naming `what`) when dev is not a CUDA device of this machine */
int wfc_check_index(int dev, const char *what);

/* CUDA graphs: new pool / hand back a pool (freed when its last block is; lock not held) */
wfc_pool *wfc_pool_new(int dev);
void wfc_pool_release(wfc_pool *p);
void wfc_pool_stats(const wfc_pool *p, wf_memory_stats *out);
#define wfc_refuse_in_capture wf__cuda_refuse_in_capture   /* cuda_api.h */
/* the graph being captured on dev takes pinned (cudaMallocHost) memory, freed with it; 0 or a code */
int wfc_graph_own_host(int dev, void *pinned);
/* remember the first failure of a capture in progress on dev (wfc_report calls it) */
void wfc_capture_note(int dev, int code, const char *msg);

#endif
