/* weft/cuda.h: CUDA device memory, synchronization and math settings.
 *
 * CUDA tensors are created with the tensor functions of weft/tensor.h on a device
 * WF_CUDA(i) (or "cuda:i"); wf_cuda_device_count() (weft/tensor.h) says how many exist.
 * Work on a device is queued, in order, on one stream per device; functions that read
 * device data on the host (wf_to_array, wf_item, moves to the cpu) wait for it.
 *
 * In a build without CUDA these functions exist too: the stats are zeros, synchronize
 * returns WF_ENOTSUP, the CUDA graph functions fail with WF_ENOTSUP, the others do nothing. */
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

/* ---------------------------------------------------------------- CUDA graphs
 * torch.cuda.CUDAGraph: capture the work a piece of code queues on a device once (e.g. one
 * whole training step: forward, backward, clipping, optimizer step, zero_grad), then replay
 * it with one launch per step. For static shapes: every replay works on the same addresses,
 * so the step's inputs go into "static" device tensors made before the capture (copy each
 * step's batch into them with wf_copy_ before wf_cuda_graph_replay), and its outputs (the
 * loss) are tensors made during the capture and kept alive by the caller.
 *
 *   wf_cuda_graph *g = wf_cuda_graph_new();
 *   (run the step eagerly a few times first: cuBLAS plans, optimizer state and the memory
 *    cache are set up there, never inside the capture)
 *   wf_cuda_graph_capture_begin(g, WF_CUDA(0));  step(static_x, static_y, &loss);
 *   wf_cuda_graph_capture_end(g);                (nothing has run yet)
 *   for each step: wf_copy_(static_x, x); wf_copy_(static_y, y); wf_cuda_graph_replay(g);
 *
 * Memory: allocations on the device during the capture come from a pool owned by the graph;
 * tensors freed later (during the capture or after) return their blocks to that pool, never
 * to the device's cache, so eager code cannot reuse addresses the graph writes. The pool's
 * blocks go back to the driver once the graph is freed and the last tensor made in the
 * capture is freed. Tensors made before the capture and used by it (the static inputs, the
 * parameters, the optimizer's state) must stay alive, and keep their storage, for as long as
 * the graph is replayed: the graph reads and writes their addresses. Likewise the optimizer
 * captured: load its state (wf_optimizer_load_state_dict, a checkpoint) before the capture,
 * and keep it (and its parameter groups) unchanged while the graph lives. The optimizers' fused CUDA step (Adam, AdamW) reads its learning rate
 * and step count from the optimizer before each replay, so schedulers work; the step count
 * advances once per replay (the capture counts as the first replay's step).
 *
 * Inside a capture, anything that waits for the device (wf_item, wf_to_array,
 * wf_cuda_synchronize, wf_cuda_empty_cache, clip_grad_norm_ that returns the norm as a
 * double, a gradient scaler's inf check) or would replay wrongly (a random op such as dropout
 * > 0: its seed would be baked in; an optimizer other than the fused Adam/AdamW step) fails
 * with WF_EINVAL naming it, and capture_end then fails with the same message (the graph is
 * discarded). A copy from a CPU tensor inside the capture is a constant (wf_arange's
 * positions): the graph keeps the values of the capture and every replay copies those, so
 * copy a step's inputs into the static tensors outside the capture, before each replay. The capture is on weft's stream of the device, in
 * thread-local mode: other threads are not affected; the thread that began it ends it. */
typedef struct wf_cuda_graph wf_cuda_graph;

/* A new, empty graph (owned by the caller: wf_cuda_graph_free). NULL + WF_ENOTSUP in a
 * build without CUDA, WF_ENOMEM. */
wf_cuda_graph *wf_cuda_graph_new(void);
/* Start capturing the work queued on `device` by this thread (waits for the work queued
 * before). 0; WF_ENOTSUP for a non-CUDA device; WF_EINVAL for a NULL or already captured
 * graph or a capture already open on this thread or device (captures do not nest);
 * WF_EDEVICE for a device that does not exist. */
int wf_cuda_graph_capture_begin(wf_cuda_graph *g, wf_device device);
/* End the capture and make the graph ready to replay (nothing captured has run). 0, or the
 * first failure inside the capture (the graph is then unusable), WF_EINVAL when g is not
 * being captured by this thread. */
int wf_cuda_graph_capture_end(wf_cuda_graph *g);
/* Queue the captured work once more on the device's stream (asynchronous, like the eager
 * kernels; read results with wf_item & co. afterwards). 0, WF_EINVAL when g was not
 * captured successfully, WF_EDEVICEFAIL when the launch fails. */
int wf_cuda_graph_replay(wf_cuda_graph *g);
/* Free the graph (an open capture is abandoned; replays in flight finish first). NULL is a
 * no-op. Its memory pool is freed once no tensor made in the capture remains. */
void wf_cuda_graph_free(wf_cuda_graph *g);
/* Counters of the graph's memory pool (bytes of live tensors in it, bytes it holds from
 * the driver, their peak, the number of cudaMalloc calls made for it). 0; WF_EINVAL for
 * NULL arguments; WF_ENOTSUP without CUDA. */
int wf_cuda_graph_pool_stats(const wf_cuda_graph *g, wf_memory_stats *out);
/* torch.cuda.is_current_stream_capturing: whether a capture is open on cuda:device */
bool wf_cuda_is_capturing(int device);

#ifdef __cplusplus
}
#endif

#endif
