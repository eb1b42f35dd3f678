/* tensor/cuda/cuda_blas_api.cu: cuBLAS and cuBLASLt loaded with dlopen on the first device
 * set-up (cuda_blas_api.cuh says why). The sonames come from the headers weft was compiled
 * against (CUBLAS_VER_MAJOR), so the library loaded is the ABI the calls were built for. */
#include "cuda_blas_api.cuh"
#include "cuda_device.cuh"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define WFC_STR2(x) #x
#define WFC_STR(x) WFC_STR2(x)
#define WFC_SONAME(lib) "lib" lib ".so." WFC_STR(CUBLAS_VER_MAJOR)

struct wfc_blas_api wfc_blas;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_rc;
static char g_msg[512];

/* The soname as the dynamic loader finds it (weft's RUNPATH, LD_LIBRARY_PATH, ld.so.conf),
 * then beside libcudart, which the toolkit installs in the same folder. */
static void *open_lib(const char *soname, char *why, size_t cap) {
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    snprintf(why, cap, "%s", dlerror());
    Dl_info info;
    if (dladdr((void *)&cudaGetDeviceCount, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        char path[1024];
        if (slash && (size_t)(slash - info.dli_fname) + strlen(soname) + 2 <= sizeof path) {
            snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, soname);
            if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL))) return h;
        }
    }
    return NULL;
}

static void load_once(void) {
    char why[384] = "";
    void *lt = open_lib(WFC_SONAME("cublasLt"), why, sizeof why);
    void *blas = lt ? open_lib(WFC_SONAME("cublas"), why, sizeof why) : NULL;
    if (!lt || !blas) {
        snprintf(g_msg, sizeof g_msg, "cannot load %s, which weft's CUDA GEMMs need: %s",
                 lt ? WFC_SONAME("cublas") : WFC_SONAME("cublasLt"), why);
        g_rc = WF_EDEVICEFAIL;
        return;
    }
    /* each symbol from the library that defines it: cublas* from libcublas, cublasLt* from
     * libcublasLt (libcublas depends on libcublasLt, so a lookup there finds both anyway) */
#define WFC_BLAS_RESOLVE(f)                                                                        \
    {                                                                                              \
        const char *name = WFC_STR(f);                                                             \
        void *sym = dlsym(strncmp(name, "cublasLt", 8) ? blas : lt, name);                         \
        if (!sym) {                                                                                \
            snprintf(g_msg, sizeof g_msg, "%s has no symbol %s (weft was compiled against cuBLAS "  \
                     "%d.%d)", strncmp(name, "cublasLt", 8) ? WFC_SONAME("cublas") : WFC_SONAME("cublasLt"), \
                     name, CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR);                                    \
            g_rc = WF_EDEVICEFAIL;                                                                 \
            return;                                                                                \
        }                                                                                          \
        memcpy(&wfc_blas.f, &sym, sizeof sym);                                                     \
    }
#define WFC_BLAS_RESOLVE_T(f, type) WFC_BLAS_RESOLVE(f)
    WFC_BLAS_FUNCS(WFC_BLAS_RESOLVE, WFC_BLAS_RESOLVE_T)
#undef WFC_BLAS_RESOLVE
#undef WFC_BLAS_RESOLVE_T
    /* the handles stay open for the process's life: cuBLAS handles and plans point into them */
}

extern "C" int wf__cuda_blas_load(void) {
    pthread_once(&g_once, load_once);
    return g_rc ? wfc_error(g_rc, "%s", g_msg) : 0;
}
