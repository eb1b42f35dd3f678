/* tensor/cuda/cuda_device.cuh: the per-device state that cuda_device.cu creates and the
 * files beside it use (cuda_memory.cu: the allocator's free lists and staging buffers;
 * cuda_gemm.cu: the cuBLAS/cuBLASLt handles and plan cache). CUDA C++ only; kernels need only
 * cuda_common.cuh. */
#ifndef WEFT_CUDA_DEVICE_CUH
#define WEFT_CUDA_DEVICE_CUH
#include "cuda_common.cuh"

#include <cublas_v2.h>
#include <cublasLt.h>
#include <pthread.h>

#define MAX_DEVICES 64
#define N_CLASSES 256
#define STAGE_BYTES ((size_t)4 << 20) /* two pinned buffers of this size per device */

typedef struct free_list { void **p; int n, cap; } free_list;

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
} dev_state;

/* indexed by CUDA device; an entry is set up by wfc_begin on first use (ready) */
extern dev_state wfc_dev[MAX_DEVICES];

/* 0, or WF_EDEVICE (recorded, naming `what`) when dev is not a CUDA device of this machine */
int wfc_check_index(int dev, const char *what);

#endif
