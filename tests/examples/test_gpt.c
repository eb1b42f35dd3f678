/* tests/examples/test_gpt.c: examples/gpt on the CPU with the tiny config, on a made-up
 * text and a made-up token file written here: the loss falls, a run stopped and resumed
 * ends with the checkpoint of the run that never stopped (every tensor bit for bit),
 * malformed flags are refused, the uint16 token path trains and samples, and
 * --always-save-checkpoint 0 keeps the best model of a run that overfits, and --gelu reaches the
 * model and its checkpoint. The gpt binary
 * is the argument (meson passes it). */
#include "test_util.h"
#include "weft/cuda.h"
#include "weft/io.h"

#include <limits.h>
#include <stdint.h>
#include <sys/wait.h>

static const char *gpt_bin;
static char dir[64];

typedef struct run_result {
    int status;
    char out[1 << 16];
    char last[4096];   /* the last non-empty line */
} run_result;

static void run(run_result *r, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", dir, gpt_bin, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    while (n > 0 && r->out[n - 1] == '\n') n--;
    size_t start = n;
    while (start > 0 && r->out[start - 1] != '\n') start--;
    snprintf(r->last, sizeof r->last, "%.*s", (int)(n - start), r->out + start);
    ck_assert_msg(!strstr(r->out, "runtime error:") && !strstr(r->out, "Sanitizer"), "%s:\n%s", args, r->out);
}

static double json_num(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    ck_assert_msg(p != NULL, "no %s in: %s", key, line);
    return strtod(p + strlen(pat), NULL);
}

/* a text with structure to learn: random words from a small list (xorshift, fixed seed) */
static void write_text(const char *name, int words) {
    static const char *w[] = { "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "barn" };
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < words; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        fprintf(f, "%s%c", w[s % 12], i % 10 == 9 ? '\n' : ' ');
    }
    fclose(f);
}

/* made-up tokens: a period-23 sequence of ids, multiples of 13 up to 286 (uint16 little endian) */
static void write_tokens(const char *name, int n, bool odd_byte) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++) {
        int id = (i * 37) % 23 * 13;
        unsigned char b[2] = { (unsigned char)(id & 0xff), (unsigned char)(id >> 8) };
        ck_assert_int_eq(fwrite(b, 1, 2, f), 2);
    }
    if (odd_byte) fputc(0, f);
    fclose(f);
}

/* --device cpu: a CUDA build on a GPU machine would pick the GPU for "auto" */
#define TINY "--config tiny --device cpu --threads 1 --batch-size 8 --eval-iters 4 --log-interval 5 "

START_TEST(test_loss_falls) {
    write_text("words.txt", 3000);
    run_result *r = malloc(sizeof *r);
    run(r, TINY "--data words.txt --max-iters 40 --eval-interval 20 --sample 40 --temperature 0.5 --top-k 5");
    ck_assert_msg(r->status == 0, "%s", r->out);
    double first = json_num(r->last, "first_val_loss"), last = json_num(r->last, "val_loss");
    /* 15 distinct characters: ln 15 = 2.7 at the start; the word list is learned quickly */
    ck_assert_msg(first > 2.4 && last < first - 0.6, "val loss %g -> %g:\n%s", first, last, r->out);
    ck_assert_msg(strstr(r->out, "iter 40: loss") && strstr(r->out, "tokens/s, mfu"), "%s", r->out);
    ck_assert_msg(strstr(r->out, "---- sample (temperature 0.5, top_k 5)"), "%s", r->out);
    ck_assert_int_eq(json_num(r->last, "iters"), 40);
    free(r);
}
END_TEST

/* the chunked loss from the hidden states (--fused-loss 1, the default) against the logits and
 * wf_cross_entropy: the same losses at the start and after training, within 1e-5; and the MLP
 * that makes its GELU again in backward (--recompute-gelu 1): the same ops, so the same
 * losses as printed */
START_TEST(test_fused_loss_matches_logits) {
    write_text("words.txt", 3000);
    run_result *r = malloc(sizeof *r);
    double v[3][3];
    for (int f = 0; f < 3; f++) {
        char args[256];
        snprintf(args, sizeof args, TINY "--data words.txt --max-iters 12 --eval-interval 6 --fused-loss %d --recompute-gelu %d",
                 f > 0, f == 2);
        run(r, args);
        ck_assert_msg(r->status == 0, "%s", r->out);
        v[f][0] = json_num(r->last, "first_val_loss"), v[f][1] = json_num(r->last, "val_loss");
        v[f][2] = json_num(r->last, "last_batch_loss");
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(fabs(v[0][i] - v[1][i]) <= 1e-5 && v[0][i] > 0.5, "loss %d: %.6f unfused, %.6f fused", i, v[0][i],
                      v[1][i]);
        ck_assert_msg(v[2][i] == v[1][i], "loss %d: %.6f with the GELU recomputed, %.6f kept", i, v[2][i], v[1][i]);
    }
    free(r);
}
END_TEST

/* every tensor of two checkpoints equal bit for bit, and the same names */
static void same_tensors(const char *a, const char *b) {
    char pa[128], pb[128];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    wf_st_file *fa = wf_st_open(pa), *fb = wf_st_open(pb);
    ck_assert_msg(fa && fb, "%s", wf_error_message());
    ck_assert_int_eq(wf_st_count(fa), wf_st_count(fb));
    int n_model = 0;
    for (int i = 0; i < wf_st_count(fa); i++) WF_SCOPE {
        const char *name = wf_st_name(fa, i);
        n_model += !strncmp(name, "model/", 6);
        wf_tensor *x = wf_st_load(fa, name), *y = wf_st_load(fb, name);
        ck_assert_msg(x && y, "%s: %s", name, wf_error_message());
        ck_assert_int_eq(wf_tensor_dtype(x), wf_tensor_dtype(y));
        ck_assert(wf_same_shape(x, y));
        size_t bytes = (size_t)wf_numel(x) * wf_dtype_size(wf_tensor_dtype(x));
        void *bx = malloc(bytes + 1), *by = malloc(bytes + 1);
        ck_assert_int_eq(wf_to_array(x, bx, wf_tensor_dtype(x)), 0);
        ck_assert_int_eq(wf_to_array(y, by, wf_tensor_dtype(y)), 0);
        ck_assert_msg(!memcmp(bx, by, bytes), "tensor %s differs", name);
        free(bx);
        free(by);
    }
    ck_assert_int_gt(n_model, 10);
    ck_assert_str_eq(wf_st_metadata(fa, "iter"), wf_st_metadata(fb, "iter"));
    wf_st_close(fa);
    wf_st_close(fb);
}

START_TEST(test_resume_bit_identical) {
    write_text("words.txt", 3000);
    run_result *r = malloc(sizeof *r);
    /* dropout, accumulation and a schedule that reaches its end: all must resume exactly */
    const char *f = TINY "--data words.txt --dropout 0.1 --grad-accum 2 --lr-decay-iters 24 --eval-interval 8 "
                    "--save-every 5 --batch-size 4";
    char args[1024];
    snprintf(args, sizeof args, "%s --out-dir full --max-iters 24", f);
    run(r, args);
    ck_assert_msg(r->status == 0, "%s", r->out);
    double full_val = json_num(r->last, "val_loss");
    snprintf(args, sizeof args, "%s --out-dir part --max-iters 13", f);
    run(r, args);
    ck_assert_msg(r->status == 0, "%s", r->out);
    snprintf(args, sizeof args, "%s --out-dir part --max-iters 24", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "resumed from part/last.ckpt at iteration 13"), "%s", r->out);
    ck_assert_msg(json_num(r->last, "val_loss") == full_val, "%s", r->out);
    same_tensors("full/last.ckpt", "part/last.ckpt");
    /* the CSV logger wrote the metrics */
    char path[128];
    snprintf(path, sizeof path, "%s/full/logs/version_0/metrics.csv", dir);
    FILE *csv = fopen(path, "r");
    ck_assert_msg(csv != NULL, "no %s", path);
    char head[512] = "";
    ck_assert_ptr_nonnull(fgets(head, sizeof head, csv));
    fclose(csv);
    ck_assert_msg(strstr(head, "device/items_per_sec") && strstr(head, "val/loss") && strstr(head, "train/loss"), "%s", head);
    free(r);
}
END_TEST

/* On CUDA with deterministic algorithms: the same resume, bit for bit, in f32 and bf16-mixed
 * (embedding's backward, attention and layer norm take their fixed-order paths). Skipped
 * without a GPU. */
START_TEST(test_resume_bit_identical_cuda) {
    if (wf_cuda_device_count() < 1) {
        printf("test_resume_bit_identical_cuda: skipped, no CUDA device\n");
        return;
    }
    write_text("words.txt", 3000);
    run_result *r = malloc(sizeof *r);
    const char *precisions[2] = { "32-true", "bf16-mixed" };
    for (int p = 0; p < 2; p++) {
        char f[512], args[1024], full[32], part[32];
        snprintf(f, sizeof f, TINY "--data words.txt --dropout 0.1 --grad-accum 2 --lr-decay-iters 24 --eval-interval 8 "
                 "--save-every 5 --batch-size 4 --device cuda --deterministic 1 --precision %s", precisions[p]);
        snprintf(full, sizeof full, "cfull%d", p);
        snprintf(part, sizeof part, "cpart%d", p);
        snprintf(args, sizeof args, "%s --out-dir %s --max-iters 24", f, full);
        run(r, args);
        ck_assert_msg(r->status == 0, "%s", r->out);
        snprintf(args, sizeof args, "%s --out-dir %s --max-iters 13", f, part);
        run(r, args);
        ck_assert_msg(r->status == 0, "%s", r->out);
        snprintf(args, sizeof args, "%s --out-dir %s --max-iters 24", f, part);
        run(r, args);
        ck_assert_msg(r->status == 0 && strstr(r->out, "at iteration 13"), "%s", r->out);
        char a[64], b[64];
        snprintf(a, sizeof a, "%s/last.ckpt", full);
        snprintf(b, sizeof b, "%s/last.ckpt", part);
        same_tensors(a, b);
    }
    free(r);
}
END_TEST

/* made-up tokens for a run that overfits: train counts 0..9 up, val counts them down (id 49 once
 * in train, so 50 classes). The model first learns which ids occur (both losses fall), then
 * train's successor rule, which is val's wrong one: the val loss rises far above its best. */
static void write_updown(void) {
    char path[128];
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, f ? "down.bin" : "up.bin");
        FILE *fp = fopen(path, "wb");
        ck_assert_ptr_nonnull(fp);
        int n = f ? 600 : 4000;
        for (int i = 0; i < n; i++) {
            int id = f ? 9 - i % 10 : i ? i % 10 : 49;
            unsigned char b[2] = { (unsigned char)id, 0 };
            ck_assert_int_eq(fwrite(b, 1, 2, fp), 2);
        }
        fclose(fp);
    }
}

static int64_t ckpt_iter(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s/last.ckpt", dir, name);
    wf_st_file *f = wf_st_open(path);
    ck_assert_msg(f != NULL, "%s: %s", path, wf_error_message());
    const char *it = wf_st_metadata(f, "iter");
    ck_assert_ptr_nonnull(it);
    int64_t v = atoll(it[0] == '"' ? it + 1 : it);
    wf_st_close(f);
    return v;
}

/* a checkpoint as an older gpt wrote it: every `from` in the header renamed in place to `to` (same
 * length, so the header keeps its size), and the header's checksum made right again (the crc32
 * of the length bytes and the header with its own 8 hex digits read as "00000000") */
static void rename_ckpt_key(const char *name, const char *from, const char *to) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s/last.ckpt", dir, name);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    uint64_t hlen = 0;
    ck_assert_int_eq(fread(&hlen, 8, 1, f), 1);   /* safetensors: little-endian header length */
    ck_assert(hlen > 0 && hlen < (1u << 24));
    char *h = malloc(hlen + 1);
    ck_assert_int_eq(fread(h, 1, hlen, f), hlen);
    h[hlen] = 0;
    int renamed = 0;   /* the entry and its line in the entries map */
    for (char *at = h; (at = strstr(at, from)) != NULL; at += strlen(to), renamed++) memcpy(at, to, strlen(to));
    ck_assert_msg(renamed > 0 && strlen(from) == strlen(to), "%s: no %s in the header", path, from);
    const char *key = "\"weft/header_crc32\":\"";
    char *hc = strstr(h, key);
    ck_assert_ptr_nonnull(hc);
    hc += strlen(key);
    memcpy(hc, "00000000", 8);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hlen >> (8 * i));
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)wf_crc32(wf_crc32(0, lenb, 8), h, hlen));
    memcpy(hc, hex, 8);
    ck_assert_int_eq(fseek(f, 8, SEEK_SET), 0);
    ck_assert_int_eq(fwrite(h, 1, hlen, f), hlen);
    fclose(f);
    free(h);
}

/* --always-save-checkpoint 0 (nanoGPT's always_save_checkpoint = False): a checkpoint at each
 * evaluation that beats every earlier one (not at step 0) and nowhere else, so last.ckpt holds
 * the best step; the JSON reports the best val loss and its step; resuming from that
 * checkpoint ends exactly where the run that never stopped ended. */
START_TEST(test_best_checkpoint) {
    write_updown();
    run_result *r = malloc(sizeof *r);
    const char *f = TINY "--data up.bin --val-data down.bin --lr 1e-2 --max-iters 30 --eval-interval 3";
    char args[1024];
    snprintf(args, sizeof args, "%s --always-save-checkpoint 0 --out-dir best", f);
    run(r, args);
    ck_assert_msg(r->status == 0, "%s", r->out);
    /* the evaluations as printed: the best (first of equals), and a save exactly where one improved */
    double best = INFINITY, val = NAN;
    long best_step = -1, saves = 0;
    for (const char *p = r->out; (p = strstr(p, "step ")) != NULL; p++) {
        long step;
        double tr, v;
        if (p != r->out && p[-1] != '\n') continue;
        if (sscanf(p, "step %ld: train loss %lf, val loss %lf", &step, &tr, &v) != 3) continue;
        char saved[96];
        snprintf(saved, sizeof saved, "\nstep %ld: val loss %.4f is the best so far: saved best/last.ckpt", step, v);
        bool improved = v < best, has = strstr(r->out, saved) != NULL;
        ck_assert_msg(has == (improved && step > 0), "step %ld (val %.4f, best %.4f): saved %d\n%s", step, v, best, has,
                      r->out);
        saves += has;
        if (improved) best = v, best_step = step;
        val = v;
    }
    ck_assert_int_ge(saves, 1);
    ck_assert_msg(best_step > 0 && best_step < 30 && val > best + 1.0, "best %.4f at %ld, last %.4f:\n%s", best, best_step,
                  val, r->out);
    ck_assert_msg(fabs(json_num(r->last, "best_val_loss") - best) < 1e-4 && json_num(r->last, "best_iter") == best_step,
                  "best %.4f at %ld: %s", best, best_step, r->last);
    ck_assert_int_eq(ckpt_iter("best"), best_step);
    double end_val = json_num(r->last, "val_loss");
    /* resumed from the best step: the same end, bit for bit as far as the JSON shows */
    char line[4096];
    snprintf(line, sizeof line, "%s", r->last);
    run(r, args);
    char resumed[128];
    snprintf(resumed, sizeof resumed, "resumed from best/last.ckpt at iteration %ld", best_step);
    ck_assert_msg(r->status == 0 && strstr(r->out, resumed), "%s", r->out);
    ck_assert_msg(json_num(r->last, "val_loss") == end_val && json_num(r->last, "best_val_loss") == json_num(line, "best_val_loss") &&
                      json_num(r->last, "best_iter") == best_step,
                  "first: %s\nresumed: %s", line, r->last);
    ck_assert_int_eq(ckpt_iter("best"), best_step);
    /* the default saves at the end, whatever the val loss did; the best is still reported */
    snprintf(args, sizeof args, "%s --out-dir every", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && !strstr(r->out, "is the best so far"), "%s", r->out);
    ck_assert_int_eq(ckpt_iter("every"), 30);
    ck_assert_msg(json_num(r->last, "best_iter") == best_step && json_num(r->last, "val_loss") == end_val, "%s", r->last);
    /* a checkpoint from before best_iter existed still resumes; its best step is unknown */
    rename_ckpt_key("every", "best_iter", "xest_iter");
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "resumed from every/last.ckpt at iteration 30") &&
                      strstr(r->last, "\"best_iter\":null"),
                  "%s", r->out);
    free(r);
}
END_TEST

/* --gelu reaches the model: the two forms train to different losses; a resumed run keeps the
 * checkpoint's form (bit for bit with the run that never stopped), refuses an explicit form that
 * disagrees, and a checkpoint from before the flag (no "gelu_tanh") resumes as erf */
START_TEST(test_gelu_flag) {
    write_text("words.txt", 3000);
    run_result *r = malloc(sizeof *r);
    /* a large lr: at the init's small pre-activations the two forms agree to ~1e-7 */
    const char *f = TINY "--data words.txt --eval-interval 2 --batch-size 4 --lr 3e-2";
    char args[1024];
    snprintf(args, sizeof args, "%s --max-iters 4", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "GELU erf"), "%s", r->out);   /* tiny's default: nanoGPT's */
    double erf_val = json_num(r->last, "val_loss");
    snprintf(args, sizeof args, "%s --max-iters 4 --gelu tanh --out-dir gfull", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "GELU tanh"), "%s", r->out);
    double tanh_val = json_num(r->last, "val_loss");
    ck_assert_msg(tanh_val != erf_val, "the same val loss %.6f with either GELU", tanh_val);
    /* stopped at 2 and resumed without the flag: the checkpoint's tanh, the same end */
    snprintf(args, sizeof args, "%s --max-iters 2 --gelu tanh --out-dir gpart", f);
    run(r, args);
    ck_assert_msg(r->status == 0, "%s", r->out);
    snprintf(args, sizeof args, "%s --max-iters 4 --out-dir gpart", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "resumed from gpart/last.ckpt at iteration 2") &&
                      strstr(r->out, "GELU tanh"),
                  "%s", r->out);
    ck_assert_msg(json_num(r->last, "val_loss") == tanh_val, "resumed %.6f, never stopped %.6f", json_num(r->last, "val_loss"),
                  tanh_val);
    same_tensors("gfull/last.ckpt", "gpart/last.ckpt");
    /* an explicit form that disagrees with the checkpoint's */
    snprintf(args, sizeof args, "%s --max-iters 6 --out-dir gpart --gelu erf", f);
    run(r, args);
    ck_assert_msg(r->status == 2 && strstr(r->out, "its model uses the tanh GELU, not --gelu erf"), "%s", r->out);
    /* a checkpoint as gpt wrote it before --gelu: erf */
    rename_ckpt_key("gpart", "gelu_tanh", "xelu_tanh");
    snprintf(args, sizeof args, "%s --max-iters 6 --out-dir gpart", f);
    run(r, args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "resumed from gpart/last.ckpt at iteration 4") && strstr(r->out, "GELU erf"),
                  "%s", r->out);
    snprintf(args, sizeof args, "%s --max-iters 8 --out-dir gpart --gelu tanh", f);
    run(r, args);   /* the erf run just saved its form: tanh disagrees now */
    ck_assert_msg(r->status == 2 && strstr(r->out, "its model uses the erf GELU, not --gelu tanh"), "%s", r->out);
    free(r);
}
END_TEST

START_TEST(test_bad_flags) {
    write_text("words.txt", 300);
    run_result *r = malloc(sizeof *r);
    static const struct { const char *args, *msg; int status; } cases[] = {
        { "--data words.txt --max-iters 1x", "invalid value '1x' for --max-iters", 2 },
        { "--data words.txt --lr -1", "invalid value '-1' for --lr", 2 },
        { "--data words.txt --dropout 1", "invalid value '1' for --dropout", 2 },
        { "--data words.txt --batch-size 0", "invalid value '0' for --batch-size", 2 },
        { "--data words.txt --bias 2", "invalid value '2' for --bias", 2 },
        { "--data words.txt --deterministic yes", "invalid value 'yes' for --deterministic", 2 },
        { "--data words.txt --logger xml", "invalid value 'xml' for --logger", 2 },
        { "--data words.txt --bogus 1", "unknown option --bogus", 2 },
        { "--data words.txt --max-iters", "--max-iters needs a value", 2 },
        { "--config huge --data words.txt", "unknown --config 'huge'", 2 },
        { "--data words.txt --n-embd 65 --n-head 2", "--n-embd 65 is not divisible by --n-head 2", 2 },
        { "--data words.txt --min-lr 0.1 --lr 0.01", "--min-lr 0.1 is above --lr 0.01", 2 },
        { "--max-iters 1", "--data FILE is required", 2 },
        { "--data missing.txt", "cannot open missing.txt", 1 },
        { "--data words.txt --block-size 400 --max-iters 1", "too few for a block of 400", 1 },
        { "--data words.txt --precision 7-bits", "7-bits", 2 },
        { "--data words.txt --fused-loss 2", "invalid value '2' for --fused-loss", 2 },
        { "--data words.txt --recompute-gelu 2", "invalid value '2' for --recompute-gelu", 2 },
        { "--data words.txt --gelu relu", "invalid value 'relu' for --gelu", 2 },
        { "--data words.txt --always-save-checkpoint 2", "invalid value '2' for --always-save-checkpoint", 2 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run(r, cases[i].args);
        ck_assert_msg(r->status == cases[i].status && strstr(r->out, cases[i].msg), "%s: exit %d\n%s", cases[i].args,
                      r->status, r->out);
    }
    free(r);
}
END_TEST

START_TEST(test_token_file) {
    write_tokens("train.bin", 4000, false);
    write_tokens("odd.bin", 10, true);
    run_result *r = malloc(sizeof *r);
    run(r, TINY "--data train.bin --max-iters 30 --eval-interval 15 --sample 6");
    ck_assert_msg(r->status == 0, "%s", r->out);
    double first = json_num(r->last, "first_val_loss"), last = json_num(r->last, "val_loss");
    /* ids up to 286 (23 distinct): 287 classes, ln 287 = 5.66; the sequence is periodic, so it is learned */
    ck_assert_msg(first > 5 && last < first - 1, "val loss %g -> %g:\n%s", first, last, r->out);
    /* the sample is token ids: the start token and 6 more */
    const char *s = strstr(r->out, "---- sample");
    ck_assert_msg(s != NULL, "%s", r->out);
    s = strchr(s, '\n') + 1;
    int ids = 0;
    for (char *end; *s != '\n' && *s; ids++) {
        long v = strtol(s, &end, 10);
        ck_assert_msg(end != s && v >= 0 && v <= 286, "%s", r->out);
        s = end;
        while (*s == ' ') s++;
    }
    ck_assert_int_eq(ids, 7);
    run(r, TINY "--data odd.bin");
    ck_assert_msg(r->status == 1 && strstr(r->out, "odd.bin: 21 bytes is not a whole number of uint16 tokens"), "%s", r->out);
    run(r, TINY "--data train.bin --vocab-size 100");
    ck_assert_msg(r->status == 1 && strstr(r->out, "holds token 286 but --vocab-size is 100"), "%s", r->out);
    /* a separate validation file */
    write_tokens("val.bin", 500, false);
    run(r, TINY "--data train.bin --val-data val.bin --max-iters 2 --eval-interval 1");
    ck_assert_msg(r->status == 0, "%s", r->out);
    free(r);
}
END_TEST

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GPT_BINARY\n", argv[0]);
        return 1;
    }
    static char bin[4096];
    if (!realpath(argv[1], bin)) {   /* the runs cd into the scratch directory */
        perror(argv[1]);
        return 1;
    }
    gpt_bin = bin;
    snprintf(dir, sizeof dir, "/tmp/weft-gpt-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    Suite *s = suite_create("examples_gpt");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 500);   /* ASan on a shared 2-core machine: minutes */
    tcase_add_test(tc, test_loss_falls);
    tcase_add_test(tc, test_resume_bit_identical);
    tcase_add_test(tc, test_fused_loss_matches_logits);
    tcase_add_test(tc, test_resume_bit_identical_cuda);
    tcase_add_test(tc, test_bad_flags);
    tcase_add_test(tc, test_token_file);
    tcase_add_test(tc, test_best_checkpoint);
    tcase_add_test(tc, test_gelu_flag);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) { /* best effort */ }
    return rc;
}
