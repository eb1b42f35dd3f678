/* tensor/cuda/cuda_device.cu: devices and streams: the device count, per-device set-up on
 * first use (stream, cuBLAS loaded and its handle, index flag), making a device current, synchronization with
 * the index check, and the error reporting every .cu file uses. The state's layout is in
 * cuda_device.cuh; memory: cuda_memory.cu; GEMM: cuda_gemm.cu.
 *
 * One non-blocking stream per device carries all of weft's work on it, which is what lets the
 * caching allocator (cuda_memory.cu) be stream-ordered without events. */
#include "cuda_device.cuh"

#include <pthread.h>
#include <stdarg.h>

#define BLAS_WS_BYTES ((size_t)32 << 20)   /* what cuBLAS recommends on Hopper */

dev_state wfc_dev[MAX_DEVICES];
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_count_once = PTHREAD_ONCE_INIT;
static int g_count;

/* ---------------------------------------------------------------- errors */

int wfc_error(int code, const char *fmt, ...) {
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    wf__cuda_set_error(code, buf);
    return code;
}

static bool sticky(cudaError_t e) {
    switch (e) {
    case cudaErrorIllegalAddress: case cudaErrorLaunchFailure: case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction: case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace: case cudaErrorInvalidPc: case cudaErrorAssert:
    case cudaErrorLaunchTimeout: case cudaErrorECCUncorrectable: case cudaErrorUnknown:
        return true;
    default: return false;
    }
}

int wfc_report(cudaError_t e, const char *what, int dev) {
    int rc = wfc_error(WF_EDEVICEFAIL, "cuda:%d: %s failed: %s (%s)%s", dev, what, cudaGetErrorString(e),
                     cudaGetErrorName(e),
                     sticky(e) ? "; this error is sticky: the CUDA context of the process is unusable "
                                 "(an earlier asynchronous kernel may be the cause; run with "
                                 "CUDA_LAUNCH_BLOCKING=1 to find it)" : "");
    /* inside a capture, the first failure is what capture_end reports */
    if (dev >= 0 && dev < MAX_DEVICES && wfc_dev[dev].capture) wfc_capture_note(dev, rc, wf_error_message());
    return rc;
}

/* ---------------------------------------------------------------- devices */

static void count_once(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    cudaGetLastError(); /* no driver / no GPU is not an error for the user */
    g_count = n > MAX_DEVICES ? MAX_DEVICES : n;
}

extern "C" int wf__cuda_count(void) {
    pthread_once(&g_count_once, count_once);
    return g_count;
}

static int init_dev(int dev, const char *what) {
    dev_state *s = &wfc_dev[dev];
    pthread_mutex_lock(&g_init_lock);
    if (s->ready) { pthread_mutex_unlock(&g_init_lock); return 0; }
    cudaError_t e;
    const char *step = "cudaSetDevice";
    if ((e = cudaSetDevice(dev)) != cudaSuccess) goto fail;
    step = "cudaStreamCreateWithFlags";
    if ((e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) != cudaSuccess) goto fail;
    step = "cudaDeviceGetAttribute";
    if ((e = cudaDeviceGetAttribute(&s->num_sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) goto fail;
    step = "cudaMalloc (index flag)";
    if ((e = cudaMalloc((void **)&s->index_flag, sizeof(int))) != cudaSuccess) goto fail;
    step = "cudaMemset (index flag)";
    if ((e = cudaMemset(s->index_flag, 0, sizeof(int))) != cudaSuccess) goto fail;
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) goto fail;
    {
        int lrc = wf__cuda_blas_load();   /* cuBLAS is loaded here, not at process start */
        if (lrc) {
            char why[600];
            snprintf(why, sizeof why, "%s", wf_error_message());
            pthread_mutex_unlock(&g_init_lock);
            return wfc_error(lrc, "cuda:%d: %s: %s", dev, what, why);
        }
        cublasStatus_t bs = wfc_blas.cublasCreate(&s->blas);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = wfc_blas.cublasSetStream(s->blas, s->stream);
        /* a workspace of our own, set once: cuBLAS then allocates nothing per call, which a
         * CUDA graph capture needs (and eager and captured GEMMs pick the same kernels) */
        if (bs == CUBLAS_STATUS_SUCCESS) {
            cudaError_t we = cudaMalloc(&s->blas_ws, BLAS_WS_BYTES);
            if (we == cudaSuccess) bs = wfc_blas.cublasSetWorkspace(s->blas, s->blas_ws, BLAS_WS_BYTES);
            else { cudaGetLastError(); s->blas_ws = NULL; }   /* cuBLAS's own pool: eager still works */
        }
        if (bs != CUBLAS_STATUS_SUCCESS) {
            pthread_mutex_unlock(&g_init_lock);
            return wfc_error(WF_EDEVICEFAIL, "cuda:%d: %s: cuBLAS initialisation failed: %s", dev, what,
                             wfc_blas.cublasGetStatusString(bs));
        }
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->stage_lock, NULL);
    pthread_mutex_init(&s->lt_lock, NULL);
    s->ready = true;
    pthread_mutex_unlock(&g_init_lock);
    return 0;
fail:
    pthread_mutex_unlock(&g_init_lock);
    cudaGetLastError();
    return wfc_error(WF_EDEVICEFAIL, "cuda:%d: %s: device initialisation failed in %s: %s", dev, what, step,
                     cudaGetErrorString(e));
}

int wfc_check_index(int dev, const char *what) {
    if (dev < 0 || dev >= wf__cuda_count())
        return wfc_error(WF_EDEVICE, "%s: cuda:%d is not available (%d CUDA device(s) found)", what, dev,
                         wf__cuda_count());
    return 0;
}

int wfc_begin(int dev, const char *what, cudaStream_t *stream) {
    int rc = wfc_check_index(dev, what);
    if (rc) return rc;
    if (!wfc_dev[dev].ready && (rc = init_dev(dev, what))) return rc;
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess) return wfc_report(e, "cudaSetDevice", dev);
    if (stream) *stream = wfc_dev[dev].stream;
    return 0;
}

int wfc_num_sms(int dev) { return wfc_dev[dev].num_sms > 0 ? wfc_dev[dev].num_sms : 132; }
int *wfc_index_flag(int dev) { return wfc_dev[dev].index_flag; }

extern "C" void *wf__cuda_stream(int dev) {
    cudaStream_t st = NULL;
    if (wfc_begin(dev, "stream", &st)) return NULL;
    return (void *)st;
}

extern "C" int wf__cuda_set_device(int dev) { return wfc_begin(dev, "set device", NULL); }

/* ---------------------------------------------------------------- synchronization */

extern "C" int wf__cuda_sync(int dev) {
    cudaStream_t st;
    int rc = wfc_begin(dev, "synchronize", &st);
    if (!rc) rc = wfc_refuse_in_capture(dev, "a host synchronization (wf_cuda_synchronize, or a read of a device "
                                             "value such as wf_item)");
    if (rc) return rc;
    cudaError_t e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return wfc_report(e, "a queued kernel (reported at synchronize)", dev);
    int flag = 0;
    e = cudaMemcpy(&flag, wfc_dev[dev].index_flag, sizeof flag, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return wfc_report(e, "synchronize (index check)", dev);
    if (flag) {
        int zero = 0;
        cudaMemcpy(wfc_dev[dev].index_flag, &zero, sizeof zero, cudaMemcpyHostToDevice);
        return wfc_error(WF_EINDEX, "cuda:%d: an index kernel (gather, scatter_add, index_select, "
                         "index_add, cross_entropy) met an index out of range; the affected elements "
                         "were skipped", dev);
    }
    return 0;
}
