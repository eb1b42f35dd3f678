/* examples/gpt/gpt_sample.c: text generation from the model, nanoGPT's generate(): the
 * logits of the last position, scaled by 1/temperature, cut to the top k, softmax, one draw
 * from weft's RNG (so a seeded run samples the same text). No KV cache: each new token runs
 * the whole (cropped) context, which is what nanoGPT does too. */
#include "gpt_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int gpt_generate(wf_module *m, int64_t *ctx, int64_t n_ctx, int64_t n, double temperature, int64_t top_k) {
    const gpt_config *c = gpt_get_config(m);
    if (!c || !ctx || n_ctx < 1 || n < 0 || !(temperature > 0))
        return wf_set_error(WF_EINVAL, "gpt_generate: need a GPT, a context of >= 1 token and temperature > 0 (got %g)",
                            temperature);
    int64_t V = c->vocab_size;
    double *p = malloc((size_t)V * sizeof *p), *sorted = malloc((size_t)V * sizeof *sorted);
    if (!p || !sorted) {
        free(p);
        free(sorted);
        return wf_set_error(WF_ENOMEM, "gpt_generate: out of memory");
    }
    wf_device dev = wf_tensor_device(wf_module_get_parameter(m, "transformer.wte.weight"));
    bool was_training = wf_module_is_training(m);
    wf_module_eval(m);
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        int64_t len = n_ctx + i, T = len < c->block_size ? len : c->block_size;
        WF_SCOPE WF_NO_GRAD {
            wf_tensor *idx = wf_to_device(wf_from_data(ctx + len - T, WF_SHAPE(1, T), WF_I64), dev);
            wf_tensor *logits = wf_module_forward(m, idx);
            wf_tensor *last = logits ? wf_select(wf_select(logits, 0, 0), 0, T - 1) : NULL;
            double u = 0;
            if (!last || wf_to_array(last, p, WF_F64) || wf_to_array(wf_rand(WF_SHAPE(1), WF_F64), &u, WF_F64)) rc = wf_error() ? wf_error() : WF_EINVAL;
            else {
                double cut = -INFINITY, mx = -INFINITY, sum = 0;
                if (top_k > 0 && top_k < V) {   /* keep the top_k logits: the k-th largest is the cut */
                    memcpy(sorted, p, (size_t)V * sizeof *p);
                    qsort(sorted, (size_t)V, sizeof *sorted, cmp_desc);
                    cut = sorted[top_k - 1];
                }
                for (int64_t v = 0; v < V; v++) if (p[v] >= cut && p[v] / temperature > mx) mx = p[v] / temperature;
                for (int64_t v = 0; v < V; v++) sum += p[v] = p[v] >= cut ? exp(p[v] / temperature - mx) : 0;
                int64_t pick = 0;
                double acc = 0, target = u * sum;
                for (int64_t v = 0; v < V; v++) {
                    if (p[v] == 0) continue;
                    pick = v;
                    if ((acc += p[v]) > target) break;
                }
                ctx[len] = pick;
            }
        }
    }
    wf_module_train(m, was_training);
    free(p);
    free(sorted);
    return rc;
}
