/* tests/tensor/test_cuda_graph_api.c: the CUDA graph API of weft/cuda.h where no GPU work can
 * happen, in every build: without CUDA each function fails with WF_ENOTSUP naming it (and
 * frees nothing it was not given); with CUDA, a CPU device is WF_ENOTSUP and NULL graphs are
 * WF_EINVAL. The GPU side (capture, replay, pool, bit-exact training) is tests/cuda/test_cuda_graph.c. */
#include "test_util.h"
#include "weft/cuda.h"

static void expect(int rc, int want, const char *needle) {
    ck_assert_int_eq(rc, want);
    ck_assert_msg(strstr(wf_error_message(), needle), "message '%s' lacks '%s'", wf_error_message(), needle);
    wf_clear_error();
}

START_TEST(graph_api_without_a_gpu) {
    wf_cuda_graph *g = wf_cuda_graph_new();
    if (!g) {   /* a build without CUDA */
        expect(wf_error(), WF_ENOTSUP, "wf_cuda_graph_new");
        expect(wf_cuda_graph_capture_begin(NULL, WF_CUDA(0)), WF_ENOTSUP, "without CUDA");
        expect(wf_cuda_graph_capture_end(NULL), WF_ENOTSUP, "wf_cuda_graph_capture_end");
        expect(wf_cuda_graph_replay(NULL), WF_ENOTSUP, "wf_cuda_graph_replay");
        wf_memory_stats st = { 1, 1, 1, 1 };
        expect(wf_cuda_graph_pool_stats(NULL, &st), WF_ENOTSUP, "wf_cuda_graph_pool_stats");
        ck_assert(st.allocated == 0 && st.reserved == 0 && st.n_system_allocs == 0);
        ck_assert(!wf_cuda_is_capturing(0));
        wf_cuda_graph_free(NULL);
        return;
    }
    /* a CUDA build: the checks that need no device */
    expect(wf_cuda_graph_capture_begin(g, WF_CPU), WF_ENOTSUP, "CUDA device");
    expect(wf_cuda_graph_capture_begin(NULL, WF_CUDA(0)), WF_EINVAL, "NULL");
    expect(wf_cuda_graph_capture_end(g), WF_EINVAL, "not being captured");
    expect(wf_cuda_graph_replay(g), WF_EINVAL, "empty");
    expect(wf_cuda_graph_replay(NULL), WF_EINVAL, "NULL");
    expect(wf_cuda_graph_capture_begin(g, WF_CUDA(999)), WF_EDEVICE, "cuda:999");
    wf_memory_stats st;
    ck_assert_int_eq(wf_cuda_graph_pool_stats(g, &st), 0);
    ck_assert(st.allocated == 0 && st.reserved == 0);
    expect(wf_cuda_graph_pool_stats(NULL, &st), WF_EINVAL, "NULL");
    ck_assert(!wf_cuda_is_capturing(0) && !wf_cuda_is_capturing(-1));
    wf_cuda_graph_free(g);
    wf_cuda_graph_free(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cuda_graph_api");
    TCase *tc = tcase_create("cuda_graph_api");
    tcase_add_test(tc, graph_api_without_a_gpu);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
