/* nn/attention.c: MultiheadAttention (PyTorch's parameter layout) and a GPT-style causal
 * self-attention block (nanoGPT's names), both on wf_scaled_dot_product_attention. */
#include "nn_impl.h"

#include <math.h>
#include <string.h>

/* ================================================================ MultiheadAttention */

typedef struct mha { wf_module base; int64_t E, H; wf_mha_opts o; } mha;

static void mha_repr(const wf_module *m, char *buf, size_t n) {
    const mha *a = (const mha *)m;
    snprintf(buf, n, "embed_dim=%lld, num_heads=%lld, dropout=%g, batch_first=%s", (long long)a->E, (long long)a->H,
             a->o.dropout, a->o.batch_first ? "True" : "False");
}

static wf_tensor *mha_self(wf_module *m, wf_tensor *x) { return wf_mha_forward(m, x, x, x, NULL, false); }

static const wf_module_vtable mha_vt = { .forward = mha_self, .extra_repr = mha_repr };

static wf_module *wf_mha_new__body(int64_t embed_dim, int64_t num_heads, const wf_mha_opts *opts) {
    wf_mha_opts o = opts ? *opts : (wf_mha_opts){ 0 };
    if (embed_dim <= 0 || num_heads <= 0) {
        wf__error(WF_EINVAL, "wf_mha_new: embed_dim and num_heads must be positive, got %lld and %lld",
                  (long long)embed_dim, (long long)num_heads);
        return NULL;
    }
    if (embed_dim % num_heads) {
        wf__error(WF_EINVAL, "wf_mha_new: embed_dim (%lld) must be divisible by num_heads (%lld)", (long long)embed_dim,
                  (long long)num_heads);
        return NULL;
    }
    if (!(o.dropout >= 0 && o.dropout <= 1)) {
        wf__error(WF_EINVAL, "wf_mha_new: dropout %g is not in [0, 1]", o.dropout);
        return NULL;
    }
    mha *a = wf__module_new(sizeof *a, "MultiheadAttention", &mha_vt);
    if (!a) return NULL;
    a->E = embed_dim;
    a->H = num_heads;
    a->o = o;
    wf_module *m = &a->base;
    wf_tensor *w = wf_empty(WF_SHAPE(3 * embed_dim, embed_dim), WF_DTYPE_DEFAULT);
    if (w && wf_init_xavier_uniform_(w, 1.0)) { wf_tensor_free(w); w = NULL; }
    if (wf__param(m, "in_proj_weight", w)) goto fail;
    if (!o.no_bias && wf__param(m, "in_proj_bias", wf_zeros(WF_SHAPE(3 * embed_dim), WF_DTYPE_DEFAULT))) goto fail;
    wf_module *out = wf_linear_new(embed_dim, embed_dim, !o.no_bias);
    if (out && !o.no_bias && wf_init_zeros_(wf_module_get_parameter(out, "bias"))) { wf_module_free(out); out = NULL; }
    if (wf_module_add_child(m, "out_proj", out)) goto fail;
    return m;
fail:
    wf_module_free(m);
    return NULL;
}

wf_module *wf_mha_new(int64_t embed_dim, int64_t num_heads, const wf_mha_opts *opts) {
    WF__NAMED("wf_mha_new", wf_module *, !r, wf_mha_new__body(embed_dim, num_heads, opts));
}

wf_tensor *wf_mha_forward(wf_module *m, wf_tensor *q, wf_tensor *k, wf_tensor *v, wf_tensor *attn_mask, bool is_causal) {
    if (wf__any_null("wf_mha_forward", 4, m, q, k, v)) return NULL;
    if (strcmp(wf_module_type(m), "MultiheadAttention") != 0) {
        wf__error(WF_EINVAL, "wf_mha_forward: module is a %s, not a MultiheadAttention", wf_module_type(m));
        return NULL;
    }
    mha *a = (mha *)m;
    char d[200], b1[96], b2[96], b3[96];
    int64_t E = a->E, H = a->H, hd = E / H;
    bool unbatched = wf_ndim(q) == 2;
    int want = unbatched ? 2 : 3;
    if ((wf_ndim(q) != 2 && wf_ndim(q) != 3) || wf_ndim(k) != want || wf_ndim(v) != want || wf_shape(q)[want - 1] != E ||
        wf_shape(k)[want - 1] != E || wf_shape(v)[want - 1] != E) {
        wf__error(WF_ESHAPE, "%s: query %s, key %s and value %s must all be [L, N, %lld] (or [N, L, %lld] with batch_first, "
                  "or unbatched [L, %lld])", wf__module_desc(m, d, sizeof d), wf_shape_str(q, b1, sizeof b1),
                  wf_shape_str(k, b2, sizeof b2), wf_shape_str(v, b3, sizeof b3), (long long)E, (long long)E, (long long)E);
        return NULL;
    }
    wf_scope_begin();
    wf_tensor *qb = q, *kb = k, *vb = v;   /* as [N, L, E] */
    if (unbatched) { qb = wf_unsqueeze(q, 0); kb = wf_unsqueeze(k, 0); vb = wf_unsqueeze(v, 0); }
    else if (!a->o.batch_first) { qb = wf_transpose(q, 0, 1); kb = wf_transpose(k, 0, 1); vb = wf_transpose(v, 0, 1); }
    wf_tensor *y = NULL;
    if (!qb || !kb || !vb) goto done;
    int64_t N = wf_shape(qb)[0], L = wf_shape(qb)[1], S = wf_shape(kb)[1];
    if (wf_shape(kb)[0] != N || wf_shape(vb)[0] != N || wf_shape(vb)[1] != S) {
        wf__error(WF_ESHAPE, "%s: query %s, key %s and value %s disagree on batch or source length",
                  wf__module_desc(m, d, sizeof d), wf_shape_str(q, b1, sizeof b1), wf_shape_str(k, b2, sizeof b2),
                  wf_shape_str(v, b3, sizeof b3));
        goto done;
    }
    wf_tensor *W = wf_module_get_parameter(m, "in_proj_weight"), *B = wf_module_get_parameter(m, "in_proj_bias");
    wf_tensor *in[3] = { qb, kb, vb }, *heads[3];
    for (int i = 0; i < 3; i++) {
        wf_tensor *p = wf_linear(in[i], wf_narrow(W, 0, i * E, E), B ? wf_narrow(B, 0, i * E, E) : NULL);
        int64_t len = i == 0 ? L : S;
        heads[i] = wf_transpose(wf_reshape(p, WF_SHAPE(N, len, H, hd)), 1, 2);   /* [N, H, len, hd] */
    }
    wf_tensor *mask = attn_mask;
    if (mask) {
        bool ok = (wf_ndim(mask) == 2 && wf_shape(mask)[0] == L && wf_shape(mask)[1] == S) ||
                  (wf_ndim(mask) == 3 && wf_shape(mask)[0] == N * H && wf_shape(mask)[1] == L && wf_shape(mask)[2] == S);
        if (!ok) {
            wf__error(WF_ESHAPE, "%s: attn_mask of shape %s should be [%lld, %lld] or [%lld, %lld, %lld]",
                      wf__module_desc(m, d, sizeof d), wf_shape_str(mask, b1, sizeof b1), (long long)L, (long long)S,
                      (long long)(N * H), (long long)L, (long long)S);
            goto done;
        }
        if (wf_ndim(mask) == 3) mask = wf_reshape(mask, WF_SHAPE(N, H, L, S));
        if (mask && wf_tensor_dtype(mask) == WF_BOOL) mask = wf_logical_not(mask);   /* true = masked -> true = allowed */
        else if (mask && !wf_dtype_is_floating(wf_tensor_dtype(mask))) {
            wf__error(WF_EDTYPE, "%s: attn_mask must be bool or floating, got %s", wf__module_desc(m, d, sizeof d),
                      wf_dtype_name(wf_tensor_dtype(mask)));
            goto done;
        }
        if (!mask) goto done;
    }
    double p = m->training ? a->o.dropout : 0.0;
    wf_tensor *o = wf_scaled_dot_product_attention(heads[0], heads[1], heads[2], mask, p, is_causal);
    o = wf_reshape(wf_transpose(o, 1, 2), WF_SHAPE(N, L, E));
    wf_module *op = wf_module_get_child(m, "out_proj");
    y = wf_linear(o, wf_module_get_parameter(op, "weight"), wf_module_get_parameter(op, "bias"));
    if (unbatched) y = wf_squeeze(y, 0);
    else if (!a->o.batch_first) y = wf_transpose(y, 0, 1);
done:
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

/* ================================================================ CausalSelfAttention */

typedef struct csa { wf_module base; int64_t E, H; double dropout; } csa;

static void csa_repr(const wf_module *m, char *buf, size_t n) {
    const csa *a = (const csa *)m;
    snprintf(buf, n, "n_embd=%lld, n_head=%lld", (long long)a->E, (long long)a->H);
}

/* the module's forward; without_bias: c_proj's GEMM without its bias, resid_dropout skipped
 * (the caller checked it is an identity) */
static wf_tensor *csa_run(wf_module *m, wf_tensor *x, bool without_bias) {
    csa *a = (csa *)m;
    if (wf_ndim(x) != 3 || wf_shape(x)[2] != a->E) {
        char d[200], b[96];
        wf__error(WF_ESHAPE, "%s: expected an input [B, T, %lld], got shape %s", wf__module_desc(m, d, sizeof d),
                  (long long)a->E, wf_shape_str(x, b, sizeof b));
        return NULL;
    }
    int64_t B = wf_shape(x)[0], T = wf_shape(x)[1], E = a->E, H = a->H;
    wf_scope_begin();
    wf_tensor *y = NULL;
    wf_tensor *qkv = wf_module_forward(wf_module_get_child(m, "c_attn"), x);
    wf_tensor *parts[3] = { 0 }, *o = NULL;
    double p = m->training ? a->dropout : 0.0;
    bool handled = false;
    /* fused attention reading q, k, v in place from the packed projection (CUDA, f16/bf16):
     * its backward writes one [B, T, 3E] gradient instead of going through split/transpose */
    if (qkv && p == 0.0) o = wf__sdpa_qkv_fused(wf__autocast_arg(qkv, WF__AC_LOWER), H, true, &handled);
    if (!handled && qkv && wf_split(qkv, E, 2, parts, 3) == 3) {
        for (int i = 0; i < 3; i++) parts[i] = wf_transpose(wf_reshape(parts[i], WF_SHAPE(B, T, H, E / H)), 1, 2);
        o = wf_scaled_dot_product_attention(parts[0], parts[1], parts[2], NULL, p, true);
    }
    if (o) {
        o = wf_reshape(wf_transpose(o, 1, 2), WF_SHAPE(B, T, E));
        wf_module *proj = wf_module_get_child(m, "c_proj");
        if (without_bias) y = wf_linear(o, wf_module_get_parameter(proj, "weight"), NULL);
        else y = wf_module_forward(wf_module_get_child(m, "resid_dropout"), wf_module_forward(proj, o));
    }
    if (y) wf_keep(y);
    wf_scope_end();
    return y;
}

static wf_tensor *csa_forward(wf_module *m, wf_tensor *x) { return csa_run(m, x, false); }

static const wf_module_vtable csa_vt = { .forward = csa_forward, .extra_repr = csa_repr };

static wf_tensor *csa_without_proj_bias(wf_module *m, wf_tensor *x, wf_tensor **proj_bias) {
    if (proj_bias) *proj_bias = NULL;
    if (wf__any_null("wf_causal_self_attention_forward_without_proj_bias", 2, m, x)) return NULL;
    char d[200];
    if (m->vt != &csa_vt)
        return wf__error(WF_EINVAL, "wf_causal_self_attention_forward_without_proj_bias: %s is not a "
                         "CausalSelfAttention", wf__module_desc(m, d, sizeof d)), NULL;
    wf_module *proj = wf_module_get_child(m, "c_proj");
    if (!proj || strcmp(wf_module_type(proj), "Linear") || wf_module_has_hooks(proj) ||
        wf_module_activation_checkpointing(proj))
        return wf__error(WF_EINVAL, "wf_causal_self_attention_forward_without_proj_bias: %s's c_proj is not a plain "
                         "Linear (replaced, hooked or checkpointed): run the module's forward",
                         wf__module_desc(m, d, sizeof d)), NULL;
    if (m->training && ((csa *)m)->dropout != 0.0)
        return wf__error(WF_EINVAL, "wf_causal_self_attention_forward_without_proj_bias: %s trains with dropout %g, "
                         "which comes after c_proj's bias: run the module's forward",
                         wf__module_desc(m, d, sizeof d), ((csa *)m)->dropout), NULL;
    wf_tensor *y = csa_run(m, x, true);
    if (y && proj_bias) *proj_bias = wf_module_get_parameter(proj, "bias");
    return y;
}

wf_tensor *wf_causal_self_attention_forward_without_proj_bias(wf_module *m, wf_tensor *x, wf_tensor **proj_bias) {
    WF__NAMED("wf_causal_self_attention_forward_without_proj_bias", wf_tensor *, !r, csa_without_proj_bias(m, x, proj_bias));
}

static wf_module *wf_causal_self_attention_new__body(int64_t n_embd, int64_t n_head, bool bias, double dropout) {
    if (n_embd <= 0 || n_head <= 0 || n_embd % n_head) {
        wf__error(WF_EINVAL, "wf_causal_self_attention_new: n_embd (%lld) must be positive and divisible by n_head (%lld)",
                  (long long)n_embd, (long long)n_head);
        return NULL;
    }
    if (!(dropout >= 0 && dropout <= 1)) {
        wf__error(WF_EINVAL, "wf_causal_self_attention_new: dropout %g is not in [0, 1]", dropout);
        return NULL;
    }
    csa *a = wf__module_new(sizeof *a, "CausalSelfAttention", &csa_vt);
    if (!a) return NULL;
    a->E = n_embd;
    a->H = n_head;
    a->dropout = dropout;
    wf_module *m = &a->base;
    if (wf_module_add_child(m, "c_attn", wf_linear_new(n_embd, 3 * n_embd, bias)) ||
        wf_module_add_child(m, "c_proj", wf_linear_new(n_embd, n_embd, bias)) ||
        wf_module_add_child(m, "attn_dropout", wf_dropout_new(dropout)) ||
        wf_module_add_child(m, "resid_dropout", wf_dropout_new(dropout))) {
        wf_module_free(m);
        return NULL;
    }
    return m;
}

wf_module *wf_causal_self_attention_new(int64_t n_embd, int64_t n_head, bool bias, double dropout) {
    WF__NAMED("wf_causal_self_attention_new", wf_module *, !r, wf_causal_self_attention_new__body(n_embd, n_head, bias, dropout));
}
