/* tests/fabric/test_checkpoint_files.c: Fabric checkpoints lose nothing. wf_fabric_save
 * killed (SIGKILL) at random moments: the checkpoint at the path always loads, whole and
 * consistent (its epoch matches its tensors), with at most one temporary file, gone after
 * the next save. A bit flipped at every byte of a small checkpoint: wf_fabric_load refuses
 * it, naming a tensor or the header, and restores nothing (model and epoch unchanged). */
#include "test_util.h"
#include "weft/fabric.h"
#include "weft/io.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void setup(void) { tt_dir_make("ckptf"); }
static void teardown(void) { tt_dir_remove(); }

static wf_fabric *fab(void) { return wf_fabric_new(&(wf_fabric_config){ .quiet = true }); }

static int dir_count(bool *only_ckpt_and_tmp) {
    DIR *d = opendir(tt_dir());
    ck_assert_ptr_nonnull(d);
    int n = 0;
    *only_ckpt_and_tmp = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (strcmp(e->d_name, "ckpt.safetensors") && strcmp(e->d_name, "ckpt.safetensors.tmp")) *only_ckpt_and_tmp = false;
    }
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- kill -9 */

/* Load ckpt into a fresh state; the "big" tensor must hold the epoch everywhere. */
static int64_t load_consistent(wf_fabric *f, const char *p, int64_t n_big) {
    wf_module *m = wf_linear_new(8, 4, true);
    wf_tensor *big = wf_zeros(WF_SHAPE(n_big), WF_F32);
    int64_t epoch = -1;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_tensor(st, "big", big);
    wf_fabric_state_add_int(st, "epoch", &epoch);
    wf_fabric_state *rest = wf_fabric_load(f, p, st, true);
    ck_assert_msg(rest, "the checkpoint does not load: %s", wf_error_message());
    const float *v = wf_data_ptr(big);
    int64_t i = 0;   /* one assertion, not one per element: Check records each */
    while (i < n_big && v[i] == (float)epoch) i++;
    ck_assert_msg(i == n_big, "big[%lld] = %g, epoch %lld: a mixed checkpoint", (long long)i, i < n_big ? v[i] : 0.0,
                  (long long)epoch);
    wf_fabric_state_free(rest);
    wf_fabric_state_free(st);
    wf_tensor_free(big);
    wf_module_free(m);
    return epoch;
}

START_TEST(test_kill_during_fabric_saves) {
    enum { N_BIG = 60000 };   /* 240 KB: a save takes long enough to be interrupted */
    wf_fabric *f = fab();
    wf_manual_seed(3);
    wf_module *m = wf_linear_new(8, 4, true);
    wf_tensor *big = wf_zeros(WF_SHAPE(N_BIG), WF_F32);
    int64_t epoch = 0;
    wf_fabric_state *st = wf_fabric_state_new();
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_tensor(st, "big", big);
    wf_fabric_state_add_int(st, "epoch", &epoch);
    const char *p = tt_path("ckpt.safetensors");
    ck_assert_int_eq(wf_fabric_save(f, p, st, NULL), 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    int left_tmp = 0;
    int64_t last = 0;
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            float *v = wf_data_ptr(big);
            for (int64_t e = (int64_t)round * 100000 + 1;; e++) {
                epoch = e;
                for (int i = 0; i < N_BIG; i++) v[i] = (float)e;
                if (wf_fabric_save(f, p, st, NULL)) _exit(3);
            }
        }
        struct timespec ts = { 0, (long)(rand() % 20000) * 1000 };
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "seed %u round %d: the child failed", seed,
                      round);
        last = load_consistent(f, p, N_BIG);
        bool only;
        int n = dir_count(&only);
        ck_assert_msg(n <= 2 && only, "seed %u round %d: %d files, or a file other than the checkpoint and its "
                      "temporary", seed, round, n);
        left_tmp += n == 2;
    }
    ck_assert_int_eq(wf_fabric_save(f, p, st, NULL), 0);
    bool only;
    ck_assert_int_eq(dir_count(&only), 1);
    ck_assert_int_eq(load_consistent(f, p, N_BIG), 0);
    fprintf(stderr, "test_kill_during_fabric_saves: seed %u, 20 kills, %d left a temporary file, last epoch %lld\n",
            seed, left_tmp, (long long)last);
    wf_fabric_state_free(st);
    wf_tensor_free(big);
    wf_module_free(m);
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- bit flips */

static void params_of(wf_module *m, double *out, int *n_out) {
    wf_tensor *p[4];
    int n = wf_module_parameters(m, p, NULL, 4), k = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(wf_to_array(p[i], out + k, WF_F64), 0);
        k += (int)wf_numel(p[i]);
    }
    *n_out = k;
}

START_TEST(test_every_byte_flipped_is_refused) {
    wf_fabric *f = fab();
    wf_manual_seed(5);
    wf_module *m = wf_linear_new(3, 2, true);
    int64_t epoch = 7;
    double lr = 0.125;
    wf_fabric_state *st = wf_fabric_state_new();
    /* the values first: a damaged tensor found only when the model is restored, after them,
     * would leave them restored and the model not */
    wf_fabric_state_add_int(st, "epoch", &epoch);
    wf_fabric_state_add_double(st, "lr", &lr);
    wf_fabric_state_add_module(st, "model", m);
    wf_fabric_state_add_rng(st, "rng");
    ck_assert_int_eq(wf_fabric_save(f, tt_path("good.safetensors"), st, NULL), 0);
    FILE *fp = fopen(tt_path("good.safetensors"), "rb");
    ck_assert_ptr_nonnull(fp);
    unsigned char good[4096];
    size_t n = fread(good, 1, sizeof good, fp);
    fclose(fp);
    ck_assert_uint_lt(n, sizeof good);
    /* the state is now different from the file: a partial restore would show */
    double before[16], after[16];
    int np;
    wf_tensor *ps[4];
    int nps = wf_module_parameters(m, ps, NULL, 4);
    bool g = wf_set_grad_enabled(false);
    for (int i = 0; i < nps; i++) ck_assert_int_eq(wf_fill_(ps[i], -3.0), 0);
    wf_set_grad_enabled(g);
    params_of(m, before, &np);
    epoch = -1;
    lr = -1;
    unsigned char bad[4096];
    int refused_header = 0, refused_tensor = 0;
    for (size_t pos = 0; pos < n; pos++) {
        memcpy(bad, good, n);
        bad[pos] ^= (unsigned char)(1u << (pos % 8));
        tt_write_file(tt_path("flip.safetensors"), bad, n);
        wf_clear_error();
        wf_fabric_state *rest = wf_fabric_load(f, tt_path("flip.safetensors"), st, true);
        ck_assert_msg(!rest, "byte %zu flipped: the checkpoint still loads", pos);
        ck_assert_msg(wf_error() == WF_ECORRUPT, "byte %zu: %s: %s", pos, wf_error_name(wf_error()), wf_error_message());
        const char *msg = wf_error_message();
        bool header = strstr(msg, "header") != NULL;
        bool tensor = strstr(msg, "tensor 'model/weight'") || strstr(msg, "tensor 'model/bias'");
        ck_assert_msg(header || tensor, "byte %zu: '%s' names neither a tensor nor the header", pos, msg);
        refused_header += header;
        refused_tensor += !header;
        params_of(m, after, &np);
        ck_assert_msg(!memcmp(before, after, sizeof(double) * (size_t)np), "byte %zu: the model was partly restored", pos);
        ck_assert_msg(epoch == -1 && lr == -1, "byte %zu: the epoch or lr was restored", pos);
    }
    ck_assert_int_eq(refused_tensor, (3 * 2 + 2) * 4);   /* every F32 data byte names its tensor */
    ck_assert_int_gt(refused_header, 0);
    /* and the intact file restores everything */
    wf_fabric_state *rest = wf_fabric_load(f, tt_path("good.safetensors"), st, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert_int_eq(epoch, 7);
    ck_assert(lr == 0.125);
    wf_fabric_state_free(rest);
    wf_fabric_state_free(st);
    wf_module_free(m);
    wf_fabric_free(f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fabric_checkpoint_files");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kill_during_fabric_saves);
    tcase_add_test(tc, test_every_byte_flipped_is_refused);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
