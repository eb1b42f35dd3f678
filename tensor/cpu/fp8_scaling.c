/* tensor/cpu/fp8_scaling.c: Transformer Engine's delayed scaling (DelayedScaling, the default
 * recipe: amax_history_len 1024, amax_compute_algo "max", margin 0) on the host, the reference
 * of the update kernel in tensor/cuda/cuda_fp8.cu. A step's tensor is cast with the scale the
 * earlier steps' amaxes gave ("delayed"): the cast needs no pass over the tensor before it. */
#include "fp8.h"

#include <math.h>

void wf__fp8_scaling_update(float *history, int len, int *pos, float amax, float fp8_max, int margin, float *scale,
                            float *scale_inv) {
    history[*pos] = amax;
    *pos = (*pos + 1) % len;
    float m = 0;
    for (int i = 0; i < len; i++) {
        if (isnan(history[i])) { m = NAN; break; }
        if (history[i] > m) m = history[i];
    }
    if (!(m > 0) || !isfinite(m)) return;           /* nothing seen yet, or an overflow: keep the scale */
    float s = ldexpf(fp8_max / m, -margin);
    if (!isfinite(s) || !(s > 0)) return;
    *scale = s;
    *scale_inv = 1.0f / s;
}
