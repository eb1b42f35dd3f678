/* tests/fuzz/replay_main.c: a plain-C stand-in for libFuzzer's driver, so that the committed
 * corpus of a fuzz target runs in the ordinary test suite (gcc, with or without ASan+UBSan).
 *
 *     fuzz_replay_json DIR_OR_FILE...
 *
 * Every file of every folder (sorted by name, not recursing) is read into a buffer of exactly
 * its size (so a sanitizer sees any read past the end) and handed to LLVMFuzzerTestOneInput.
 * A crash, a sanitizer report or a leak fails the test through the sanitizer or the signal;
 * an empty or missing corpus fails too, so that a broken path cannot pass unnoticed. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* optional, as in libFuzzer */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "replay: cannot open %s\n", path); return -1; }
    if (fseek(fp, 0, SEEK_END)) { fclose(fp); return -1; }
    long n = ftell(fp);
    rewind(fp);
    if (n < 0) { fclose(fp); return -1; }
    /* at least one byte so that an empty input is a valid pointer ASan can still check */
    uint8_t *buf = malloc(n ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "replay: cannot open folder %s\n", dir); return -1; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) { closedir(d); return -1; }
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!stat(path, &st) && S_ISREG(st.st_mode)) {
            if (run_file(path)) rc = -1;
            else (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) { fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]); return 2; }
    int count = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) { fprintf(stderr, "replay: %s does not exist\n", argv[i]); rc = 1; continue; }
        if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : (run_file(argv[i]) ? -1 : (count++, 0))) rc = 1;
    }
    if (!count) { fprintf(stderr, "replay: no input found\n"); rc = 1; }
    printf("replayed %d input(s)%s\n", count, rc ? " (with errors)" : "");
    return rc;
}
