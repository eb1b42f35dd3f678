/* tests/api/test_example_flags.c: every example refuses a malformed numeric flag.
 *
 * atoi-style parsing once made `fashion_mnist --epochs x` train 5 epochs. Each example binary
 * (given on the command line) must, for each malformed value, print an error and its usage
 * and exit with status 2 before it reads any data or starts training. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int g_argc;
static char **g_argv;

/* Run bin with args (stdout and stderr together); returns the exit status, fills out. */
static int run(const char *bin, const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s --data /nonexistent-weft-data 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_malformed_numbers_exit_2) {
    /* flags every example has, and the values no strict parser accepts */
    static const char *flags[] = { "--batch", "--lr", "--seed" };
    static const char *values[] = { "x", "3x", "''", "' 5'", "1e", "99999999999999999999999", "-1", "nan" };
    static char out[65536];
    for (int b = 1; b < g_argc; b++) {
        for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
            for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                if (!strcmp(flags[f], "--lr") && values[v][0] == '9') continue;   /* 1e23 is a number */
                char args[128];
                snprintf(args, sizeof args, "%s %s", flags[f], values[v]);
                int st = run(g_argv[b], args, out, sizeof out);
                ck_assert_msg(st == 2, "%s %s: exit %d, expected 2:\n%.400s", g_argv[b], args, st, out);
                ck_assert_msg(strstr(out, "usage:"), "%s %s: no usage printed:\n%.400s", g_argv[b], args, out);
            }
        }
    }
}
END_TEST

START_TEST(test_epochs_x_is_refused) {
    static char out[65536];
    for (int b = 1; b < g_argc; b++) {
        if (!strstr(g_argv[b], "mnist") && !strstr(g_argv[b], "softmax_regression")) continue;
        int st = run(g_argv[b], "--epochs x", out, sizeof out);
        ck_assert_msg(st == 2, "%s --epochs x: exit %d:\n%.400s", g_argv[b], st, out);
        ck_assert_msg(strstr(out, "--epochs"), "%s: the error does not name --epochs:\n%.400s", g_argv[b], out);
    }
}
END_TEST

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    if (argc < 2) { fprintf(stderr, "usage: %s EXAMPLE_BINARY...\n", argv[0]); return 2; }
    Suite *s = suite_create("example_flags");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_malformed_numbers_exit_2);
    tcase_add_test(tc, test_epochs_x_is_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
