/* tensor/print.c: PyTorch-style printing: tensor([[1.0000, 2.0000]], dtype=float64). */
#include "tensor_impl.h"

#include <math.h>

#define EDGE 3          /* elements shown at each end of a long dimension */
#define SUMMARIZE 1000  /* summarize tensors with more elements than this */

static void print_rec(FILE *f, const double *v, const int64_t *shape, int nd, int d, int64_t *off,
                      bool fp, bool summarize, int indent) {
    if (nd == 0) {
        if (fp) fprintf(f, "%.4f", v[0]);
        else fprintf(f, "%lld", (long long)v[0]);
        return;
    }
    int64_t n = shape[d], inner = 1;
    for (int i = d + 1; i < nd; i++) inner *= shape[i];
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (summarize && n > 2 * EDGE && i == EDGE) {
            fputs(d == nd - 1 ? "..., " : "...,\n", f);
            if (d != nd - 1) fprintf(f, "%*s", indent + 1, "");
            i = n - EDGE - 1;
            *off += (n - 2 * EDGE) * inner;
            continue;
        }
        if (d == nd - 1) {
            double x = v[(*off)++];
            if (!fp) fprintf(f, "%lld", (long long)x);
            else if (isnan(x)) fputs("nan", f);
            else if (isinf(x)) fputs(x > 0 ? "inf" : "-inf", f);
            else fprintf(f, "%.4f", x);
        } else {
            print_rec(f, v, shape, nd, d + 1, off, fp, summarize, indent + 1);
        }
        if (i + 1 < n) {
            if (d == nd - 1) fputs(", ", f);
            else { fputs(",\n", f); fprintf(f, "%*s", indent + 1, ""); }
        }
    }
    fputc(']', f);
}

int wf_fprint(FILE *f, const wf_tensor *t) {
    if (!f || !t) return wf__any_null("wf_fprint", 2, f, t), WF_ENULL;
    int64_t n = wf_numel(t);
    if (t->device.type == WF_DEV_META) {
        char b[96];
        fprintf(f, "tensor(..., device='meta', size=%s)\n", wf_shape_str(t, b, sizeof b));
        return 0;
    }
    double *v = wf__malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!v) return wf__error(WF_ENOMEM, "wf_fprint: out of memory");
    int rc = wf_to_array(t, v, WF_F64);
    if (!rc) {
        fputs("tensor(", f);
        int64_t off = 0;
        print_rec(f, v, t->shape, t->ndim, 0, &off, wf_dtype_is_floating(t->dtype), n > SUMMARIZE, 7);
        if (t->dtype != WF_F32 && t->dtype != WF_I64) fprintf(f, ", dtype=%s", wf_dtype_name(t->dtype));
        if (t->device.type != WF_DEV_CPU) { char b[16]; fprintf(f, ", device='%s'", wf_device_str(t->device, b, sizeof b)); }
        if (t->grad_fn) {
            const char *name = atomic_load_explicit(&wf__autograd, memory_order_acquire)->grad_fn_name(t);
            fprintf(f, ", grad_fn=<%s>", name ? name : "?");
        }
        else if (t->requires_grad) fputs(", requires_grad=True", f);
        fputs(")\n", f);
    }
    wf__free(v, 0);
    return rc;
}

static int wf_print__body(const wf_tensor *t) { return wf_fprint(stdout, t); }

int wf_print(const wf_tensor *t) { WF__NAMED("wf_print", int, r < 0, wf_print__body(t)); }
