/* bench/bench_memory.c: peak resident memory of a one-epoch Fashion-MNIST run (the MLP or
 * the CNN of bench_models.h), trained as examples/fashion_mnist.c does: both splits loaded
 * from Debian's .gz files, shuffled batches of 64 through a DataLoader, Adam (lr 1e-3), one
 * epoch with the example's cosine schedule, then test accuracy (batches of 1000). The test split
 * is loaded once training is over and the train split freed. The PyTorch peer is bench/peer_memory.py; bench/memory_run.sh
 * runs both for both models and prints them side by side.
 *
 *   bench_memory --model mlp|cnn [--data DIR] [--workers 1] [--steps N (0 = the epoch)] [--smaps 1]
 * Prints the peak RSS (getrusage ru_maxrss) after each phase (with --smaps 1, what each
 * mapping holds then), and as its last line
 * {"impl":"weft","model":"mlp","peak_rss_mb":...,"load_s":...,"train_s":...,"test_acc":...} */
#include "bench_models.h"
#include "weft/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* Linux: kilobytes */
}

static double current_mb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * 4096.0 / (1024.0 * 1024.0);
}

/* --smaps: where the resident memory is, per mapping, from /proc/self/smaps: file mappings
 * by library name, anonymous ones by size (the heap, the big tensors' own mmaps, thread
 * stacks and OpenBLAS's buffers are told apart by their sizes). Mappings under 64 kB
 * resident are summed into one line. */
static bool show_smaps;

static void print_smaps(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return;
    char line[512], name[256] = "";
    unsigned long lo = 0, hi = 0;
    double small_kb = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        long kb;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &a, &b, &off) == 2 && off > 0) {
            lo = a, hi = b;
            snprintf(name, sizeof name, "%s", line + off);
            name[strcspn(name, "\n")] = 0;
            if (!name[0]) snprintf(name, sizeof name, "[anon]");
        } else if (sscanf(line, "Rss: %ld kB", &kb) == 1) {
            const char *base = strrchr(name, '/');
            if (kb < 64) small_kb += (double)kb;
            else fprintf(stderr, "      %8ld kB resident of %9lu kB  %s\n", kb, (hi - lo) / 1024,
                         base ? base + 1 : name);
        }
    }
    fprintf(stderr, "      %8.0f kB in mappings under 64 kB resident each\n", small_kb);
    fclose(f);
}

static void phase(const char *name) {
    fprintf(stderr, "  %-22s peak %7.1f MiB   now %7.1f MiB\n", name, peak_mb(), current_mb());
    if (show_smaps) print_smaps();
}

int main(int argc, char **argv) {
    const char *model = "mlp", *data = NULL;
    int workers = 1;
    int64_t max_steps = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) max_steps = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--smaps")) show_smaps = atoi(argv[i + 1]) != 0;
    }
    bool cnn = !strcmp(model, "cnn");
    phase("start");
    wf_manual_seed(0);
    double t0 = bench_now();
    /* The test split is loaded after training and the train split freed before it: the two
     * are never resident together, nor the train split and the test pass (74.3 -> 60.0 MB at
     * the peak, with tensor/alloc.c handing the freed split back; peer_memory.py does the same) */
    wf_dataset train, test;
    if (wf_fashion_mnist(data, true, 0.2860, 0.3530, &train)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    double load_s = bench_now() - t0;
    phase("train split loaded");
    wf_dataloader *tr = wf_dataloader_new(&train, &(wf_dataloader_opts){ .batch_size = 64, .shuffle = true,
                                                                       .seed = 1, .num_workers = workers });
    wf_module *m = bench_make_model(cnn);
    wf_tensor *params[32];
    int np = m ? wf_module_parameters(m, params, NULL, 32) : 0;
    wf_optimizer *opt = np ? wf_adam_new(params, np, &(wf_adam_opts){ .lr = 1e-3 }) : NULL;
    /* the example's schedule: cosine to zero over the epoch, stepped per batch */
    wf_lr_scheduler *sched = opt ? wf_cosine_annealing_lr_new(opt, (int)wf_dataloader_len(tr), 0.0) : NULL;
    if (!tr || !opt || !sched) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    t0 = bench_now();
    wf_tensor *b[2];
    int64_t steps = 0;
    for (;;) {
        wf_scope_begin();
        int rc = wf_dataloader_next(tr, b);
        if (rc == 1) {
            wf_tensor *loss = wf_cross_entropy(wf_module_forward(m, b[0]), b[1], NULL);
            wf_optimizer_zero_grad(opt, true);
            if (!loss || wf_backward(loss, NULL, false) || wf_optimizer_step(opt) || wf_lr_scheduler_step(sched)) rc = -1;
        }
        wf_scope_end();
        if (rc < 0) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
        if (rc == 0) break;
        if (++steps == 1) phase("first step");
        if (max_steps && steps >= max_steps) break;
    }
    double train_s = bench_now() - t0;
    phase("epoch trained");
    wf_dataloader_free(tr);   /* and with it the train split */
    t0 = bench_now();
    if (wf_fashion_mnist(data, false, 0.2860, 0.3530, &test)) {
        fprintf(stderr, "error: %s\n", wf_error_message());
        return 1;
    }
    load_s += bench_now() - t0;
    wf_dataloader *te = wf_dataloader_new(&test, &(wf_dataloader_opts){ .batch_size = 1000 });   /* as the example */
    if (!te) { fprintf(stderr, "error: %s\n", wf_error_message()); return 1; }
    phase("test split loaded");
    int64_t correct = 0, total = 0;
    wf_module_train(m, false);
    WF_NO_GRAD {
        for (;;) {
            wf_scope_begin();
            int rc = wf_dataloader_next(te, b);
            if (rc == 1) {
                wf_tensor *pred = wf_argmax(wf_module_forward(m, b[0]), 1, false);
                correct += (int64_t)wf_item(wf_sum_all(wf_eq(pred, b[1])));
                total += wf_size(b[1], 0);
            }
            wf_scope_end();
            if (rc != 1) break;
        }
    }
    phase("test evaluated");
    printf("{\"impl\":\"weft\",\"model\":\"%s\",\"peak_rss_mb\":%.1f,\"load_s\":%.3f,\"train_s\":%.2f,\"steps\":%lld,"
           "\"test_acc\":%.4f}\n", model, peak_mb() * 1.048576, load_s, train_s, (long long)steps,
           total ? (double)correct / (double)total : 0.0);
    wf_dataloader_free(te);
    wf_lr_scheduler_free(sched);
    wf_optimizer_free(opt);
    wf_module_free(m);
    return 0;
}
