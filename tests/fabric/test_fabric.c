/* tests/fabric/test_fabric.c: the Fabric object: connector rules and errors, environment
 * overrides, precision selection, setup, the training-step methods, collectives of one,
 * callbacks. */
#include "test_util.h"
#include "weft/fabric.h"
#include "fabric/fabric_impl.h"   /* force_backward_check */

#include <stdio.h>
#include <unistd.h>

static void clear_env(void) {
    const char *v[] = { "WF_ACCELERATOR", "WF_STRATEGY", "WF_DEVICES", "WF_NUM_NODES", "WF_PRECISION", "WF_CLI_USED" };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) unsetenv(v[i]);
}

static wf_fabric *mk(wf_fabric_config c) {
    c.quiet = true;
    return wf_fabric_new(&c);
}

static wf_module *mlp(void) {
    return wf_sequential_new(3, wf_linear_new(4, 8, true), wf_relu_new(), wf_linear_new(8, 3, true));
}

static wf_optimizer *adam_of(wf_module *m) {
    wf_tensor *p[16];
    int n = wf_module_parameters(m, p, NULL, 16);
    return wf_adam_new(p, n, &(wf_adam_opts){ .lr = 1e-2 });
}

/* ---------------------------------------------------------------- plugins */

typedef struct io_counts { int saves, loads; char last[512]; } io_counts;
static int counting_save(const wf_checkpoint_io *io, wf_st_writer *w, const char *path) {
    io_counts *c = io->ud;
    c->saves++;
    snprintf(c->last, sizeof c->last, "%s", path);
    return wf_st_writer_save(w, path);
}
static wf_st_file *counting_load(const wf_checkpoint_io *io, const char *path) {
    ((io_counts *)io->ud)->loads++;
    return wf_st_open(path);
}
static int refusing_save(const wf_checkpoint_io *io, wf_st_writer *w, const char *path) {
    (void)io; (void)w;
    return wf__error(WF_EIO, "refusing_save: no storage for %s", path);
}

static int rank1_of_2(const wf_cluster_env *env, wf_cluster_info *out) {
    (void)env;
    out->world_size = 2; out->global_rank = 1; out->local_rank = 1; out->local_world_size = 2;
    out->num_nodes = 1; out->creates_processes_externally = true;
    snprintf(out->main_address, sizeof out->main_address, "127.0.0.1");
    return 0;
}
static int bad_env(const wf_cluster_env *env, wf_cluster_info *out) {
    (void)env;
    out->world_size = 2; out->global_rank = 5;
    return 0;
}

START_TEST(test_plugins) {
    clear_env();
    /* checkpoint IO: save and load go through the plugin */
    io_counts cnt = { 0 };
    wf_checkpoint_io io = { .name = "counting", .save = counting_save, .load = counting_load, .ud = &cnt };
    wf_fabric *f = mk((wf_fabric_config){ .plugins.checkpoint_io = &io });
    ck_assert_msg(f, "%s", wf_error_message());
    wf_module *m = mlp();
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    char path[256];
    snprintf(path, sizeof path, "/tmp/weft_test_plugin_%d.ckpt", (int)getpid());
    wf_fabric_state *st = wf_fabric_state_new();
    ck_assert_int_eq(wf_fabric_state_add_module(st, "model", m), 0);
    ck_assert_int_eq(wf_fabric_save(f, path, st, NULL), 0);
    ck_assert_int_eq(cnt.saves, 1);
    ck_assert_str_eq(cnt.last, path);
    wf_fabric_state *rest = wf_fabric_load(f, path, st, true);
    ck_assert_msg(rest, "%s", wf_error_message());
    ck_assert_int_eq(cnt.loads, 1);
    wf_fabric_state_free(rest);
    wf_fabric_free(f);
    /* a failing plugin is the save's error */
    wf_checkpoint_io refuse = { .name = "refusing", .save = refusing_save };
    f = mk((wf_fabric_config){ .plugins.checkpoint_io = &refuse });
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    ck_assert_int_eq(wf_fabric_save(f, path, st, NULL), WF_EIO);
    ck_assert_error(WF_EIO, "no storage");
    wf_fabric_free(f);
    wf_fabric_state_free(st);
    wf_module_free(m);
    unlink(path);

    /* precision: a plugin object instead of the name; both is an error */
    char warn[256];
    wf_precision *p = wf_precision_new("bf16-mixed", WF_CPU, warn, sizeof warn);
    ck_assert_ptr_nonnull(p);
    f = mk((wf_fabric_config){ .plugins.precision = p });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_precision_name(f), "bf16-mixed");
    ck_assert_ptr_eq(wf_fabric_precision(f), p);
    wf_fabric_free(f);   /* frees p */
    p = wf_precision_new("bf16-mixed", WF_CPU, warn, sizeof warn);
    ck_assert_ptr_null(mk((wf_fabric_config){ .precision = "32-true", .plugins.precision = p }));   /* frees p */
    ck_assert_error(WF_EINVAL, "choose one");

    /* cluster environment: the plugin says where this process stands */
    wf_cluster_env env = { .name = "mycluster", .fill = rank1_of_2 };
    f = mk((wf_fabric_config){ .plugins.cluster_env = &env });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_world_size(f), 2);   /* devices "auto": the environment's */
    ck_assert_int_eq(wf_fabric_global_rank(f), 1);
    ck_assert_int_eq(wf_fabric_local_rank(f), 1);
    ck_assert(!wf_fabric_is_global_zero(f));
    ck_assert_str_eq(wf_fabric_strategy_name(f), "ddp");
    wf_fabric_free(f);
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "3", .plugins.cluster_env = &env }));
    ck_assert_error(WF_EINVAL, "mycluster environment started 2");
    wf_cluster_env bad = { .name = "bad", .fill = bad_env };
    ck_assert_ptr_null(mk((wf_fabric_config){ .plugins.cluster_env = &bad }));
    ck_assert_error(WF_EINVAL, "rank 5 of world size 2");

    /* launch: under `weft run` the processes exist already */
    setenv("WF_CLI_USED", "1", 1);
    f = mk((wf_fabric_config){ 0 });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "weft run");
    wf_fabric_free(f);
    clear_env();
}
END_TEST

static int launched_fn(wf_fabric *fab, void *ud) {
    *(int *)ud = wf_fabric_world_size(fab) + 40;
    return 7;
}

START_TEST(test_launch_one_process) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    int seen = 0;
    ck_assert_int_eq(wf_fabric_launch(f, launched_fn, &seen), 7);
    ck_assert_int_eq(seen, 41);
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- connector */

START_TEST(test_defaults) {
    clear_env();
    wf_fabric *f = wf_fabric_new(NULL);
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_accelerator_name(f), "cpu");   /* no GPU here: auto -> cpu */
    ck_assert_str_eq(wf_fabric_strategy_name(f), "single_device");
    ck_assert_str_eq(wf_fabric_precision_name(f), "32-true");
    ck_assert(wf_device_eq(wf_fabric_device(f), WF_CPU));
    ck_assert_int_eq(wf_fabric_world_size(f), 1);
    ck_assert_int_eq(wf_fabric_global_rank(f), 0);
    ck_assert_int_eq(wf_fabric_local_rank(f), 0);
    ck_assert_int_eq(wf_fabric_node_rank(f), 0);
    ck_assert_int_eq(wf_fabric_num_nodes(f), 1);
    ck_assert_int_eq(wf_fabric_num_devices(f), 1);
    ck_assert(wf_fabric_is_global_zero(f));
    ck_assert_ptr_null(wf_fabric_logger(f));
    ck_assert_int_eq(wf_fabric_num_loggers(f), 0);
    ck_assert_str_eq(wf_fabric_warnings(f), "");
    wf_fabric_free(f);
}
END_TEST

START_TEST(test_accelerator_errors) {
    clear_env();
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "cuda" }));
    ck_assert_error(WF_EDEVICE, "no CUDA device");
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "gpu" }));
    ck_assert_error(WF_EDEVICE, "\"gpu\"");
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "mps" }));
    ck_assert_error(WF_ENOTSUP, "no such hardware");
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "tpu" }));
    ck_assert_error(WF_ENOTSUP, "no such hardware");
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "npu" }));
    ck_assert_error(WF_EINVAL, "valid: auto, cpu, cuda, gpu");
    wf_fabric *f = mk((wf_fabric_config){ .accelerator = "CPU" });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_accelerator_name(f), "cpu");
    wf_fabric_free(f);
}
END_TEST

START_TEST(test_strategy_rules) {
    clear_env();
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "horovod" }));
    ck_assert_error(WF_EINVAL, "valid: auto, single_device, ddp");
    /* dp on CPU becomes ddp with a warning */
    wf_fabric *f = mk((wf_fabric_config){ .strategy = "dp" });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_strategy_name(f), "ddp");
    ck_assert_ptr_nonnull(strstr(wf_fabric_warnings(f), "not supported on CPUs"));
    wf_fabric_free(f);
    /* DDP's options are checked whatever the strategy */
    ck_assert_ptr_null(mk((wf_fabric_config){ .ddp = { .comm_hook = "powersgd" } }));
    ck_assert_error(WF_EINVAL, "unknown ddp.comm_hook \"powersgd\"");
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "ddp", .ddp = { .bucket_cap_mb = -2 } }));
    ck_assert_error(WF_EINVAL, "ddp.bucket_cap_mb = -2");
    f = mk((wf_fabric_config){ .ddp = { .comm_hook = "fp16_compress", .bucket_cap_mb = 4 } });
    ck_assert_msg(f, "%s", wf_error_message());
    wf_fabric_free(f);
    /* ddp / fsdp with one process: world size 1 semantics */
    const char *ok[] = { "ddp", "fsdp", "ddp_spawn", "ddp_find_unused_parameters_true", "single_device", "auto" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        f = mk((wf_fabric_config){ .strategy = ok[i] });
        ck_assert_msg(f, "%s: %s", ok[i], wf_error_message());
        ck_assert_int_eq(wf_fabric_world_size(f), 1);
        wf_fabric_free(f);
    }
    /* several processes: the Fabric knows the world it will launch; setup before launch is
     * an error (Fabric's _validate_launched) */
    f = mk((wf_fabric_config){ .devices = "4" });   /* auto -> ddp */
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_strategy_name(f), "ddp");
    ck_assert_int_eq(wf_fabric_world_size(f), 4);
    ck_assert_int_eq(wf_fabric_global_rank(f), 0);
    ck_assert_ptr_null(wf_fabric_process_group(f));
    wf_module *m = mlp();
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "call wf_fabric_launch");
    ck_assert_int_eq(wf_fabric_barrier(f, NULL), WF_ESTATE);
    wf_module_free(m);
    wf_fabric_free(f);
    f = mk((wf_fabric_config){ .num_nodes = 2 });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_world_size(f), 2);
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), WF_ENOTSUP);   /* other nodes need a launcher */
    ck_assert_error(WF_ENOTSUP, "num_nodes=2");
    ck_assert_int_eq(wf_fabric_launch(f, NULL, NULL), WF_ESTATE);    /* twice */
    wf_fabric_free(f);
    /* fsdp with several processes is built (issue 14; tests/fabric/test_fsdp.c runs it) */
    f = mk((wf_fabric_config){ .strategy = "fsdp", .devices = "2" });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_world_size(f), 2);
    wf_fabric_free(f);
    /* process_group_backend: Lightning's names; gloo is weft's mpi */
    ck_assert_ptr_null(mk((wf_fabric_config){ .process_group_backend = "bogus" }));
    ck_assert_error(WF_EINVAL, "not one of auto, mpi, nccl");
    ck_assert_ptr_null(mk((wf_fabric_config){ .accelerator = "cpu", .process_group_backend = "nccl" }));
    ck_assert_error(WF_EINVAL, "needs the cuda accelerator");
    f = mk((wf_fabric_config){ .process_group_backend = "gloo" });
    ck_assert_msg(f, "%s", wf_error_message());
    wf_fabric_free(f);
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "single_device", .devices = "2" }));
    ck_assert_error(WF_EINVAL, "one device");
    /* weft's ZeRO runs on the CPU; only ZeRO-Infinity's NVMe offload is refused */
    f = mk((wf_fabric_config){ .strategy = "deepspeed_stage_3" });
    ck_assert_msg(f, "%s", wf_error_message());
    wf_fabric_free(f);
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "deepspeed_stage_3_offload_nvme" }));
    ck_assert_error(WF_ENOTSUP, "NVMe");
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "ddp_notebook" }));
    ck_assert_error(WF_ENOTSUP, "notebooks");
    ck_assert_ptr_null(mk((wf_fabric_config){ .strategy = "xla" }));
    ck_assert_error(WF_ENOTSUP, "TPU");
}
END_TEST

START_TEST(test_devices_and_nodes) {
    clear_env();
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "0" }));
    ck_assert_error(WF_EINVAL, "devices=0 is not a valid input");
    ck_assert_ptr_null(mk((wf_fabric_config){ .device_ids = (int[]){ 0 }, .n_device_ids = 0 }));
    ck_assert_error(WF_EINVAL, "devices=[]");
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "-1" }));
    ck_assert_error(WF_EINVAL, "should be an int > 0");
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "0,2" }));
    ck_assert_error(WF_EINVAL, "should be an int > 0");
    ck_assert_ptr_null(mk((wf_fabric_config){ .device_ids = (int[]){ 0, 1 }, .n_device_ids = 2 }));
    ck_assert_error(WF_EINVAL, "should be an int > 0");
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "two" }));
    ck_assert_error(WF_EINVAL, "\"two\" is not valid");
    ck_assert_ptr_null(mk((wf_fabric_config){ .num_nodes = -1 }));
    ck_assert_error(WF_EINVAL, "num_nodes must be an int >= 1");
    ck_assert_ptr_null(mk((wf_fabric_config){ .devices = "1", .device_ids = (int[]){ 0 }, .n_device_ids = 1 }));
    ck_assert_error(WF_EINVAL, "either devices or device_ids");
    wf_fabric *f = mk((wf_fabric_config){ .devices = "1", .num_nodes = 1 });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_num_devices(f), 1);
    wf_fabric_free(f);
    f = mk((wf_fabric_config){ .devices = " auto " });
    ck_assert_msg(f, "%s", wf_error_message());
    wf_fabric_free(f);
}
END_TEST

START_TEST(test_env_overrides) {
    clear_env();
    setenv("WF_PRECISION", "bf16-mixed", 1);
    setenv("WF_STRATEGY", "ddp", 1);
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_precision_name(f), "bf16-mixed");
    ck_assert_str_eq(wf_fabric_strategy_name(f), "ddp");
    wf_fabric_free(f);
    /* the environment wins over the config without the CLI */
    f = mk((wf_fabric_config){ .precision = "64-true" });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_str_eq(wf_fabric_precision_name(f), "bf16-mixed");
    wf_fabric_free(f);
    /* with the CLI, a conflicting config value is an error */
    setenv("WF_CLI_USED", "1", 1);
    ck_assert_ptr_null(mk((wf_fabric_config){ .precision = "64-true" }));
    ck_assert_error(WF_EINVAL, "conflicts with the value --precision=bf16-mixed");
    f = mk((wf_fabric_config){ .precision = "bf16-mixed" });   /* same value: fine */
    ck_assert_msg(f, "%s", wf_error_message());
    wf_fabric_free(f);
    clear_env();
    setenv("WF_ACCELERATOR", "mps", 1);
    ck_assert_ptr_null(mk((wf_fabric_config){ 0 }));
    ck_assert_error(WF_ENOTSUP, "mps");
    clear_env();
    setenv("WF_DEVICES", "3", 1);
    f = mk((wf_fabric_config){ 0 });
    ck_assert_msg(f, "%s", wf_error_message());
    ck_assert_int_eq(wf_fabric_world_size(f), 3);
    wf_fabric_free(f);
    clear_env();
    setenv("WF_NUM_NODES", "0", 1);
    ck_assert_ptr_null(mk((wf_fabric_config){ 0 }));
    ck_assert_error(WF_EINVAL, "num_nodes");
    clear_env();
}
END_TEST

START_TEST(test_precision_names) {
    clear_env();
    struct { const char *in, *out; wf_dtype param; bool warns; } cases[] = {
        { "64-true", "64-true", WF_F64, false },   { "64", "64-true", WF_F64, false },
        { "32-true", "32-true", WF_F32, false },   { "32", "32-true", WF_F32, false },
        { "16-true", "16-true", WF_F16, false },   { "bf16-true", "bf16-true", WF_BF16, false },
        { "bf16-mixed", "bf16-mixed", WF_F32, false }, { "bf16", "bf16-mixed", WF_F32, true },
        { "16-mixed", "bf16-mixed", WF_F32, true },   /* CPU: falls back with a warning */
        { "16", "bf16-mixed", WF_F32, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wf_fabric *f = mk((wf_fabric_config){ .precision = cases[i].in });
        ck_assert_msg(f, "%s: %s", cases[i].in, wf_error_message());
        ck_assert_str_eq(wf_fabric_precision_name(f), cases[i].out);
        ck_assert_int_eq(wf_precision_param_dtype(wf_fabric_precision(f)), cases[i].param);
        ck_assert_msg((wf_fabric_warnings(f)[0] != 0) == cases[i].warns, "%s: warnings '%s'", cases[i].in,
                      wf_fabric_warnings(f));
        wf_fabric_free(f);
    }
    ck_assert_ptr_null(mk((wf_fabric_config){ .precision = "fp8" }));
    ck_assert_error(WF_EINVAL, "bf16-mixed");
}
END_TEST

/* ---------------------------------------------------------------- setup */

START_TEST(test_setup_errors) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    wf_module *m = mlp(), *other = mlp();
    wf_optimizer *opt = adam_of(m), *opt_other = adam_of(other);
    ck_assert_int_eq(wf_fabric_setup(f, m, &opt_other, 1, NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "not a parameter of the module");
    ck_assert(!wf_fabric_is_setup_module(f, m));
    ck_assert_int_eq(wf_fabric_setup(f, m, &opt, 1, NULL), 0);
    ck_assert(wf_fabric_is_setup_module(f, m));
    ck_assert(wf_fabric_is_setup_optimizer(f, opt));
    ck_assert_int_eq(wf_fabric_setup(f, m, NULL, 0, NULL), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "already been set up");
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "already been set up");
    ck_assert_int_eq(wf_fabric_setup_optimizers(f, &opt, 1), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "already been set up");
    /* moving a module to the Fabric's device (the cpu here) keeps it usable; NULL is an error */
    ck_assert_int_eq(wf_fabric_module_to_device(f, m), 0);
    ck_assert_int_eq(wf_tensor_device(wf_module_get_parameter(m, "0.weight")).type, WF_DEV_CPU);
    ck_assert_int_ne(wf_fabric_module_to_device(f, NULL), 0);
    wf_clear_error();
    /* separately: module, then optimizers */
    ck_assert_int_eq(wf_fabric_setup_module(f, other, true), 0);
    ck_assert_int_eq(wf_fabric_step(f, opt_other, NULL), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "not set up");
    ck_assert_int_eq(wf_fabric_setup_optimizers(f, &opt_other, 1), 0);
    ck_assert_int_eq(wf_fabric_setup_optimizers(f, NULL, 0), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "at least one");
    ck_assert_int_eq(wf_fabric_setup(f, NULL, NULL, 0, NULL), WF_ENULL);
    wf_clear_error();
    wf_fabric_free(f);
    /* the module keeps working without the Fabric's hooks */
    WF_SCOPE { ck_assert_ptr_nonnull(wf_module_forward(m, wf_ones(WF_SHAPE(2, 4), WF_F32))); }
    wf_optimizer_free(opt);
    wf_optimizer_free(opt_other);
    wf_module_free(m);
    wf_module_free(other);
}
END_TEST

/* N steps of a fixed regression problem; losses into out */
static void train(wf_fabric *f, wf_module *m, wf_optimizer *opt, int steps, double *out) {
    for (int s = 0; s < steps; s++) {
        WF_SCOPE {
            wf_tensor *x = wf_mul_scalar(wf_arange(0, 8, 1, WF_F32), 0.1 * (1 + s % 2));
            x = wf_reshape(x, WF_SHAPE(2, 4));
            wf_tensor *y = wf_ones(WF_SHAPE(2, 3), WF_F32);
            if (f) x = wf_fabric_to_device(f, x);
            wf_tensor *loss = wf_mse_loss(wf_module_forward(m, x), y, WF_REDUCTION_MEAN);
            ck_assert_msg(loss, "%s", wf_error_message());
            wf_optimizer_zero_grad(opt, true);
            if (f) {
                ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
                ck_assert_int_eq(wf_fabric_step(f, opt, NULL), 0);
            } else {
                ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
                ck_assert_int_eq(wf_optimizer_step(opt), 0);
            }
            out[s] = wf_item(loss);
        }
    }
}

START_TEST(test_fabric_equals_plain_loop) {
    clear_env();
    double a[10], b[10];
    wf_manual_seed(7);
    wf_module *m1 = mlp();
    wf_optimizer *o1 = adam_of(m1);
    train(NULL, m1, o1, 10, a);
    wf_manual_seed(7);
    wf_fabric *f = mk((wf_fabric_config){ .precision = "32-true" });
    wf_module *m2 = mlp();
    wf_optimizer *o2 = adam_of(m2);
    ck_assert_int_eq(wf_fabric_setup(f, m2, &o2, 1, NULL), 0);
    train(f, m2, o2, 10, b);
    for (int i = 0; i < 10; i++) ck_assert_msg(a[i] == b[i], "step %d: %.17g vs %.17g", i, a[i], b[i]);
    ck_assert(a[9] < a[0]);
    wf_fabric_free(f);
    wf_optimizer_free(o1); wf_optimizer_free(o2);
    wf_module_free(m1); wf_module_free(m2);
}
END_TEST

START_TEST(test_true_precision_converts) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ .precision = "64-true" });
    wf_module *m = mlp();
    wf_optimizer *o = adam_of(m);   /* built before the cast: re-pointed by setup */
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(m, "0.weight")), WF_F64);
    ck_assert_ptr_eq(wf_optimizer_group_param(o, 0, 0), wf_module_get_parameter(m, "0.weight"));
    double losses[6];
    train(f, m, o, 6, losses);   /* f32 input converted to f64, output back to f32 */
    ck_assert(losses[4] < losses[0]);
    WF_SCOPE {
        wf_tensor *y = wf_module_forward(m, wf_ones(WF_SHAPE(1, 4), WF_F32));
        ck_assert_int_eq(wf_tensor_dtype(y), WF_F32);
    }
    /* init_module: parameters created directly in f64 */
    ck_assert_int_eq(wf_fabric_init_module_begin(f, false), 0);
    wf_module *lin = wf_linear_new(2, 2, true);
    ck_assert_int_eq(wf_fabric_init_module_end(f), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(lin, "weight")), WF_F64);
    ck_assert_int_eq(wf_fabric_init_module_end(f), WF_ESTATE);
    wf_clear_error();
    wf_module_free(lin);
    /* init_module(empty_init): the layer's initialization is skipped (no random draws);
     * without it, the same layer draws from the generator */
    wf_rng_state r0 = wf_rng_get_state();
    ck_assert_int_eq(wf_fabric_init_module_begin(f, true), 0);
    ck_assert(wf_nn_skip_init());
    wf_module *big = wf_linear_new(64, 64, true);
    ck_assert_int_eq(wf_fabric_init_module_end(f), 0);
    ck_assert(!wf_nn_skip_init());
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq(wf_rng_get_state().offset, r0.offset);
    wf_module_free(big);
    ck_assert_int_eq(wf_fabric_init_module_begin(f, false), 0);
    big = wf_linear_new(64, 64, true);
    ck_assert_int_eq(wf_fabric_init_module_end(f), 0);
    ck_assert_uint_gt(wf_rng_get_state().offset, r0.offset);
    wf_module_free(big);
    ck_assert_int_eq(wf_fabric_init_tensor_begin(f), 0);
    WF_SCOPE { ck_assert_int_eq(wf_tensor_dtype(wf_zeros(WF_SHAPE(2), WF_DTYPE_DEFAULT)), WF_F64); }
    ck_assert_int_eq(wf_fabric_init_tensor_end(f), 0);
    WF_SCOPE { ck_assert_int_eq(wf_tensor_dtype(wf_zeros(WF_SHAPE(2), WF_DTYPE_DEFAULT)), WF_F32); }
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

START_TEST(test_mixed_autocast) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ .precision = "bf16-mixed" });
    wf_module *m = mlp();
    wf_optimizer *o = adam_of(m);
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    ck_assert_int_eq(wf_tensor_dtype(wf_module_get_parameter(m, "0.weight")), WF_F32);   /* master weights */
    WF_SCOPE {
        wf_tensor *y = wf_module_forward(m, wf_ones(WF_SHAPE(2, 4), WF_F32));
        ck_assert_int_eq(wf_tensor_dtype(y), WF_BF16);     /* linear ran under autocast */
        ck_assert(!wf_autocast_enabled(WF_DEV_CPU));       /* the region closed */
        ck_assert_int_eq(wf_fabric_autocast_begin(f), 0);
        ck_assert(wf_autocast_enabled(WF_DEV_CPU));
        ck_assert_int_eq(wf_fabric_autocast_end(f), 0);
    }
    double losses[6];
    train(f, m, o, 6, losses);
    ck_assert(losses[4] < losses[0]);
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

START_TEST(test_plain_backward_detected) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    f->force_backward_check = true;   /* as for 16-mixed (which this CPU build maps to bf16-mixed) */
    wf_module *m = mlp();
    wf_optimizer *o = adam_of(m);
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    WF_SCOPE {
        wf_tensor *loss = wf_sum_all(wf_module_forward(m, wf_ones(WF_SHAPE(2, 4), WF_F32)));
        ck_assert_int_eq(wf_backward(loss, NULL, false), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "needs wf_fabric_backward");
        wf_optimizer_zero_grad(o, true);
        loss = wf_sum_all(wf_module_forward(m, wf_ones(WF_SHAPE(2, 4), WF_F32)));
        ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
        ck_assert_int_eq(wf_fabric_step(f, o, NULL), 0);
        wf_module *stranger = mlp();
        ck_assert_int_eq(wf_fabric_backward(f, loss, stranger), WF_ESTATE);
        ck_assert_error(WF_ESTATE, "not set up");
        wf_module_free(stranger);
    }
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

START_TEST(test_clip_gradients) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    wf_module *m = mlp();
    wf_optimizer *o = adam_of(m);
    ck_assert_int_eq(wf_fabric_setup(f, m, &o, 1, NULL), 0);
    double norm = -1;
    ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .clip_val = 1, .max_norm = 1 }, &norm), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "only one of clip_val");
    ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ 0 }, &norm), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "either clip_val or max_norm");
    ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = -1 }, &norm), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "positive");
    WF_SCOPE {
        wf_tensor *loss = wf_mul_scalar(wf_sum_all(wf_module_forward(m, wf_ones(WF_SHAPE(8, 4), WF_F32))), 100);
        ck_assert_int_eq(wf_fabric_backward(f, loss, m), 0);
        /* the expected norm, by hand */
        wf_tensor *p[8];
        int np = wf_module_parameters(m, p, NULL, 8);
        double sq = 0;
        for (int i = 0; i < np; i++) sq += wf_item(wf_sum_all(wf_square(wf_grad(p[i]))));
        ck_assert_int_eq(wf_fabric_clip_gradients(f, m, o, &(wf_clip_opts){ .max_norm = 0.5 }, &norm), 0);
        ck_assert_double_eq_tol(norm, sqrt(sq), 1e-3 * sqrt(sq));
        double sq2 = 0;
        for (int i = 0; i < np; i++) sq2 += wf_item(wf_sum_all(wf_square(wf_grad(p[i]))));
        ck_assert_double_eq_tol(sqrt(sq2), 0.5, 1e-4);
        /* by value (module only: no optimizer) */
        ck_assert_int_eq(wf_fabric_clip_gradients(f, m, NULL, &(wf_clip_opts){ .clip_val = 0.01 }, &norm), 0);
        ck_assert_double_eq(norm, 0);
        for (int i = 0; i < np; i++) ck_assert(wf_item(wf_amax(wf_abs(wf_grad(p[i])), WF_ALL_DIMS, false)) <= 0.01 + 1e-7);
    }
    wf_fabric_free(f);
    wf_optimizer_free(o);
    wf_module_free(m);
}
END_TEST

/* ---------------------------------------------------------------- utilities */

START_TEST(test_utilities) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    WF_SCOPE {
        wf_tensor *t = wf_arange(0, 6, 1, WF_F32);
        wf_tensor *d = wf_fabric_to_device(f, t);
        ck_assert(wf_device_eq(wf_tensor_device(d), WF_CPU));
        ck_assert_shape(wf_fabric_all_gather(f, t, false), 6);          /* no extra dim with one process */
        wf_tensor *r = wf_fabric_all_reduce(f, t, WF_FABRIC_MEAN);
        ck_assert_tensor_near(r, ((double[]){ 0, 1, 2, 3, 4, 5 }), 6, 0);
        ck_assert_ptr_null(wf_fabric_all_reduce(f, t, (wf_fabric_reduce)9));
        ck_assert_error(WF_EINVAL, "reduce op");
        ck_assert_ptr_nonnull(wf_fabric_broadcast(f, t, 0));
        ck_assert_ptr_null(wf_fabric_broadcast(f, t, 1));
        ck_assert_error(WF_EINVAL, "src=1");
        /* all_gather with sync_grads keeps the graph */
        wf_tensor *w = wf_ones(WF_SHAPE(3), WF_F32);
        wf_set_requires_grad(w, true);
        wf_tensor *g = wf_fabric_all_gather(f, wf_mul_scalar(w, 2), true);
        ck_assert_int_eq(wf_backward(wf_sum_all(g), NULL, false), 0);
        ck_assert_tensor_near(wf_grad(w), ((double[]){ 2, 2, 2 }), 3, 0);
    }
    char buf[4] = "abc";
    ck_assert_int_eq(wf_fabric_broadcast_bytes(f, buf, 4, 0), 0);
    ck_assert_int_eq(wf_fabric_barrier(f, NULL), 0);
    ck_assert_int_eq(wf_fabric_rank_zero_first_begin(f, false), 0);
    ck_assert_int_eq(wf_fabric_rank_zero_first_end(f), 0);
    ck_assert_int_eq(wf_fabric_rank_zero_first_end(f), WF_ESTATE);
    wf_clear_error();
    wf_module *m = mlp();
    ck_assert_int_eq(wf_fabric_no_backward_sync_begin(f, m, true), WF_ESTATE);
    ck_assert_error(WF_ESTATE, "set up the model first");
    ck_assert_int_eq(wf_fabric_setup_module(f, m, true), 0);
    ck_assert_int_eq(wf_fabric_no_backward_sync_begin(f, m, true), 0);
    ck_assert_int_eq(wf_fabric_no_backward_sync_end(f), 0);
    ck_assert_int_eq(wf_fabric_no_backward_sync_end(f), WF_ESTATE);
    wf_clear_error();
    ck_assert_int_gt(wf_fabric_print(f, "fabric print %d\n", 1), 0);
    /* seeding */
    ck_assert_uint_eq(wf_seed_everything(1234, true), 1234);
    bool found = false;
    ck_assert_uint_eq(wf_fabric_global_seed(&found), 1234);
    ck_assert(found);
    ck_assert_str_eq(getenv("WF_GLOBAL_SEED"), "1234");
    ck_assert_str_eq(getenv("WF_SEED_WORKERS"), "1");
    ck_assert_uint_eq(wf_rng_get_state().seed, 1234);
    ck_assert_uint_ne(wf_worker_seed(1234, 0, 0), wf_worker_seed(1234, 1, 0));
    ck_assert_uint_ne(wf_worker_seed(1234, 0, 0), wf_worker_seed(1234, 0, 1));
    ck_assert_uint_eq(wf_worker_seed(1234, 3, 2), wf_worker_seed(1234, 3, 2));
    wf_fabric_free(f);
    wf_module_free(m);
}
END_TEST

START_TEST(test_dataloader) {
    clear_env();
    wf_fabric *f = mk((wf_fabric_config){ 0 });
    wf_tensor *x = wf_arange(0, 20, 1, WF_F32), *y = wf_arange(0, 10, 1, WF_I64);
    wf_tensor *xs = wf_reshape(x, WF_SHAPE(10, 2));
    wf_dataset ds;
    ck_assert_int_eq(wf_tensor_dataset((wf_tensor *[]){ xs, y }, 2, &ds), 0);
    wf_tensor_free(x); wf_tensor_free(xs); wf_tensor_free(y);
    wf_dataloader *dl = wf_dataloader_new(&ds, &(wf_dataloader_opts){ .batch_size = 4, .shuffle = true, .seed = 3 });
    wf_fabric_loader *l = wf_fabric_setup_dataloader(f, dl, NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(wf_fabric_loader_len(l), 3);
    ck_assert_ptr_eq(wf_fabric_loader_inner(l), dl);
    int64_t seen = 0, sum = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        ck_assert_int_eq(wf_fabric_loader_set_epoch(l, (uint64_t)epoch), 0);
        wf_tensor *b[2];
        int rc;
        while (1) {
            wf_scope_begin();
            rc = wf_fabric_loader_next(l, b);
            if (rc == 1) {
                ck_assert(wf_device_eq(wf_tensor_device(b[0]), wf_fabric_device(f)));
                seen += wf_size(b[1], 0);
                sum += (int64_t)wf_item(wf_sum_all(b[1]));
            }
            wf_scope_end();
            if (rc != 1) break;
        }
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_int_eq(seen, 20);
    ck_assert_int_eq(sum, 90);
    wf_fabric_loader_free(l);
    ck_assert_ptr_null(wf_fabric_setup_dataloader(f, NULL, NULL));
    ck_assert_error(WF_ENULL, "NULL loader");
    wf_fabric_free(f);
}
END_TEST

/* ---------------------------------------------------------------- callbacks */

typedef struct counts { int epoch_end, batch_end, last_payload; } counts;
static int on_epoch_end(wf_fabric *f, void *payload, void *ud) {
    (void)f;
    counts *c = ud;
    c->epoch_end++;
    c->last_payload = payload ? *(int *)payload : -1;
    return 0;
}
static int on_batch_end(wf_fabric *f, void *payload, void *ud) {
    (void)f; (void)payload;
    ((counts *)ud)->batch_end++;
    return 0;
}
static int failing(wf_fabric *f, void *payload, void *ud) {
    (void)f; (void)payload; (void)ud;
    return wf_set_error(WF_EINVAL, "early stop requested");
}

START_TEST(test_callbacks) {
    clear_env();
    counts a = { 0 }, b = { 0 };
    static const wf_callback_hook hooks_a[] = { { "on_train_epoch_end", on_epoch_end }, { "on_train_batch_end", on_batch_end }, { NULL, NULL } };
    static const wf_callback_hook hooks_b[] = { { "on_train_epoch_end", on_epoch_end }, { NULL, NULL } };
    static const wf_callback_hook hooks_c[] = { { "on_validation_end", failing }, { NULL, NULL } };
    wf_callback cbs[] = { { "a", hooks_a, &a }, { "b", hooks_b, &b }, { "c", hooks_c, NULL } };
    wf_fabric *f = mk((wf_fabric_config){ .callbacks = cbs, .n_callbacks = 3 });
    ck_assert_msg(f, "%s", wf_error_message());
    int epoch = 5;
    ck_assert_int_eq(wf_fabric_call(f, "on_train_epoch_end", &epoch), 0);
    ck_assert_int_eq(wf_fabric_call(f, "on_train_batch_end", NULL), 0);
    ck_assert_int_eq(wf_fabric_call(f, "on_nothing", NULL), 0);   /* no callback has it: nothing runs */
    ck_assert_int_eq(a.epoch_end, 1);
    ck_assert_int_eq(b.epoch_end, 1);
    ck_assert_int_eq(a.last_payload, 5);
    ck_assert_int_eq(a.batch_end, 1);
    ck_assert_int_eq(b.batch_end, 0);
    ck_assert_int_eq(wf_fabric_call(f, "on_validation_end", NULL), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "early stop");
    ck_assert_int_eq(wf_fabric_call(f, NULL, NULL), WF_ENULL);
    wf_clear_error();
    wf_fabric_free(f);
    wf_callback bad = { "bad", NULL, NULL };
    ck_assert_ptr_null(mk((wf_fabric_config){ .callbacks = &bad, .n_callbacks = 1 }));
    ck_assert_error(WF_ENULL, "no hook table");
}
END_TEST

int main(void) {
    Suite *s = suite_create("fabric");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_accelerator_errors);
    tcase_add_test(tc, test_strategy_rules);
    tcase_add_test(tc, test_devices_and_nodes);
    tcase_add_test(tc, test_env_overrides);
    tcase_add_test(tc, test_precision_names);
    tcase_add_test(tc, test_setup_errors);
    tcase_add_test(tc, test_fabric_equals_plain_loop);
    tcase_add_test(tc, test_true_precision_converts);
    tcase_add_test(tc, test_mixed_autocast);
    tcase_add_test(tc, test_plain_backward_detected);
    tcase_add_test(tc, test_clip_gradients);
    tcase_add_test(tc, test_utilities);
    tcase_add_test(tc, test_dataloader);
    tcase_add_test(tc, test_callbacks);
    tcase_add_test(tc, test_plugins);
    tcase_add_test(tc, test_launch_one_process);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
