/* tests/fabric/test_loggers.c: the CSV logger's file layout (Lightning's) and the
 * TensorBoard logger's framing (TFRecord lengths and masked CRC-32C checked here; the
 * protocol buffers are read back by the tensorboard package in check_tensorboard.py). */
#include "test_util.h"
#include "weft/fabric.h"
#include "weft/io.h"

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

static char root[256];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

START_TEST(test_csv_layout) {
    wf_logger *l = wf_csv_logger_new(root, &(wf_logger_opts){ .name = "exp" });
    ck_assert_msg(l, "%s", wf_error_message());
    ck_assert_int_eq(l->version, 0);
    char expect_dir[512];
    snprintf(expect_dir, sizeof expect_dir, "%s/exp/version_0", root);
    ck_assert_str_eq(wf_logger_log_dir(l), expect_dir);
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .loggers = &l, .n_loggers = 1, .quiet = true });
    ck_assert_ptr_eq(wf_fabric_logger(f), l);
    ck_assert_int_eq(wf_fabric_num_loggers(f), 1);
    ck_assert_ptr_eq(wf_fabric_logger_at(f, 0), l);
    ck_assert_ptr_null(wf_fabric_logger_at(f, 1));
    ck_assert_int_eq(wf_logger_flush(l), 0);
    ck_assert_int_ne(wf_logger_flush(NULL), 0);
    wf_clear_error();
    ck_assert_int_eq(wf_fabric_log(f, "loss", 0.5, 0), 0);
    ck_assert_int_eq(wf_fabric_log_dict(f, (const char *[]){ "loss", "acc" }, (double[]){ 0.25, 0.75 }, 2, 1), 0);
    ck_assert_int_eq(wf_fabric_log(f, "val/loss", 1e-5, -1), 0);   /* step: the logger's counter (2) */
    ck_assert_int_eq(wf_logger_log_hyperparams(l, (const char *[]){ "lr" }, NULL, (double[]){ 0.1 }, (bool[]){ true }, 1),
                     WF_ENOTSUP);
    ck_assert_error(WF_ENOTSUP, "csv");
    wf_fabric_free(f);   /* flushes */
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.csv", expect_dir);
    const char *csv = slurp(path);
    ck_assert_ptr_nonnull(csv);
    ck_assert_str_eq(csv, "acc,loss,step,val/loss\n"
                          ",0.5,0,\n"
                          "0.75,0.25,1,\n"
                          ",,2,1e-05\n");
    /* the next logger gets version_1; an explicit version is used as is */
    wf_logger *l2 = wf_csv_logger_new(root, &(wf_logger_opts){ .name = "exp" });
    ck_assert_int_eq(l2->version, 1);
    wf_logger *l3 = wf_csv_logger_new(root, &(wf_logger_opts){ .name = "exp", .version = 7, .flush_logs_every_n_steps = 1 });
    ck_assert_int_eq(l3->version, 7);
    ck_assert_int_eq(wf_logger_log_metrics(l3, (const char *[]){ "a" }, (double[]){ 1 }, 1, 3), 0);
    snprintf(path, sizeof path, "%s/exp/version_7/metrics.csv", root);
    ck_assert_str_eq(slurp(path), "a,step\n1.0,3\n");   /* written at once: flush every row */
    ck_assert_int_eq(wf_logger_log_metrics(l3, (const char *[]){ "b" }, (double[]){ 2 }, 1, 4), 0);
    ck_assert_str_eq(slurp(path), "a,b,step\n1.0,,3\n,2.0,4\n");   /* a new key rewrites the header */
    wf_logger_free(l2);
    wf_logger_free(l3);
    /* default name */
    wf_logger *l4 = wf_csv_logger_new(root, NULL);
    ck_assert_ptr_nonnull(strstr(wf_logger_log_dir(l4), "/lightning_logs/version_0"));
    wf_logger_free(l4);
    ck_assert_ptr_null(wf_csv_logger_new("/proc/forbidden", NULL));
    ck_assert_error(WF_EIO, "/proc/forbidden");
    ck_assert_ptr_null(wf_csv_logger_new(NULL, NULL));
    ck_assert_error(WF_ENULL, "root_dir");
}
END_TEST

START_TEST(test_tensorboard_framing) {
    wf_logger *l = wf_tensorboard_logger_new(root, &(wf_logger_opts){ .name = "tb" });
    ck_assert_msg(l, "%s", wf_error_message());
    for (int s = 0; s < 5; s++)
        ck_assert_int_eq(wf_logger_log_metrics(l, (const char *[]){ "loss", "acc" }, (double[]){ 1.0 / (s + 1), 0.1 * s }, 2, s), 0);
    ck_assert_int_eq(wf_logger_log_hyperparams(l, (const char *[]){ "lr", "opt" }, (const char *[]){ NULL, "adam" },
                                               (double[]){ 0.001, 0 }, (bool[]){ true, false }, 2), 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", wf_logger_log_dir(l));
    wf_logger_free(l);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    char path[1024] = "";
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, "events.out.tfevents.", 20)) snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    closedir(d);
    ck_assert_msg(path[0], "no event file in %s", dir);
    FILE *f = fopen(path, "rb");
    unsigned char hdr[12], tail[4], data[4096];
    int records = 0;
    while (fread(hdr, 1, 12, f) == 12) {
        uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= (uint64_t)hdr[i] << (8 * i);
        uint32_t c = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 | (uint32_t)hdr[11] << 24;
        ck_assert_uint_eq(c, wf_crc32c_mask(wf_crc32c(0, hdr, 8)));
        ck_assert_uint_lt(len, sizeof data);
        ck_assert_uint_eq(fread(data, 1, len, f), len);
        ck_assert_uint_eq(fread(tail, 1, 4, f), 4);
        c = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
        ck_assert_uint_eq(c, wf_crc32c_mask(wf_crc32c(0, data, len)));
        records++;
    }
    fclose(f);
    ck_assert_int_eq(records, 1 + 10 + 3 + 1);   /* version, scalars, hparams x3, hp_metric */
}
END_TEST

/* Fabric's log_hyperparams forwards to the loggers that log hyperparameters (CSV: skipped,
 * as Fabric's CSVLogger raises NotImplementedError); with only CSV loggers: WF_ENOTSUP. */
START_TEST(test_fabric_log_hyperparams) {
    const char *names[] = { "lr", "optimizer" }, *strs[] = { NULL, "adamw" };
    double nums[] = { 0.001, 0 };
    bool isnum[] = { true, false };
    wf_logger *ls[2] = { wf_csv_logger_new(root, &(wf_logger_opts){ .name = "hp" }),
                         wf_tensorboard_logger_new(root, &(wf_logger_opts){ .name = "hp_tb" }) };
    ck_assert_ptr_nonnull(ls[0]);
    ck_assert_ptr_nonnull(ls[1]);
    wf_fabric *f = wf_fabric_new(&(wf_fabric_config){ .loggers = ls, .n_loggers = 2, .quiet = true });
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(wf_fabric_log_hyperparams(f, names, strs, nums, isnum, 2), 0);
    ck_assert_int_eq(wf_fabric_log_hyperparams(f, (const char *[]){ "" }, NULL, nums, isnum, 1), WF_EINVAL);
    ck_assert_int_eq(wf_fabric_log_hyperparams(f, names, strs, nums, isnum, -1), WF_EINVAL);
    ck_assert_int_eq(wf_fabric_log_hyperparams(NULL, names, strs, nums, isnum, 2), WF_ENULL);
    wf_fabric_free(f);
    wf_logger *csv = wf_csv_logger_new(root, &(wf_logger_opts){ .name = "hp" });
    f = wf_fabric_new(&(wf_fabric_config){ .loggers = &csv, .n_loggers = 1, .quiet = true });
    ck_assert_int_eq(wf_fabric_log_hyperparams(f, names, strs, nums, isnum, 2), WF_ENOTSUP);
    ck_assert_error(WF_ENOTSUP, "CSVLogger");
    wf_fabric_free(f);
    f = wf_fabric_new(&(wf_fabric_config){ .quiet = true });   /* no loggers: nothing to do */
    ck_assert_int_eq(wf_fabric_log_hyperparams(f, names, strs, nums, isnum, 2), 0);
    wf_fabric_free(f);
}
END_TEST

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-tb")) {
        /* used by check_tensorboard.py: a known event file under argv[2] */
        wf_logger *l = wf_tensorboard_logger_new(argv[2], &(wf_logger_opts){ .name = "tb" });
        if (!l) { fprintf(stderr, "%s\n", wf_error_message()); return 1; }
        for (int s = 0; s < 20; s++) {
            double v[2] = { 1.0 / (s + 1), 0.05 * s };
            if (wf_logger_log_metrics(l, (const char *[]){ "train/loss", "train/acc" }, v, 2, 10 * s)) return 1;
        }
        if (wf_logger_log_hyperparams(l, (const char *[]){ "lr", "batch_size", "optimizer" },
                                      (const char *[]){ NULL, NULL, "adamw" }, (double[]){ 0.001, 64, 0 },
                                      (bool[]){ true, true, false }, 3)) return 1;
        printf("%s\n", wf_logger_log_dir(l));
        wf_logger_free(l);
        return 0;
    }
    snprintf(root, sizeof root, "/tmp/weft-logs-XXXXXX");
    if (!mkdtemp(root)) return 1;
    Suite *s = suite_create("fabric_loggers");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_csv_layout);
    tcase_add_test(tc, test_tensorboard_framing);
    tcase_add_test(tc, test_fabric_log_hyperparams);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
