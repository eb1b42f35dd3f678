/* examples/gpt/gpt_model.c: the GPT-2 model (see gpt_model.h). */
#include "gpt_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- MLP and Block */

typedef struct mlp { wf_module base; bool recompute_gelu; wf_gelu_approx gelu; } mlp;

static wf_tensor *mlp_forward(wf_module *m, wf_tensor *x) {
    const char *order[4] = { "c_fc", "gelu", "c_proj", "dropout" };
    wf_module *fc = wf_module_get_child(m, "c_fc"), *proj = wf_module_get_child(m, "c_proj");
    int i = 0;
    /* under fp8 ("transformer-engine") the Linear modules run their GEMMs in fp8 with their own
     * scaling state, which the functional fused paths below do not have: the modules one by one */
    bool fp8 = wf_fp8_autocast_enabled();
    if (!fp8 && ((mlp *)m)->recompute_gelu && !strcmp(wf_module_type(fc), "Linear") && !strcmp(wf_module_type(proj), "Linear")) {
        /* c_fc, GELU and c_proj in one op that keeps the GELU's input only */
        x = wf_fused_mlp(x, wf_module_get_parameter(fc, "weight"), wf_module_get_parameter(fc, "bias"),
                         wf_module_get_parameter(proj, "weight"), wf_module_get_parameter(proj, "bias"), ((mlp *)m)->gelu);
        i = 3;
    } else if (!fp8 && !strcmp(wf_module_type(fc), "Linear")) {
        /* c_fc + GELU in one op: on CUDA the GEMM without bias, then one bias + GELU kernel
         * (the same modules and parameter names, so checkpoints stay as they were) */
        x = wf_linear_gelu(x, wf_module_get_parameter(fc, "weight"), wf_module_get_parameter(fc, "bias"), ((mlp *)m)->gelu);
        i = 2;
    }
    for (; i < 4 && x; i++) x = wf_module_forward(wf_module_get_child(m, order[i]), x);
    return x;
}
static const wf_module_vtable mlp_vt = { .forward = mlp_forward };

static wf_module *mlp_new(const gpt_config *c) {
    wf_module *m = wf_module_create(sizeof(mlp), "MLP", &mlp_vt);
    if (!m) return NULL;
    ((mlp *)m)->recompute_gelu = c->recompute_gelu;
    ((mlp *)m)->gelu = c->gelu;
    /* nanoGPT uses nn.GELU() (the exact erf form), GPT-2 and llm.c the tanh form: the config's */
    if (wf_module_add_child(m, "c_fc", wf_linear_new(c->n_embd, 4 * c->n_embd, c->bias)) ||
        wf_module_add_child(m, "gelu", wf_gelu_new(c->gelu)) ||
        wf_module_add_child(m, "c_proj", wf_linear_new(4 * c->n_embd, c->n_embd, c->bias)) ||
        wf_module_add_child(m, "dropout", wf_dropout_new(c->dropout))) {
        wf_module_free(m);
        return NULL;
    }
    return m;
}

typedef struct block { wf_module base; wf_module *ln_1, *attn, *ln_2, *mlp; } block;

static wf_tensor *block_forward(wf_module *m, wf_tensor *x) {
    block *b = (block *)m;
    x = wf_add(x, wf_module_forward(b->attn, wf_module_forward(b->ln_1, x)));
    return wf_add(x, wf_module_forward(b->mlp, wf_module_forward(b->ln_2, x)));
}
static const wf_module_vtable block_vt = { .forward = block_forward };

static wf_module *block_new(const gpt_config *c) {
    block *b = wf_module_create(sizeof(block), "Block", &block_vt);
    if (!b) return NULL;
    /* ln_1 and ln_2 feed matmuls (c_attn, c_fc): under autocast they write its low dtype, which
     * those would cast to anyway, saving a cast kernel each way (nn.h) */
    wf_layer_norm_opts ln = { .no_bias = !c->bias, .autocast_output = true };
    wf_module *m = &b->base;
    if (wf_module_add_child(m, "ln_1", b->ln_1 = wf_layer_norm_new(&c->n_embd, 1, &ln)) ||
        wf_module_add_child(m, "attn", b->attn = wf_causal_self_attention_new(c->n_embd, c->n_head, c->bias, c->dropout)) ||
        wf_module_add_child(m, "ln_2", b->ln_2 = wf_layer_norm_new(&c->n_embd, 1, &ln)) ||
        wf_module_add_child(m, "mlp", b->mlp = mlp_new(c))) {
        wf_module_free(m);
        return NULL;
    }
    return m;
}

/* ---------------------------------------------------------------- GPT */

typedef struct gpt {
    wf_module base;
    gpt_config cfg;
    bool return_hidden;   /* forward returns ln_f's output, not the logits (gpt_set_return_hidden) */
    wf_module *wte, *wpe, *drop, *h, *ln_f;   /* borrowed: children of "transformer" */
} gpt;

/* ---------------------------------------------------------------- the fused residual stream */

/* m's forward may be skipped for its parameters: no hooks (Fabric's FSDP units gather a
 * wrapped module's parameters in them) and no activation checkpointing. */
static bool runs_plain(wf_module *m) { return !wf_module_has_hooks(m) && !wf_module_activation_checkpointing(m); }
static bool plain_layer_norm(wf_module *m) { return runs_plain(m) && !strcmp(wf_module_type(m), "LayerNorm"); }

static bool can_fuse(gpt *g) {
    if (!plain_layer_norm(g->ln_f)) return false;
    for (int i = 0; i < wf_module_list_len(g->h); i++) {
        block *b = (block *)wf_module_list_get(g->h, i);
        if (!runs_plain(&b->base) || !plain_layer_norm(b->ln_1) || !plain_layer_norm(b->ln_2)) return false;
    }
    return true;
}

/* ln(x + (r + rb)), *sum = x + r + rb (sum may be NULL; rb, the branch's c_proj bias, may be
 * NULL): ln's parameters, LayerNorm's eps (gpt_new's), and its output dtype as the module gives
 * it: ln_1 and ln_2 (autocast_output) in autocast's low dtype inside a region; ln_f keeps f32,
 * as the loss takes its dtype from its input (wf_linear_cross_entropy: an f32 loss under
 * autocast) */
static wf_tensor *add_ln(gpt *g, wf_module *ln, wf_tensor *x, wf_tensor *r, wf_tensor *rb, wf_tensor **sum) {
    if (!r || !x) return NULL;   /* the branch failed: its error stands */
    wf_dtype out = ln != g->ln_f && wf_autocast_enabled(wf_tensor_device(x).type) ? wf_autocast_dtype() : WF_DTYPE_DEFAULT;
    return wf_add_bias_layer_norm(x, r, rb, &g->cfg.n_embd, 1, wf_module_get_parameter(ln, "weight"),
                                  wf_module_get_parameter(ln, "bias"), 1e-5, sum, out);
}

/* ---------------------------------------------------------------- c_proj's bias in the add
 *
 * Both branches end in a c_proj Linear whose output goes (through a dropout) straight into the
 * residual add that add_ln fuses into the next norm. Its bias moves into that add
 * (wf_add_bias_layer_norm): c_proj becomes a plain GEMM each way, and the bias gradient, the
 * column sum of the sum's gradient, comes out of the norm's backward kernel instead of a BGRAD
 * reduction over the whole [tokens, 768] gradient per Linear (24 a step for GPT-2 124M). Only
 * where the modules' forwards can be composed here exactly: no hooks on the branch or its
 * children, Linear children, no fp8 (its Linears keep their own scaling state), and the dropout
 * after c_proj an identity (p 0, or eval). WEFT_GPT_PROJ_BIAS_OLD=1 (read once) keeps the
 * modules' own forwards, for A/B timing. The modules and parameter names are unchanged, so are
 * checkpoints. */
static bool proj_bias_old(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("WEFT_GPT_PROJ_BIAS_OLD");
        v = e && *e == '1';
    }
    return v == 1;
}

/* the branch m (CausalSelfAttention or MLP) composable here, with c_proj's bias to move */
static bool bias_movable(gpt *g, wf_module *m, const char *const kids[3]) {
    if (proj_bias_old() || wf_fp8_autocast_enabled() || !runs_plain(m)) return false;
    if (wf_module_is_training(m) && g->cfg.dropout != 0.0) return false;   /* the dropout sits between c_proj and the add */
    for (int i = 0; i < 3; i++) {
        wf_module *k = wf_module_get_child(m, kids[i]);
        if (!k || !runs_plain(k)) return false;
    }
    wf_module *fc = wf_module_get_child(m, kids[0]), *proj = wf_module_get_child(m, kids[1]);
    return !strcmp(wf_module_type(fc), "Linear") && !strcmp(wf_module_type(proj), "Linear") &&
           wf_module_get_parameter(proj, "bias") != NULL;
}

/* the MLP's forward (mlp_forward) without c_proj's bias, its dropout an identity */
static wf_tensor *mlp_no_proj_bias(wf_module *m, wf_tensor *x) {
    const mlp *p = (const mlp *)m;
    wf_module *fc = wf_module_get_child(m, "c_fc"), *proj = wf_module_get_child(m, "c_proj");
    wf_tensor *w1 = wf_module_get_parameter(fc, "weight"), *b1 = wf_module_get_parameter(fc, "bias");
    wf_tensor *w2 = wf_module_get_parameter(proj, "weight");
    if (p->recompute_gelu) return wf_fused_mlp(x, w1, b1, w2, NULL, p->gelu);
    return wf_linear(wf_linear_gelu(x, w1, b1, p->gelu), w2, NULL);
}

/* a branch's output and the c_proj bias the add takes (*rb NULL: the module's own forward) */
static wf_tensor *attn_branch(gpt *g, wf_module *attn, wf_tensor *h, wf_tensor **rb) {
    static const char *const kids[3] = { "c_attn", "c_proj", "resid_dropout" };
    *rb = NULL;
    if (!h || wf_ndim(h) != 3 || wf_shape(h)[2] != g->cfg.n_embd || strcmp(wf_module_type(attn), "CausalSelfAttention") ||
        !bias_movable(g, attn, kids))
        return wf_module_forward(attn, h);
    return wf_causal_self_attention_forward_without_proj_bias(attn, h, rb);
}
static wf_tensor *mlp_branch(gpt *g, wf_module *m, wf_tensor *h, wf_tensor **rb) {
    static const char *const kids[3] = { "c_fc", "c_proj", "dropout" };
    *rb = NULL;
    if (!h || strcmp(wf_module_type(m), "MLP") || !bias_movable(g, m, kids)) return wf_module_forward(m, h);
    *rb = wf_module_get_parameter(wf_module_get_child(m, "c_proj"), "bias");
    return mlp_no_proj_bias(m, h);
}

/* The blocks as Block's forward runs them, with each residual add fused into the layer norm
 * that reads it: x + attn(ln_1(x)) into ln_2, x + mlp(ln_2(x)) into the next block's ln_1 (the
 * last one's into ln_f). One kernel each way instead of an add, a norm, and in the backward the
 * engine's sum of the stream's two gradients and a cast of the branch's; each branch's c_proj
 * bias goes into that add where it can (attn_branch, mlp_branch). Returns ln_f's output; the
 * modules and parameters are Block's, so checkpoints are unchanged. */
static wf_tensor *blocks_fused(gpt *g, wf_tensor *x) {
    int n = wf_module_list_len(g->h);
    wf_tensor *h = wf_module_forward(((block *)wf_module_list_get(g->h, 0))->ln_1, x), *rb = NULL;
    for (int i = 0; i < n && h; i++) {
        block *b = (block *)wf_module_list_get(g->h, i);
        wf_module *next = i + 1 < n ? ((block *)wf_module_list_get(g->h, i + 1))->ln_1 : g->ln_f;
        wf_tensor *r = attn_branch(g, b->attn, h, &rb);
        h = add_ln(g, b->ln_2, x, r, rb, &x);
        if (h) r = mlp_branch(g, b->mlp, h, &rb);
        if (h) h = add_ln(g, next, x, r, rb, i + 1 < n ? &x : NULL);
    }
    return h;
}

static wf_tensor *gpt_forward(wf_module *m, wf_tensor *idx) {
    gpt *g = (gpt *)m;
    if (wf_ndim(idx) != 2 || wf_tensor_dtype(idx) != WF_I64) {
        char s[96];
        wf_set_error(WF_ESHAPE, "GPT: expected token indices [B, T] of int64, got %s %s", wf_dtype_name(wf_tensor_dtype(idx)),
                     wf_shape_str(idx, s, sizeof s));
        return NULL;
    }
    int64_t T = wf_size(idx, 1);
    if (T > g->cfg.block_size) {
        wf_set_error(WF_ESHAPE, "GPT: cannot forward a sequence of length %lld, block size is only %lld", (long long)T,
                     (long long)g->cfg.block_size);
        return NULL;
    }
    wf_tensor *pos = wf_to_device(wf_arange(0, (double)T, 1, WF_I64), wf_tensor_device(idx));
    wf_tensor *x = wf_module_forward(g->drop, wf_add(wf_module_forward(g->wte, idx), wf_module_forward(g->wpe, pos)));
    if (x && can_fuse(g)) {
        x = blocks_fused(g, x);
    } else {
        for (int i = 0; i < wf_module_list_len(g->h) && x; i++) x = wf_module_forward(wf_module_list_get(g->h, i), x);
        x = wf_module_forward(g->ln_f, x);
    }
    if (g->return_hidden) return x;
    /* lm_head tied to wte: one parameter, its gradient the sum of both uses */
    return wf_linear(x, wf_module_get_parameter(g->wte, "weight"), NULL);
}
static const wf_module_vtable gpt_vt = { .forward = gpt_forward };


static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* GPT-2's init (nanoGPT's _init_weights and the c_proj special case) */
static int gpt_init(gpt *g) {
    wf_module *m = &g->base;
    int n = wf_module_parameters(m, NULL, NULL, 0);
    wf_tensor **ps = calloc((size_t)n, sizeof *ps);
    const char **names = calloc((size_t)n, sizeof *names);
    int rc = ps && names ? 0 : WF_ENOMEM;
    if (!rc) wf_module_parameters(m, ps, names, n);
    double proj_std = 0.02 / sqrt(2.0 * (double)g->cfg.n_layer);
    for (int i = 0; i < n && !rc; i++) {
        if (ends_with(names[i], "c_proj.weight")) rc = wf_init_normal_(ps[i], 0.0, proj_std);
        else if (wf_ndim(ps[i]) == 2) rc = wf_init_normal_(ps[i], 0.0, 0.02);
        else if (!strstr(names[i], "ln_")) rc = wf_init_zeros_(ps[i]);   /* Linear biases; LayerNorms keep 1, 0 */
    }
    free(ps);
    free(names);
    return rc;
}

wf_module *gpt_new(const gpt_config *c) {
    if (!c || c->vocab_size < 1 || c->block_size < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_embd % c->n_head || !(c->dropout >= 0 && c->dropout < 1) || (c->gelu != WF_GELU_NONE && c->gelu != WF_GELU_TANH)) {
        wf_set_error(WF_EINVAL, "gpt_new: bad config (vocab %lld, block %lld, layers %lld, heads %lld, width %lld, "
                     "dropout %g, gelu %d): sizes must be positive, the width divisible by the heads, dropout in [0, 1), "
                     "gelu WF_GELU_NONE or WF_GELU_TANH",
                     c ? (long long)c->vocab_size : 0LL, c ? (long long)c->block_size : 0LL, c ? (long long)c->n_layer : 0LL,
                     c ? (long long)c->n_head : 0LL, c ? (long long)c->n_embd : 0LL, c ? c->dropout : 0.0,
                     c ? (int)c->gelu : 0);
        return NULL;
    }
    gpt *g = wf_module_create(sizeof(gpt), "GPT", &gpt_vt);
    if (!g) return NULL;
    g->cfg = *c;
    wf_module *m = &g->base, *tr = wf_module_dict_new();
    wf_layer_norm_opts ln = { .no_bias = !c->bias };
    int rc = wf_module_add_child(m, "transformer", tr);
    if (!rc) rc = wf_module_dict_set(tr, "wte", g->wte = wf_embedding_new(c->vocab_size, c->n_embd, NULL));
    if (!rc) rc = wf_module_dict_set(tr, "wpe", g->wpe = wf_embedding_new(c->block_size, c->n_embd, NULL));
    if (!rc) rc = wf_module_dict_set(tr, "drop", g->drop = wf_dropout_new(c->dropout));
    if (!rc) rc = wf_module_dict_set(tr, "h", g->h = wf_module_list_new());
    for (int64_t i = 0; i < c->n_layer && !rc; i++) rc = wf_module_list_append(g->h, block_new(c));
    if (!rc) rc = wf_module_dict_set(tr, "ln_f", g->ln_f = wf_layer_norm_new(&c->n_embd, 1, &ln));
    if (!rc) rc = gpt_init(g);
    if (rc) {
        wf_module_free(m);
        return NULL;
    }
    return m;
}

const gpt_config *gpt_get_config(const wf_module *m) {
    return m && !strcmp(wf_module_type(m), "GPT") ? &((const gpt *)m)->cfg : NULL;
}

int64_t gpt_num_params(wf_module *m) {
    gpt *g = (gpt *)m;
    return wf_module_num_parameters(m) - wf_numel(wf_module_get_parameter(g->wpe, "weight"));
}

wf_tensor *gpt_loss(wf_tensor *logits, wf_tensor *targets) {
    int64_t V = wf_size(logits, -1);
    return wf_cross_entropy(wf_reshape(logits, WF_SHAPE(-1, V)), wf_reshape(targets, WF_SHAPE(-1)), NULL);
}

void gpt_set_return_hidden(wf_module *m, bool on) {
    if (gpt_get_config(m)) ((gpt *)m)->return_hidden = on;
}

wf_tensor *gpt_loss_from_hidden(wf_module *m, wf_tensor *hidden, wf_tensor *targets, int64_t chunk_rows) {
    if (!gpt_get_config(m) || !hidden || !targets) {
        if (!wf_error()) wf_set_error(WF_ENULL, "gpt_loss_from_hidden: needs the GPT, its hidden states and the targets");
        return NULL;
    }
    gpt *g = (gpt *)m;
    int64_t C = wf_size(hidden, -1);
    return wf_linear_cross_entropy(wf_reshape(hidden, WF_SHAPE(-1, C)), wf_module_get_parameter(g->wte, "weight"), NULL,
                                   wf_reshape(targets, WF_SHAPE(-1)), NULL, chunk_rows);
}

static wf_tensor *forward_kept(wf_module *m, wf_tensor *x) {
    wf_scope_begin();
    wf_tensor *out = wf_keep(wf_module_forward(m, x));
    wf_scope_end();
    return out;
}

static wf_tensor *batch_loss(wf_fabric *fab, wf_module *m, wf_tensor *x, wf_tensor *y, bool fused, int64_t chunk_rows) {
    wf_memory_set_label("forward");   /* free while the census is off */
    if (!fused) {
        wf_tensor *logits = forward_kept(m, x);
        wf_memory_set_label("loss");
        return gpt_loss(logits, y);
    }
    gpt_set_return_hidden(m, true);
    wf_tensor *h = forward_kept(m, x);
    gpt_set_return_hidden(m, false);
    wf_memory_set_label("loss");
    if (!h || wf_fabric_autocast_begin(fab)) return NULL;
    wf_tensor *loss = gpt_loss_from_hidden(m, h, y, chunk_rows);
    return wf_fabric_autocast_end(fab) ? NULL : loss;
}

wf_tensor *gpt_batch_loss(wf_fabric *fab, wf_module *m, wf_tensor *x, wf_tensor *y, bool fused, int64_t chunk_rows) {
    const char *label = wf_memory_set_label(NULL);
    wf_scope_begin();
    wf_tensor *loss = wf_keep(batch_loss(fab, m, x, y, fused, chunk_rows));
    wf_scope_end();
    wf_memory_set_label(label);
    return loss;
}

wf_optimizer *gpt_configure_optimizer(wf_module *m, double weight_decay, double lr, double beta1, double beta2) {
    int n = wf_module_parameters(m, NULL, NULL, 0);
    if (n < 1) return NULL;
    wf_tensor **ps = calloc((size_t)n, sizeof *ps), **decay = calloc((size_t)n, sizeof *ps), **rest = calloc((size_t)n, sizeof *ps);
    wf_optimizer *opt = NULL;
    if (ps && decay && rest) {
        wf_module_parameters(m, ps, NULL, n);
        int nd = 0, nr = 0;
        for (int i = 0; i < n; i++) {
            if (wf_ndim(ps[i]) >= 2) decay[nd++] = ps[i];
            else rest[nr++] = ps[i];
        }
        double wd = weight_decay == 0 ? WF_OPTIM_ZERO : weight_decay;
        opt = wf_adamw_new(decay, nd, &(wf_adam_opts){ .lr = lr, .betas = { beta1, beta2 }, .weight_decay = wd });
        if (opt && nr && wf_optimizer_add_param_group(opt, rest, nr, &(wf_param_group_opts){ .weight_decay = WF_OPTIM_ZERO })) {
            wf_optimizer_free(opt);
            opt = NULL;
        }
    } else wf_set_error(WF_ENOMEM, "gpt_configure_optimizer: out of memory");
    free(ps);
    free(decay);
    free(rest);
    return opt;
}
