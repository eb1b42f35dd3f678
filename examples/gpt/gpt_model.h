/* examples/gpt/gpt_model.h: nanoGPT's GPT-2 built from weft's modules.
 *
 * Token + position embeddings, dropout, n_layer pre-LN blocks (x + attn(ln_1(x)), then
 * x + mlp(ln_2(x)) with a 4x GELU MLP), a final LayerNorm, and lm_head tied to the token
 * embedding (the logits are x @ wte.weight^T, so the two share one parameter and one
 * gradient). The MLP runs c_fc and its GELU as one op (wf_linear_gelu: CUDA's bias + GELU
 * epilogue, or for the tanh form the GELU inside the GEMM), or the whole MLP as one
 * (wf_fused_mlp) with recompute_gelu; the GELU's form is the config's. Parameter names follow nanoGPT's ("transformer.h.0.attn.c_attn.weight"), so a
 * state dict moves between the two by name. */
#ifndef WEFT_EXAMPLE_GPT_MODEL_H
#define WEFT_EXAMPLE_GPT_MODEL_H

#include "weft/weft.h"
#include "weft/nn.h"
#include "weft/optim.h"
#include "weft/fabric.h"

typedef struct gpt_config {
    int64_t vocab_size, block_size, n_layer, n_head, n_embd;
    double dropout;
    bool bias;   /* biases in Linear and LayerNorm (GPT-2's checkpoints have them; nanoGPT trains without) */
    /* the MLP as one wf_fused_mlp: its GELU's output is not kept for backward but made again
     * there (GPT-2 124M at 16 x 1024 tokens: 100 MB less per layer for one elementwise pass) */
    bool recompute_gelu;
    /* the MLP's GELU: WF_GELU_NONE the exact erf form (nanoGPT's nn.GELU()), WF_GELU_TANH
     * GPT-2's own approximation (llm.c, the bench's peer); on CUDA in bf16 / f16 the tanh form
     * runs inside the c_fc GEMM (cuBLASLt's GELU epilogues) */
    wf_gelu_approx gelu;
} gpt_config;

/* A new model (owned by the caller, wf_module_free) with GPT-2's initialization: N(0, 0.02)
 * for Linear and Embedding weights, N(0, 0.02/sqrt(2*n_layer)) for the residual
 * projections (c_proj), zero biases. Its forward takes token indices [B, T] (i64, T <=
 * block_size) and returns logits [B, T, vocab_size]. NULL + error on bad sizes. */
wf_module *gpt_new(const gpt_config *cfg);
const gpt_config *gpt_get_config(const wf_module *m);

/* Number of parameters without the position embedding (nanoGPT's get_num_params). */
int64_t gpt_num_params(wf_module *m);

/* Mean cross-entropy of logits [B, T, V] against targets [B, T] (a result in the scope). */
wf_tensor *gpt_loss(wf_tensor *logits, wf_tensor *targets);

/* The same loss without the logits: hidden states [B, T, C] (the model's forward output
 * while gpt_set_return_hidden is on) against targets [B, T], through the tied wte weight
 * with wf_linear_cross_entropy, chunk_rows rows of logits at a time (0: automatic). */
wf_tensor *gpt_loss_from_hidden(wf_module *m, wf_tensor *hidden, wf_tensor *targets, int64_t chunk_rows);
/* While on, the model's forward stops after ln_f and returns the hidden states [B, T, C]
 * (through wf_module_forward, so Fabric's hooks still run). Off at creation. */
void gpt_set_return_hidden(wf_module *m, bool on);

/* One batch's mean loss, as the trainer and bench/bench_gpt2 take it: x [B, T] and y [B, T] on
 * the model's device; fused: the hidden states, then gpt_loss_from_hidden (chunk_rows) under
 * fab's autocast; else the logits, then gpt_loss. The forward and the loss each run in a scope
 * of their own, keeping only their result, so the temporaries no backward node saved (a layer
 * norm's output behind its cast, the branch outputs once added to the residual stream, the
 * loss's chunks) go at once rather than with the caller's scope: about 150 MB a layer at GPT-2
 * 124M, batch 16 x 1024 (bench/NOTES.md). The memory census's labels "forward" and "loss" are
 * set meanwhile, and the caller's label given back. A result in the caller's scope, or NULL
 * on error. */
wf_tensor *gpt_batch_loss(wf_fabric *fab, wf_module *m, wf_tensor *x, wf_tensor *y, bool fused, int64_t chunk_rows);

/* nanoGPT's configure_optimizers: AdamW over two groups, the 2-D weights (embeddings and
 * Linear weights) with weight_decay, the rest (biases, LayerNorm) without. */
wf_optimizer *gpt_configure_optimizer(wf_module *m, double weight_decay, double lr, double beta1, double beta2);

/* Sampling: append n tokens to ctx (n_ctx tokens in, ids written at ctx[n_ctx..n_ctx+n-1],
 * capacity n_ctx + n), each drawn from softmax(logits / temperature) of the last position,
 * restricted to the top_k most likely tokens when top_k > 0. The model's last block_size
 * tokens are its context. Draws from weft's RNG; runs in eval mode without gradients on the
 * model's device. Returns 0 or a code. */
int gpt_generate(wf_module *m, int64_t *ctx, int64_t n_ctx, int64_t n, double temperature, int64_t top_k);

#endif
