/* tests/doc_examples.c: every code example of the public headers (include/weft/) and of
 * README.md, compiled and run. The examples are not copied here: tests/doc_extract.py extracts them verbatim at
 * build time into doc_blocks.inc, one section per example (DOC_<file>_<n>), and this file
 * includes each section inside the frame it needs: the variables it uses, and checks that it
 * did what its text says. A header example that stops compiling fails the build at the
 * header's own line; a new example not run here fails the extraction (doc_extract.py). */
#include "test_util.h"
#include "weft_config.h"

/* ---------------------------------------------------------------- README.md: a whole program */
#define main doc_readme_main
#define DOC_README_md_1
#include "doc_blocks.inc"
#undef DOC_README_md_1
#undef main

START_TEST(readme_program) {
    wf_manual_seed(0);
    ck_assert_msg(doc_readme_main() == 0, "%s", wf_error_message());
}
END_TEST

/* ---------------------------------------------------------------- nn.h: a custom module */
#define DOC_nn_h_1   /* the type, its forward and vtable (file scope) */
#include "doc_blocks.inc"
#undef DOC_nn_h_1

START_TEST(nn_custom_module) {
    wf_manual_seed(1);
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(2, 784), WF_F32);
        wf_clear_error();
#define DOC_nn_h_2
#include "doc_blocks.inc"
#undef DOC_nn_h_2
        ck_assert_shape(logits, 2, 10);
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
    }
}
END_TEST

/* ---------------------------------------------------------------- nn.h: attention without c_proj's bias */
START_TEST(nn_attention_without_proj_bias) {
    WF_SCOPE {
        wf_manual_seed(3);
        wf_module *attn = wf_causal_self_attention_new(768, 12, true, 0.0);
        ck_assert_ptr_nonnull(attn);
        wf_tensor *x = wf_randn(WF_SHAPE(2, 5, 768), WF_F32), *x0 = x, *h = wf_randn(WF_SHAPE(2, 5, 768), WF_F32);
        wf_tensor *w = wf_ones(WF_SHAPE(768), WF_F32), *b = wf_zeros(WF_SHAPE(768), WF_F32);
        wf_tensor *proj_b = wf_module_get_parameter(wf_module_get_child(attn, "c_proj"), "bias");
        WF_NO_GRAD { wf_fill_(proj_b, 0.25); }   /* init zeroes it: a dropped bias would not show */
        wf_clear_error();
#define DOC_nn_h_3
#include "doc_blocks.inc"
#undef DOC_nn_h_3
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
        ck_assert_ptr_eq(pb, proj_b);
        wf_tensor *full = wf_module_forward(attn, h);   /* the module's own forward, with the bias */
        tt_assert_close(wf_add(a, pb), full, 1e-5);
        tt_assert_close(x, wf_add(x0, full), 1e-5);
        tt_assert_close(h2, wf_layer_norm(x, WF_SHAPE(768), w, b, 1e-5), 1e-4);
        /* training with dropout: refused, named */
        wf_module *drop = wf_causal_self_attention_new(768, 12, true, 0.1);
        wf_tensor *pb2 = (wf_tensor *)1;
        ck_assert_ptr_null(wf_causal_self_attention_forward_without_proj_bias(drop, h, &pb2));
        ck_assert_int_eq(wf_error(), WF_EINVAL);
        ck_assert_ptr_nonnull(strstr(wf_error_message(), "dropout"));
        ck_assert_ptr_null(pb2);
        wf_clear_error();
        wf_module_free(drop);
        wf_module_free(attn);
    }
}
END_TEST

/* ---------------------------------------------------------------- nn.h: the fused residual add */
START_TEST(nn_add_layer_norm) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(4, 768), WF_F32), *x0 = x;
        wf_tensor *attn_out = wf_to_dtype(wf_randn(WF_SHAPE(4, 768), WF_F32), WF_BF16);
        wf_tensor *w = wf_ones(WF_SHAPE(768), WF_F32), *b = wf_zeros(WF_SHAPE(768), WF_F32);
        wf_clear_error();
#define DOC_nn_h_4
#include "doc_blocks.inc"
#undef DOC_nn_h_4
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
        ck_assert_shape(h, 4, 768);
        ck_assert_int_eq(wf_tensor_dtype(x), WF_F32);   /* the stream keeps its dtype */
        tt_assert_close(x, wf_add(x0, attn_out), 0);
        tt_assert_close(h, wf_layer_norm(x, WF_SHAPE(768), w, b, 1e-5), 1e-4);
    }
}
END_TEST

/* ---------------------------------------------------------------- nn.h: the norm's output dtype */
START_TEST(nn_layer_norm_out_dtype) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(4, 768), WF_F32), *x0 = x;
        wf_tensor *attn_out = wf_to_dtype(wf_randn(WF_SHAPE(4, 768), WF_F32), WF_BF16);
        wf_tensor *w = wf_ones(WF_SHAPE(768), WF_F32), *b = wf_zeros(WF_SHAPE(768), WF_F32);
        wf_tensor *fc_w = wf_randn(WF_SHAPE(16, 768), WF_F32);
        wf_clear_error();
        ck_assert_int_eq(wf_autocast_begin(WF_DEV_CPU, WF_BF16), 0);
#define DOC_nn_h_5
#include "doc_blocks.inc"
#undef DOC_nn_h_5
        ck_assert_int_eq(wf_autocast_end(), 0);
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(h), WF_BF16);   /* the region's low dtype */
        ck_assert_int_eq(wf_tensor_dtype(x), WF_F32);    /* the stream keeps its dtype */
        ck_assert_int_eq(wf_tensor_dtype(out), WF_BF16);
        tt_assert_close(x, wf_add(x0, attn_out), 0);
        tt_assert_close(h, wf_layer_norm(x, WF_SHAPE(768), w, b, 1e-5), 1e-2);
    }
}
END_TEST

/* ---------------------------------------------------------------- nn.h: the branch's bias in the add */
START_TEST(nn_add_bias_layer_norm) {
    WF_SCOPE {
        wf_tensor *x = wf_randn(WF_SHAPE(4, 768), WF_F32), *x0 = x, *h = wf_randn(WF_SHAPE(4, 64), WF_F32);
        wf_tensor *proj_w = wf_randn(WF_SHAPE(768, 64), WF_F32), *proj_b = wf_randn(WF_SHAPE(768), WF_F32);
        wf_tensor *w = wf_ones(WF_SHAPE(768), WF_F32), *b = wf_zeros(WF_SHAPE(768), WF_F32);
        wf_clear_error();
#define DOC_nn_h_6
#include "doc_blocks.inc"
#undef DOC_nn_h_6
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
        ck_assert_shape(y, 4, 768);
        tt_assert_close(x, wf_add(x0, wf_linear(h, proj_w, proj_b)), 1e-4);   /* the bias is in the stream */
        tt_assert_close(y, wf_layer_norm(x, WF_SHAPE(768), w, b, 1e-5), 1e-4);
    }
}
END_TEST

/* ---------------------------------------------------------------- dist.h: a world of one */
START_TEST(dist_all_reduce) {
    WF_SCOPE {
        wf_tensor *grad = wf_full(WF_SHAPE(3), 2.5, WF_F32);
        wf_clear_error();
#define DOC_dist_h_1
#include "doc_blocks.inc"
#undef DOC_dist_h_1
#ifdef WEFT_MINIMAL   /* one process and no collectives (dist/collectives_stub.c): refused by name */
        ck_assert_error(WF_ENOTSUP, "wf_dist_all_reduce: not in the minimal build of weft");
#else
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
#endif
        ck_assert_tensor_near(grad, ((double[]){ 2.5, 2.5, 2.5 }), 3, 0);   /* the average of one (or untouched) */
    }
}
END_TEST

/* ---------------------------------------------------------------- fabric.h: the five steps */
START_TEST(fabric_five_steps) {
    wf_manual_seed(2);
    wf_module *model = wf_linear_new(4, 3, true);
    wf_tensor *params[2];
    ck_assert_int_eq(wf_module_parameters(model, params, NULL, 2), 2);
    wf_optimizer *opt = wf_sgd_new(params, 2, &(wf_sgd_opts){ .lr = 0.5 });
    float w0[12], w1[12];
    ck_assert_int_eq(wf_to_array(params[0], w0, WF_F32), 0);
    wf_tensor *xs = wf_randn(WF_SHAPE(8, 4), WF_F32);
    wf_tensor *ys = wf_randint(0, 3, WF_SHAPE(8), WF_I64);
    wf_dataset ds;
    ck_assert_int_eq(wf_tensor_dataset((wf_tensor *[]){ xs, ys }, 2, &ds), 0);
    wf_dataloader *raw_loader = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 4 });
    ck_assert_ptr_nonnull(raw_loader);
    wf_clear_error();
    {
#define DOC_fabric_h_1
#include "doc_blocks.inc"
#undef DOC_fabric_h_1
        ck_assert_msg(wf_error() == 0, "%s", wf_error_message());
        ck_assert_int_eq(more, 0);                       /* the loop ran to the end of the epoch */
        ck_assert_int_eq(wf_module_parameters(model, params, NULL, 2), 2);
        ck_assert_int_eq(wf_to_array(params[0], w1, WF_F32), 0);
        ck_assert_msg(memcmp(w0, w1, sizeof w0) != 0, "two steps left the weights unchanged");
        wf_fabric_loader_free(dl);
        wf_fabric_free(fab);
    }
    wf_optimizer_free(opt);
    wf_module_free(model);
    wf_tensor_free(xs);
    wf_tensor_free(ys);
}
END_TEST

/* ---------------------------------------------------------------- fabric.h: rank_zero_first */
static int prepared;
static int prepare_data(void) { prepared++; return 0; }

START_TEST(fabric_rank_zero_first) {
    wf_fabric *fab = wf_fabric_new(NULL);
    ck_assert_msg(fab != NULL, "%s", wf_error_message());
    int rc = -1;
#define DOC_fabric_h_2
#include "doc_blocks.inc"
#undef DOC_fabric_h_2
    ck_assert_msg(rc == 0, "%s", wf_error_message());
    ck_assert_int_eq(prepared, 1);
    wf_fabric_free(fab);
}
END_TEST

/* ---------------------------------------------------------------- weft/version.h */
START_TEST(version_agrees) {
    char buf[48];
    snprintf(buf, sizeof buf, "%d.%d.%d", WF_VERSION_MAJOR, WF_VERSION_MINOR, WF_VERSION_PATCH);
    ck_assert_str_eq(buf, WF_VERSION_STRING);
    ck_assert_str_eq(WF_VERSION_STRING, WF_EXPECTED_VERSION);   /* meson.build's project version */
    ck_assert_str_eq(wf_version(), WF_VERSION_STRING);         /* the library linked */
    ck_assert_int_eq(WF_VERSION_NUMBER, WF_VERSION_MAJOR * 10000 + WF_VERSION_MINOR * 100 + WF_VERSION_PATCH);
    ck_assert(WF_VERSION_ENCODE(0, 1, 9) < WF_VERSION_ENCODE(0, 2, 0));
}
END_TEST

int main(void) {
    Suite *s = suite_create("doc_examples");
    TCase *tc = tcase_create("examples");
    tcase_add_test(tc, readme_program);
    tcase_add_test(tc, nn_custom_module);
    tcase_add_test(tc, nn_attention_without_proj_bias);
    tcase_add_test(tc, nn_add_layer_norm);
    tcase_add_test(tc, nn_layer_norm_out_dtype);
    tcase_add_test(tc, nn_add_bias_layer_norm);
    tcase_add_test(tc, dist_all_reduce);
    tcase_add_test(tc, fabric_five_steps);
    tcase_add_test(tc, fabric_rank_zero_first);
    tcase_add_test(tc, version_agrees);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
