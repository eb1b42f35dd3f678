/* tests/dist/test_trace.c: the WF_TRACE timeline (dist/trace.c) in one process: spans on the
 * three lanes written as Chrome trace-event JSON that weft's own JSON reader parses, metadata
 * (process "rank 0", the lanes' names), escaping of odd names, the event cap, disabled mode
 * writing nothing, unwritable paths as WF_EIO naming the path, collectives on the comm lane
 * and a single-device Fabric's forward/backward/optimizer_step.
 * argv[1] (optional, builds with MPI): tests/dist/trace_prog; then a 2-rank DDP run through
 * wf_fabric_launch must write one valid file per rank with the training spans and its
 * all_reduce spans. */
#include "test_util.h"

#include "dist/dist_impl.h"
#include "dist/trace.h"
#include "io/json.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *trace_prog;
static char dir[256];

/* dir is set once in main (the parent's pid), so forked test cases share it */
static void fresh_dir(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int count_files(void) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Parse a trace file with weft's JSON reader (fails the test when it is not valid JSON). */
static wf_json *load(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "no trace file %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_lt(n, sizeof buf);
    wf_json *j = NULL;
    char err[256];
    ck_assert_msg(wf__json_parse(buf, n, 0, &j, err, sizeof err) == 0, "%s is not valid JSON: %s", path, err);
    ck_assert_int_eq(j->type, WF_JSON_OBJECT);
    const wf_json *du = wf__json_get(j, "displayTimeUnit");
    ck_assert_str_eq(wf__json_str(du), "ms");
    ck_assert_int_eq(wf__json_get(j, "traceEvents")->type, WF_JSON_ARRAY);
    return j;
}

static int64_t int_of(const wf_json *o, const char *key) {
    int64_t v = -999;
    ck_assert_msg(wf__json_int(wf__json_get(o, key), &v), "no integer \"%s\"", key);
    return v;
}

static double num_of(const wf_json *o, const char *key) {
    const wf_json *v = wf__json_get(o, key);
    ck_assert_msg(v && v->type == WF_JSON_NUMBER, "no number \"%s\"", key);
    return v->number;
}

/* the i-th "X" event named name (NULL when fewer) */
static const wf_json *span(const wf_json *j, const char *name, int i) {
    const wf_json *ev = wf__json_get(j, "traceEvents");
    for (size_t k = 0; k < ev->n; k++) {
        const wf_json *e = wf__json_at(ev, k);
        const char *ph = wf__json_str(wf__json_get(e, "ph"));
        if (ph && !strcmp(ph, "X") && !strcmp(wf__json_str(wf__json_get(e, "name")), name) && i-- == 0) return e;
    }
    return NULL;
}

static int count_spans(const wf_json *j, const char *name) {
    int n = 0;
    while (span(j, name, n)) n++;
    return n;
}

/* the metadata: process "rank r", the three lanes named on tids 0..2 of pid r */
static void check_metadata(const wf_json *j, int rank, int world) {
    const wf_json *ev = wf__json_get(j, "traceEvents");
    static const char *const lanes[] = {"host", "compute stream", "communication"};
    bool proc = false, lane[3] = {false, false, false};
    char want[32];
    snprintf(want, sizeof want, "rank %d", rank);
    for (size_t k = 0; k < ev->n; k++) {
        const wf_json *e = wf__json_at(ev, k);
        ck_assert_int_eq(int_of(e, "pid"), rank);
        if (strcmp(wf__json_str(wf__json_get(e, "ph")), "M")) continue;
        const char *nm = wf__json_str(wf__json_get(e, "name"));
        const char *arg = wf__json_str(wf__json_get(wf__json_get(e, "args"), "name"));
        if (!strcmp(nm, "process_name")) proc = !strcmp(arg, want);
        if (!strcmp(nm, "thread_name")) {
            int64_t tid = int_of(e, "tid");
            ck_assert(tid >= 0 && tid < 3);
            ck_assert_str_eq(arg, lanes[tid]);
            lane[tid] = true;
        }
    }
    ck_assert_msg(proc, "no process_name \"%s\"", want);
    ck_assert(lane[0] && lane[1] && lane[2]);
    const wf_json *od = wf__json_get(j, "otherData");
    ck_assert_int_eq(int_of(od, "rank"), rank);
    ck_assert_int_eq(int_of(od, "world_size"), world);
}

static void path_of(char *out, size_t n, int rank) { snprintf(out, n, "%s/t.rank%d.json", dir, rank); }

static void start_here(void) {
    fresh_dir();
    char base[300];
    snprintf(base, sizeof base, "%s/t", dir);
    ck_assert_int_eq(wf__trace_set_path(base), 0);
    ck_assert(wf__trace_enabled());
    ck_assert_int_eq(wf__trace_start(0, 1), 0);
    ck_assert(wf__trace_recording());
}

START_TEST(test_spans_written) {
    start_here();
    char p[300];
    path_of(p, sizeof p, 0);
    /* started: the file already holds a valid, empty, incomplete trace */
    wf_json *j = load(p);
    ck_assert(!wf__json_get(wf__json_get(j, "otherData"), "complete")->boolean);
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_start(0, 1), 0);   /* idempotent */
    double t0 = wf__trace_now_us();
    ck_assert(t0 >= 0 && t0 < 10e6);
    wf__trace_span(WF_TRACE_HOST, "forward", "fabric", 1.5, 2.25, NULL);
    wf__trace_span(WF_TRACE_COMPUTE, "kernel", "cuda", 3, 0.001, "\"n\":1");
    wf__trace_span(WF_TRACE_COMM, "all_reduce", "comm", 4, 5, "\"bucket\":3,\"bytes\":4096");
    wf__trace_span(WF_TRACE_HOST, "negative", NULL, 7, -3, "");   /* dur clamped to 0, no args */
    double b = wf__trace_begin();
    ck_assert(b >= t0);
    wf__trace_end(WF_TRACE_HOST, "helper", "t", b, NULL);
    wf__trace_end(WF_TRACE_HOST, "never", "t", -1, NULL);   /* a begin taken while off */
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert(!wf__trace_recording());
    ck_assert_int_eq(wf__trace_finish(), 0);   /* twice: nothing */
    wf__trace_span(WF_TRACE_HOST, "late", "t", 1, 1, NULL);   /* after finish: ignored */

    j = load(p);
    check_metadata(j, 0, 1);
    const wf_json *od = wf__json_get(j, "otherData");
    ck_assert_int_eq(int_of(od, "events"), 5);
    ck_assert_int_eq(int_of(od, "dropped_events"), 0);
    ck_assert(wf__json_get(od, "complete")->boolean);
    const wf_json *e = span(j, "forward", 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(int_of(e, "tid"), WF_TRACE_HOST);
    ck_assert_double_eq(num_of(e, "ts"), 1.5);
    ck_assert_double_eq(num_of(e, "dur"), 2.25);
    ck_assert_str_eq(wf__json_str(wf__json_get(e, "cat")), "fabric");
    ck_assert_ptr_null(wf__json_get(e, "args"));
    e = span(j, "kernel", 0);
    ck_assert_int_eq(int_of(e, "tid"), WF_TRACE_COMPUTE);
    ck_assert_double_eq(num_of(e, "dur"), 0.001);
    e = span(j, "all_reduce", 0);
    ck_assert_int_eq(int_of(e, "tid"), WF_TRACE_COMM);
    ck_assert_int_eq(int_of(wf__json_get(e, "args"), "bucket"), 3);
    ck_assert_int_eq(int_of(wf__json_get(e, "args"), "bytes"), 4096);
    e = span(j, "negative", 0);
    ck_assert_double_eq(num_of(e, "dur"), 0);
    ck_assert_str_eq(wf__json_str(wf__json_get(e, "cat")), "weft");
    ck_assert_ptr_null(wf__json_get(e, "args"));
    ck_assert_ptr_nonnull(span(j, "helper", 0));
    ck_assert_ptr_null(span(j, "never", 0));
    ck_assert_ptr_null(span(j, "late", 0));
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

START_TEST(test_escaping) {
    start_here();
    const char *odd = "a\"b\\c\nd\te\x01/\xc3\xa9";
    wf__trace_span(WF_TRACE_HOST, odd, "q\"uote", 0, 1, NULL);
    wf__trace_span(WF_TRACE_HOST, "bad\xff\xfeutf8", "c", 0, 1, NULL);
    wf__trace_span(WF_TRACE_HOST, NULL, NULL, 0, 1, NULL);
    wf__trace_span((wf_trace_lane)7, "lane7", "c", 0, 1, NULL);   /* an unknown lane reads as host */
    ck_assert_int_eq(wf__trace_finish(), 0);
    char p[300];
    path_of(p, sizeof p, 0);
    wf_json *j = load(p);
    const wf_json *e = span(j, odd, 0);
    ck_assert_msg(e != NULL, "the odd name did not round-trip");
    ck_assert_str_eq(wf__json_str(wf__json_get(e, "cat")), "q\"uote");
    ck_assert_ptr_nonnull(span(j, "bad??utf8", 0));
    ck_assert_ptr_nonnull(span(j, "?", 0));
    ck_assert_int_eq(int_of(span(j, "lane7", 0), "tid"), WF_TRACE_HOST);
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

START_TEST(test_event_cap) {
    ck_assert_int_eq(wf__trace_set_limit(3), 0);
    start_here();
    ck_assert_int_eq(wf__trace_set_limit(10), WF_ESTATE);   /* not while recording */
    ck_assert_error(WF_ESTATE, "being recorded");
    ck_assert_int_eq(wf__trace_set_path("/tmp/x"), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "finish it first");
    for (int i = 0; i < 5; i++) wf__trace_span(WF_TRACE_HOST, "s", "c", i, 1, NULL);
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert_int_eq(wf__trace_set_limit(0), 0);
    char p[300];
    path_of(p, sizeof p, 0);
    wf_json *j = load(p);
    ck_assert_int_eq(count_spans(j, "s"), 3);
    const wf_json *od = wf__json_get(j, "otherData");
    ck_assert_int_eq(int_of(od, "events"), 3);
    ck_assert_int_eq(int_of(od, "dropped_events"), 2);
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

START_TEST(test_disabled_writes_nothing) {
    fresh_dir();
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
    ck_assert(!wf__trace_enabled());
    ck_assert_int_eq(wf__trace_start(0, 1), 0);
    ck_assert(!wf__trace_recording());
    ck_assert(wf__trace_begin() < 0);
    wf__trace_span(WF_TRACE_HOST, "x", "c", 0, 1, NULL);
    wf__trace_tag_next_collective("\"bucket\":1");
    ck_assert_int_eq(wf__trace_finish(), 0);
    /* a Fabric of one process with tracing off writes nothing either */
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    ck_assert_msg(fab != NULL, "%s", wf_error_message());
    wf_fabric_free(fab);
    ck_assert_int_eq(count_files(), 0);
    /* a path set but never started: nothing recorded or written */
    char base[300];
    snprintf(base, sizeof base, "%s/t", dir);
    ck_assert_int_eq(wf__trace_set_path(base), 0);
    wf__trace_span(WF_TRACE_HOST, "x", "c", 0, 1, NULL);
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert_int_eq(count_files(), 0);
    ck_assert_int_eq(wf__trace_set_path(""), 0);   /* "" is off */
    ck_assert(!wf__trace_enabled());
}
END_TEST

START_TEST(test_bad_inputs) {
    fresh_dir();
    ck_assert_int_eq(wf__trace_set_path("/nonexistent_weft_dir/sub/t"), 0);
    ck_assert_int_eq(wf__trace_start(0, 1), WF_EIO);
    ck_assert_error(WF_EIO, "/nonexistent_weft_dir/sub/t.rank0.json");
    ck_assert(!wf__trace_recording());
    ck_assert_int_eq(wf__trace_finish(), 0);   /* nothing open */
    /* the strategies' form warns and goes on */
    wf__trace_start_or_warn(0, 1);
    ck_assert_int_eq(wf_error(), 0);
    ck_assert(!wf__trace_recording());

    char base[300];
    snprintf(base, sizeof base, "%s/t", dir);
    ck_assert_int_eq(wf__trace_set_path(base), 0);
    ck_assert_int_eq(wf__trace_start(2, 2), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "rank 2 of world size 2");
    ck_assert_int_eq(wf__trace_start(0, 0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "out of range");
    ck_assert_int_eq(wf__trace_start(-1, 2), WF_EINVAL);
    wf_clear_error();

    /* the directory vanishes during the run: finish fails with WF_EIO naming the path,
     * frees the buffer, and a second finish has nothing left to do */
    snprintf(base, sizeof base, "%s/sub", dir);
    mkdir(base, 0700);
    char b2[320];
    snprintf(b2, sizeof b2, "%s/t", base);
    ck_assert_int_eq(wf__trace_set_path(b2), 0);
    ck_assert_int_eq(wf__trace_start(1, 2), 0);
    wf__trace_span(WF_TRACE_HOST, "x", "c", 0, 1, NULL);
    char f[400];
    snprintf(f, sizeof f, "%s.rank1.json", b2);
    ck_assert_int_eq(unlink(f), 0);
    ck_assert_int_eq(rmdir(base), 0);
    ck_assert_int_eq(wf__trace_finish(), WF_EIO);
    ck_assert_error(WF_EIO, f);
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert(!wf__trace_recording());
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

START_TEST(test_collectives_on_comm_lane) {
    wf_process_group *pg = wf_dist_init(&(wf_dist_options){ .backend = "local" });
    ck_assert_msg(pg != NULL, "%s", wf_error_message());
    start_here();
    wf_tensor *t = wf_ones(WF_SHAPE(16), WF_F32);
    ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), 0);
    wf__trace_tag_next_collective("\"bucket\":5");
    wf_work *w = NULL;
    ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_AVG, &w), 0);
    ck_assert_int_eq(wf_work_wait(w), 0);
    wf_work_free(w);
    ck_assert_int_eq(wf_dist_broadcast(pg, t, 0, NULL), 0);
    ck_assert_int_eq(wf_dist_all_reduce(pg, t, (wf_dist_reduce_op)99, NULL), WF_EINVAL);   /* refused: no span */
    wf_clear_error();
    ck_assert_int_eq(wf__trace_finish(), 0);
    ck_assert_int_eq(wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL), 0);   /* after finish: not recorded */
    wf_tensor_free(t);
    wf_process_group_free(pg);

    char p[300];
    path_of(p, sizeof p, 0);
    wf_json *j = load(p);
    ck_assert_int_eq(count_spans(j, "all_reduce"), 2);
    ck_assert_int_eq(count_spans(j, "broadcast"), 1);
    const wf_json *e = span(j, "all_reduce", 0), *a = wf__json_get(e, "args");
    ck_assert_int_eq(int_of(e, "tid"), WF_TRACE_COMM);
    ck_assert_str_eq(wf__json_str(wf__json_get(e, "cat")), "comm");
    ck_assert_int_eq(int_of(a, "bytes"), 64);
    ck_assert_str_eq(wf__json_str(wf__json_get(a, "dtype")), wf_dtype_name(WF_F32));
    ck_assert(!wf__json_get(a, "async")->boolean);
    ck_assert_ptr_null(wf__json_get(a, "bucket"));
    int64_t seq0 = int_of(a, "seq");
    e = span(j, "all_reduce", 1);
    a = wf__json_get(e, "args");
    ck_assert_int_eq(int_of(a, "seq"), seq0 + 1);
    ck_assert(wf__json_get(a, "async")->boolean);
    ck_assert_int_eq(int_of(a, "bucket"), 5);
    ck_assert(num_of(e, "ts") >= 0 && num_of(e, "dur") >= 0);
    ck_assert_ptr_null(wf__json_get(wf__json_get(span(j, "broadcast", 0), "args"), "bucket"));   /* tag consumed */
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

START_TEST(test_fabric_single_device) {
    fresh_dir();
    char base[300];
    snprintf(base, sizeof base, "%s/t", dir);
    ck_assert_int_eq(wf__trace_set_path(base), 0);
    wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "cpu", .quiet = true });
    ck_assert_msg(fab != NULL, "%s", wf_error_message());
    ck_assert(wf__trace_recording());   /* one process: time zero at wf_fabric_new */
    wf_module *m = wf_linear_new(3, 2, true);
    wf_tensor *p[2];
    ck_assert_int_eq(wf_module_parameters(m, p, NULL, 2), 2);
    wf_optimizer *opt = wf_sgd_new(p, 2, &(wf_sgd_opts){ .lr = 0.1 });
    ck_assert_int_eq(wf_fabric_setup(fab, m, &opt, 1, NULL), 0);
    for (int s = 0; s < 2; s++) {
        WF_SCOPE {
            wf_optimizer_zero_grad(opt, true);
            wf_tensor *loss = wf_sum_all(wf_module_forward(m, wf_ones(WF_SHAPE(4, 3), WF_F32)));
            ck_assert_int_eq(wf_fabric_backward(fab, loss, m), 0);
            ck_assert_int_eq(wf_fabric_step(fab, opt, NULL), 0);
        }
    }
    wf_fabric_free(fab);   /* writes the file */
    ck_assert(!wf__trace_recording());
    wf_optimizer_free(opt);
    wf_module_free(m);
    char path[300];
    path_of(path, sizeof path, 0);
    wf_json *j = load(path);
    check_metadata(j, 0, 1);
    ck_assert_int_eq(count_spans(j, "forward"), 2);
    ck_assert_int_eq(count_spans(j, "backward"), 2);
    ck_assert_int_eq(count_spans(j, "optimizer_step"), 2);
    for (int s = 0; s < 2; s++) {
        const wf_json *f = span(j, "forward", s), *b = span(j, "backward", s), *o = span(j, "optimizer_step", s);
        ck_assert_int_eq(int_of(f, "tid"), WF_TRACE_HOST);
        ck_assert_int_eq(int_of(b, "tid"), WF_TRACE_HOST);
        ck_assert_int_eq(int_of(o, "tid"), WF_TRACE_HOST);
        ck_assert(num_of(f, "ts") >= 0);
        ck_assert(num_of(f, "ts") + num_of(f, "dur") <= num_of(b, "ts") + 0.01);   /* in order */
        ck_assert(num_of(b, "ts") + num_of(b, "dur") <= num_of(o, "ts") + 0.01);
    }
    wf__json_free(j);
    ck_assert_int_eq(wf__trace_set_path(NULL), 0);
}
END_TEST

/* Run trace_prog (2 ranks through wf_fabric_launch) with WF_TRACE=DIR/t; bounded to 90 s. */
START_TEST(test_ddp_two_ranks) {
    fresh_dir();
    char base[300], errpath[320];
    snprintf(base, sizeof base, "%s/t", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *e = freopen(errpath, "w", stderr);
        (void)e;
        setenv("WF_TRACE", base, 1);
        unsetenv("WF_CLI_USED");
        execl(trace_prog, trace_prog, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    bool done = false;
    for (int i = 0; i < 900 && !done; i++) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        if (!done) nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
    }
    if (!done) { kill(pid, SIGKILL); waitpid(pid, &st, 0); }
    ck_assert_msg(done, "trace_prog did not finish within 90 s");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "trace_prog failed (see %s)", errpath);
    ck_assert_int_eq(count_files(), 3);   /* two ranks' files and stderr: the launcher writes none */
    double fwd0[2];
    for (int r = 0; r < 2; r++) {
        char p[300];
        path_of(p, sizeof p, r);
        wf_json *j = load(p);
        check_metadata(j, r, 2);
        ck_assert(wf__json_get(wf__json_get(j, "otherData"), "complete")->boolean);
        ck_assert_int_eq(count_spans(j, "forward"), 3);
        ck_assert_int_eq(count_spans(j, "backward"), 3);
        ck_assert_int_eq(count_spans(j, "optimizer_step"), 3);
        int n_ar = count_spans(j, "all_reduce");
        ck_assert_int_ge(n_ar, 3);   /* the gradients' all_reduce in every step */
        for (int k = 0; k < n_ar; k++) {
            const wf_json *e = span(j, "all_reduce", k);
            ck_assert_int_eq(int_of(e, "tid"), WF_TRACE_COMM);
            ck_assert_int_eq(int_of(e, "pid"), r);
            ck_assert_int_ge(int_of(wf__json_get(e, "args"), "bytes"), 4);
        }
        /* the gradients' all_reduce runs inside backward (the span covers it) */
        const wf_json *b = span(j, "backward", 2);
        bool inside = false;
        for (int k = 0; k < n_ar && !inside; k++) {
            const wf_json *e = span(j, "all_reduce", k);
            inside = num_of(e, "ts") >= num_of(b, "ts") && num_of(e, "ts") <= num_of(b, "ts") + num_of(b, "dur");
        }
        ck_assert_msg(inside, "rank %d: no all_reduce within the last backward", r);
        fwd0[r] = num_of(span(j, "forward", 0), "ts");
        ck_assert(fwd0[r] >= 0);
        wf__json_free(j);
    }
}
END_TEST

int main(int argc, char **argv) {
    trace_prog = argc > 1 ? argv[1] : NULL;
    snprintf(dir, sizeof dir, "/tmp/weft_trace_test_%d", (int)getpid());
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("trace");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_spans_written);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_event_cap);
    tcase_add_test(tc, test_disabled_writes_nothing);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_collectives_on_comm_lane);
    tcase_add_test(tc, test_fabric_single_device);
    if (trace_prog) tcase_add_test(tc, test_ddp_two_ranks);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
