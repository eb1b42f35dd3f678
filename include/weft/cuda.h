/* weft/cuda.h: CUDA device memory, synchronization and math settings.
 *
 * CUDA tensors are created with the tensor functions of weft/tensor.h on a device
 * WF_CUDA(i) (or "cuda:i"); wf_cuda_device_count() (weft/tensor.h) says how many exist.
 * Work on a device is queued, in order, on one stream per device; functions that read
 * device data on the host (wf_to_array, wf_item, moves to the cpu) wait for it.
 *
 * In a build without CUDA these functions exist too: the stats are zeros, synchronize
 * returns WF_ENOTSUP, the others do nothing. */
#ifndef WEFT_CUDA_H
#define WEFT_CUDA_H

#include "weft/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of the caching allocator of cuda:device (bytes handed to live tensors, bytes held
 * from the driver, the peak of the first, and the number of cudaMalloc calls). Steady-state
 * training makes no cudaMalloc calls. Returns 0, or WF_EDEVICE for a device that does not
 * exist (out is zeroed). */
int wf_cuda_memory_stats(int device, wf_memory_stats *out);

/* Return the cached, unused device blocks of every device to the driver (waits for the
 * devices' queued work). Live tensors are not touched. */
void wf_cuda_empty_cache(void);

/* Wait until the work queued on cuda:device is done. Returns 0; WF_EDEVICEFAIL when a
 * queued kernel failed (the message names the error; an illegal address leaves the CUDA
 * context unusable); WF_EINDEX when an index kernel (gather, scatter_add, index_select,
 * index_add, cross-entropy targets) met an index out of range since the last check;
 * WF_EDEVICE for a device that does not exist. */
int wf_cuda_synchronize(int device);

/* Allow TF32 tensor cores for float32 matrix products (faster, ~10-bit mantissa inputs).
 * Off by default, as in PyTorch. Applies to GEMMs launched afterwards, on every device. */
void wf_cuda_set_tf32(bool enabled);
bool wf_cuda_get_tf32(void);

#ifdef __cplusplus
}
#endif

#endif
