/* fabric/accelerator.c: the accelerators a Fabric can run on (Fabric's CPUAccelerator and
 * CUDAAccelerator), as small vtables the connector picks from. */
#include "fabric/fabric_impl.h"

static bool cpu_available(void) { return true; }
static int cpu_auto_count(void) { return 1; }
static int cpu_max(void) { return 1; }

static bool cuda_available(void) { return wf_cuda_device_count() > 0; }
static int cuda_count(void) { return wf_cuda_device_count(); }

const wf_accelerator_vt wf__accel_cpu = {
    .name = "cpu", .device_type = WF_DEV_CPU, .is_available = cpu_available,
    .auto_device_count = cpu_auto_count, .max_devices = cpu_max, .takes_process_count = true,
};
const wf_accelerator_vt wf__accel_cuda = {
    .name = "cuda", .device_type = WF_DEV_CUDA, .is_available = cuda_available,
    .auto_device_count = cuda_count, .max_devices = cuda_count, .takes_process_count = false,
};
