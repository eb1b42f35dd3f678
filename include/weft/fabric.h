/* weft/fabric.h: the Fabric object (lightning.fabric.Fabric in C).
 *
 * A Fabric turns a plain training loop into one that is device-, precision- and (later)
 * strategy-agnostic with a few changes (the "five steps" of Fabric's docs):
 *
 *     wf_fabric *fab = wf_fabric_new(&(wf_fabric_config){ .accelerator = "auto",
 *                                                         .precision = "bf16-mixed" });
 *     wf_fabric_setup(fab, model, &opt, 1, NULL);           // module + optimizers
 *     wf_fabric_loader *dl = wf_fabric_setup_dataloader(fab, raw_loader, NULL);
 *     wf_tensor *batch[2];                                  // inputs, targets (on the device)
 *     int more = 1;
 *     while (more > 0) WF_SCOPE {                           // a step's tensors die with it
 *         more = wf_fabric_loader_next(dl, batch);          // 1, 0 at the end, or an error
 *         if (more > 0) {
 *             wf_optimizer_zero_grad(opt, true);
 *             wf_tensor *loss = wf_cross_entropy(wf_module_forward(model, batch[0]), batch[1], NULL);
 *             wf_fabric_backward(fab, loss, model);         // instead of wf_backward
 *             wf_fabric_step(fab, opt, NULL);               // instead of wf_optimizer_step
 *         }
 *     }
 *
 * Settings come from the config struct (zero means default everywhere) and the environment
 * variables WF_ACCELERATOR, WF_STRATEGY, WF_DEVICES, WF_NUM_NODES, WF_PRECISION (Fabric's
 * LT_*), which override the config, as the `weft run` CLI sets them. When WF_CLI_USED=1 and
 * the config names a different non-default value, wf_fabric_new fails (as Fabric does).
 *
 * Several processes: "ddp" (and "auto" with several devices) runs one process per device.
 * Either the processes already exist (started by `weft run`, torchrun, SLURM or mpirun; the
 * cluster environment tells) or wf_fabric_launch starts them (CPU ranks through Open MPI's
 * mpirun, GPU ranks directly, meeting through a TCP store). Call wf_fabric_launch before
 * setup, as Fabric's launch(). The strategy owns the collectives and the step: with "ddp"
 * the gradients are averaged across ranks during each wf_fabric_backward, in buckets whose
 * all-reduce overlaps the rest of the backward (PyTorch's DDP reducer; docs/distributed.md). With "fsdp" each rank keeps
 * only its rows of every parameter (and their gradients and optimizer state): units gather their parameters for their
 * forward and backward and free them afterwards (FSDP2's layout; docs/distributed.md). "deepspeed*" is weft's own
 * ZeRO (CPU too): stage 1 partitions the optimizer state over the ranks, stage 2 the gradients too, stage 3
 * ("deepspeed_stage_3") the parameters too, on FSDP's units; "deepspeed" is stage 2 (docs/distributed.md).
 *
 * Errors follow weft/tensor.h: NULL or a negative WF_E* code, with wf_error_message()
 * naming the method ("wf_fabric_setup: ..."). Warnings (Fabric's rank_zero_warn) are printed
 * once to stderr as "weft: warning: ..." and kept on the object (wf_fabric_warnings).
 */
#ifndef WEFT_FABRIC_H
#define WEFT_FABRIC_H

#include <stdarg.h>

#include "tensor.h"
#include "autograd.h"
#include "data.h"
#include "nn.h"
#include "optim.h"
#include "precision.h"
#include "io.h"
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_fabric wf_fabric;

/* ================================================================ callbacks */

/* A callback is a table of named hooks plus user data (a Python object with methods).
 * fn receives the Fabric, the payload given to wf_fabric_call and the callback's ud; it
 * returns 0 or a code (after recording an error), which stops wf_fabric_call. */
typedef int (*wf_callback_fn)(wf_fabric *fab, void *payload, void *ud);
typedef struct wf_callback_hook {
    const char *name;     /* "on_train_epoch_end", ... */
    wf_callback_fn fn;
} wf_callback_hook;
typedef struct wf_callback {
    const char *name;              /* for messages; may be NULL */
    const wf_callback_hook *hooks; /* array ending with an entry whose name is NULL */
    void *ud;
} wf_callback;

/* ================================================================ loggers */

/* A logger: metrics (name -> value at a step) and hyperparameters, with Fabric's Logger
 * interface. Create with wf_csv_logger_new / wf_tensorboard_logger_new or fill the vtable
 * yourself. The Fabric that receives a logger in its config owns it (frees it). */
typedef struct wf_logger wf_logger;
typedef struct wf_logger_vtable {
    const char *kind;   /* "csv", "tensorboard", ... */
    /* step < 0: the logger's own counter (Fabric's step=None). */
    int (*log_metrics)(wf_logger *l, const char *const *names, const double *values, int n, int64_t step);
    /* hyperparameters as parallel arrays; values are strings or numbers (is_number[i]). */
    int (*log_hyperparams)(wf_logger *l, const char *const *names, const char *const *str_values,
                           const double *num_values, const bool *is_number, int n);
    int (*flush)(wf_logger *l);       /* write buffered rows; may be NULL */
    void (*free)(wf_logger *l);       /* finalize and release */
} wf_logger_vtable;
struct wf_logger {
    const wf_logger_vtable *vt;
    char *name;        /* experiment name ("lightning_logs") */
    int version;       /* N of version_N */
    char *log_dir;     /* root/name/version_N */
    void *impl;
};

typedef struct wf_logger_opts {
    const char *name;            /* NULL = "lightning_logs" */
    int version;                 /* > 0: version_<version>; 0 or < 0: the next free version_N */
    int flush_logs_every_n_steps;/* CSV: rows buffered before a write; 0 = 100 */
} wf_logger_opts;

/* CSVLogger: root_dir/name/version_N/metrics.csv with Fabric's layout: the header lists
 * every metric name seen plus "step", sorted; a row per log call; missing values empty.
 * When a new metric name appears, the file is rewritten with the new header. Version:
 * opts->version when > 0, else the next free N (0 for a new directory). Directories are
 * created. NULL + WF_EIO / WF_ENOMEM / WF_ENULL. Owned by the caller until handed to a
 * Fabric (then the Fabric frees it); free with wf_logger_free. */
wf_logger *wf_csv_logger_new(const char *root_dir, const wf_logger_opts *opts);
/* TensorBoardLogger: real event files (root_dir/name/version_N/events.out.tfevents.<time>.
 * <host>.<pid>.0): TFRecord framing with masked CRC-32C, Event/Summary protocol buffers with
 * simple_value scalars, and hyperparameters with the hparams plugin (session start info and
 * an experiment summary). Records are flushed at each log call. Same ownership as CSV. */
wf_logger *wf_tensorboard_logger_new(const char *root_dir, const wf_logger_opts *opts);
/* Log through a logger directly. step < 0: the logger's counter. Returns 0 or a code. */
int wf_logger_log_metrics(wf_logger *l, const char *const *names, const double *values, int n, int64_t step);
int wf_logger_log_hyperparams(wf_logger *l, const char *const *names, const char *const *str_values,
                              const double *num_values, const bool *is_number, int n);
int wf_logger_flush(wf_logger *l);
/* The logger's directory (borrowed), name and version. */
const char *wf_logger_log_dir(const wf_logger *l);
void wf_logger_free(wf_logger *l);   /* flushes; NULL ok */

/* ================================================================ plugins */

/* Checkpoint IO (Lightning's CheckpointIO): how a checkpoint reaches storage and comes
 * back. save writes what w holds to path (the default: wf_st_writer_save, atomic); load
 * opens path (the default: wf_st_open); remove deletes it (the default: unlink). Any hook
 * may be NULL for the default. ud is the plugin's. Only rank 0 calls save. */
typedef struct wf_checkpoint_io {
    const char *name;
    int (*save)(const struct wf_checkpoint_io *io, wf_st_writer *w, const char *path);
    wf_st_file *(*load)(const struct wf_checkpoint_io *io, const char *path);
    int (*remove)(const struct wf_checkpoint_io *io, const char *path);
    void *ud;
} wf_checkpoint_io;

/* Fabric's plugins=: objects that replace the built-in ones. */
typedef struct wf_fabric_plugins {
    wf_precision *precision;          /* instead of .precision (giving both is WF_EINVAL); the
                                         Fabric takes ownership, also on failure */
    const wf_cluster_env *cluster_env;/* instead of detection (copied; must outlive the Fabric) */
    const wf_checkpoint_io *checkpoint_io;   /* copied; ud must outlive the Fabric */
} wf_fabric_plugins;

/* DDP's options (Lightning's DDPStrategy(**kwargs), handed to DistributedDataParallel).
 * Zero means PyTorch's default everywhere. */
typedef struct wf_ddp_opts {
    double bucket_cap_mb;          /* gradient bucket size; 0 = 25 */
    double first_bucket_mb;        /* the first bucket (the last gradients of backward); 0 = 1 */
    bool find_unused_parameters;   /* also from the strategy name "..._find_unused_parameters_true" */
    bool static_graph;             /* the set of used parameters never changes */
    bool no_broadcast_buffers;     /* broadcast_buffers=False: buffers are not synced each forward */
    const char *comm_hook;         /* NULL or "none"; "bf16_compress", "fp16_compress" */
} wf_ddp_opts;

/* FSDP's options (Lightning's FSDPStrategy(**kwargs)); zero means the default everywhere.
 * Unknown strings are WF_EINVAL naming the value and the valid ones. */
typedef struct wf_fsdp_opts {
    const char *sharding_strategy;   /* "FULL_SHARD" (default): parameters, gradients and optimizer
                                        state sharded, a unit's parameters gathered for its forward and
                                        again for its backward; "SHARD_GRAD_OP": gathered once, kept from
                                        forward to the end of backward; "NO_SHARD": DDP (all-reduce);
                                        "HYBRID_SHARD": FULL_SHARD inside a node, replicated across nodes
                                        (every node must have as many ranks: WF_EINVAL at launch) */
    const char *const *auto_wrap_policy;   /* NULL-terminated module type names ("Linear", as
                                        wf_module_type) that become units of their own; NULL: none */
    int64_t min_num_params;          /* also a unit: a submodule holding at least this many parameters
                                        not taken by a unit below it (size_based_auto_wrap_policy); 0 off */
    bool cpu_offload;                /* "fsdp_cpu_offload" sets it; accepted and a no-op on the CPU */
    const char *reduce_dtype;        /* the gradients' reduce-scatter dtype: "float32" (default),
                                        "bfloat16", "float16", "float64" */
    const char *state_dict_type;     /* "sharded" (default: a folder, each rank writing its rows) or
                                        "full" (one file, gathered to rank 0 piece by piece) */
    const char *const *activation_checkpointing_policy;   /* NULL-terminated module type names:
                                        at setup every submodule of a listed type (the root too)
                                        recomputes its forward in backward
                                        (wf_module_set_activation_checkpointing). Also applied
                                        under the other strategies, with a warning (Lightning has
                                        it on FSDP only); NULL: none */
} wf_fsdp_opts;

/* ================================================================ the Fabric object */

typedef struct wf_fabric_config {
    const char *accelerator;  /* "auto" (default), "cpu", "cuda", "gpu"; "mps"/"tpu": WF_ENOTSUP */
    const char *strategy;     /* "auto" (default), "single_device", "ddp", "fsdp", ... */
    const char *devices;      /* "auto" (default), "N", "-1" (all), "0,2" (those indices) */
    const int *device_ids;    /* a list of indices instead of devices (n_device_ids entries;
                                 a non-NULL pointer with 0 entries is the invalid "[]") */
    int n_device_ids;
    int num_nodes;            /* 0 = 1; negative is an error */
    const char *precision;    /* "32-true" (default), "64-true", "16-true", "bf16-true",
                                 "16-mixed", "bf16-mixed", "transformer-engine" (fp8, compute
                                 capability >= 8.9), aliases "64", "32", "16", "bf16" */
    const wf_callback *callbacks;   /* copied */
    int n_callbacks;
    wf_logger *const *loggers;      /* the Fabric takes ownership (also on failure) */
    int n_loggers;
    bool quiet;               /* do not print warnings to stderr (they are still recorded) */
    wf_fabric_plugins plugins;
    double timeout_s;         /* collectives' timeout; 0 = WF_DIST_TIMEOUT or 1800 s */
    wf_ddp_opts ddp;          /* options of the "ddp" strategies */
    const char *process_group_backend;   /* Lightning's process_group_backend: NULL/"auto" (nccl for
                                 CUDA with NCCL, else mpi), "mpi", "nccl". With "mpi", CUDA ranks may
                                 share GPUs (rank -> cuda:local_rank % GPUs), as the tests do */
    wf_fsdp_opts fsdp;        /* options of "fsdp" / "fsdp_cpu_offload" */
} wf_fabric_config;

/* Build a Fabric: the connector resolves the settings (config, then environment) into an
 * accelerator, a strategy and a precision plugin, with Fabric's rules:
 *  - accelerator "auto": cuda when wf_cuda_device_count() > 0, else cpu. "gpu" = cuda.
 *    "cuda"/"gpu" without a CUDA device: WF_EDEVICE. "mps", "tpu": WF_ENOTSUP (this build has
 *    no such hardware). Unknown names: WF_EINVAL listing the valid ones.
 *  - devices: CPU takes a process count > 0 ("auto" = 1); CUDA: "N" = the first N, "-1" or
 *    -1 = all, "0,2" or a list = those indices. 0, "0" and an empty list: WF_EINVAL.
 *  - num_nodes < 1: WF_EINVAL.
 *  - strategy "auto": single_device for one device on one node, else ddp. "dp" becomes
 *    ddp with a warning (on any device); "ddp_spawn"/"ddp_fork" run as ddp. Unknown names: WF_EINVAL listing the valid ones.
 *    "single_device" with several devices: WF_EINVAL. "deepspeed_stage_3_offload_nvme":
 *    WF_ENOTSUP (no NVMe offload); the "_offload" names with CUDA parameters: WF_ENOTSUP at
 *    launch. "fsdp" options: see wf_fsdp_opts.
 *  - processes: the cluster environment (plugin, else torchrun, SLURM, Open MPI, weft's
 *    launcher, else local) gives the ranks; with one of them, devices "auto" takes its local
 *    world size, and a devices x num_nodes that differs from its world size is WF_EINVAL.
 *    Under `weft run` (WF_CLI_USED=1) the process group is set up here, as Fabric does.
 *  - precision: see weft/precision.h (16-mixed on CPU -> bf16-mixed with a warning).
 * cfg may be NULL (all defaults). Returns the Fabric (free with wf_fabric_free) or NULL. */
wf_fabric *wf_fabric_new(const wf_fabric_config *cfg);
/* Flush and free the loggers, release the Fabric's own state. Set-up modules, optimizers
 * and loaders stay the caller's and may be freed before or after the Fabric; a module that
 * outlives its Fabric runs as a plain module (the Fabric's forward hooks stay registered but
 * do nothing). NULL ok. */
void wf_fabric_free(wf_fabric *fab);

/* launch(function): start the processes and set up the process group.
 *  - processes not started yet (devices > 1 with no launcher): this program is executed
 *    again as one process per device under weft's supervisor (CPU ranks through mpirun);
 *    the launching process waits and exits with the job's status (the failing rank named on
 *    stderr) and never returns;
 *  - in a started process: sets up the strategy's environment, then returns fn(fab, ud)
 *    (0 when fn is NULL). Every rank runs fn; each returns its own result.
 * Errors: WF_ESTATE when called twice or under `weft run` (processes exist already, as in
 * Fabric), the process group's errors (WF_EDIST, WF_ETIMEOUT naming absent ranks). */
typedef int (*wf_fabric_launch_fn)(wf_fabric *fab, void *ud);
int wf_fabric_launch(wf_fabric *fab, wf_fabric_launch_fn fn, void *ud);
/* The process group of a multi-process Fabric (borrowed; NULL with one process or before
 * launch): for collectives beyond the Fabric's own. */
wf_process_group *wf_fabric_process_group(wf_fabric *fab);

/* Memory counters of this rank's device (the host allocator's on the CPU, the CUDA caching
 * allocator's on a GPU): allocated and peak bytes, per rank since every rank is a process.
 * reset_peak sets the peak to what is allocated now. 0 or a code. */
int wf_fabric_memory_stats(wf_fabric *fab, wf_memory_stats *out);
int wf_fabric_reset_peak_memory_stats(wf_fabric *fab);

/* FSDP's summon_full_params: between begin and end the set-up module m's parameter handles
 * hold the full values (for evaluation, printing, comparing); end copies each rank's rows of
 * them back into its shards (so changes made in between are kept) and frees them. Collective:
 * every rank calls both. With other strategies both do nothing. 0 or a code. */
int wf_fabric_summon_full_params_begin(wf_fabric *fab, wf_module *m);
int wf_fabric_summon_full_params_end(wf_fabric *fab, wf_module *m);

/* ---------------------------------------------------------------- properties */
wf_device wf_fabric_device(const wf_fabric *fab);        /* cpu, cuda:N */
int wf_fabric_global_rank(const wf_fabric *fab);
int wf_fabric_local_rank(const wf_fabric *fab);
int wf_fabric_node_rank(const wf_fabric *fab);
int wf_fabric_world_size(const wf_fabric *fab);
bool wf_fabric_is_global_zero(const wf_fabric *fab);
int wf_fabric_num_nodes(const wf_fabric *fab);
int wf_fabric_num_devices(const wf_fabric *fab);        /* devices (or processes) per node */
const char *wf_fabric_accelerator_name(const wf_fabric *fab);   /* "cpu" / "cuda" */
const char *wf_fabric_strategy_name(const wf_fabric *fab);      /* resolved: "single_device", "ddp", ... */
const char *wf_fabric_precision_name(const wf_fabric *fab);     /* canonical: "bf16-mixed" */
wf_precision *wf_fabric_precision(wf_fabric *fab);              /* borrowed */
/* Loggers: count, the i-th (borrowed), the first (Fabric's .logger) or NULL. */
int wf_fabric_num_loggers(const wf_fabric *fab);
wf_logger *wf_fabric_logger_at(const wf_fabric *fab, int i);
wf_logger *wf_fabric_logger(const wf_fabric *fab);
/* All warnings emitted so far, one per line (borrowed; "" when none). */
const char *wf_fabric_warnings(const wf_fabric *fab);

/* ---------------------------------------------------------------- setup */

/* setup(module, *optimizers, scheduler): the precision converts the module ("-true" casts
 * the parameters), the module moves to the Fabric's device (optimizers built before the move
 * are re-pointed to the moved parameters, their state moved along), the strategy wraps it
 * (the forward then runs under the precision's autocast and converts inputs/outputs).
 * opts may be NULL with n_opts 0; sched may be NULL (it must drive one of opts).
 * Errors: WF_ESTATE when the module or an optimizer was already set up (named), WF_EINVAL
 * when an optimizer holds a parameter that is not the module's, WF_ENULL. */
int wf_fabric_setup(wf_fabric *fab, wf_module *m, wf_optimizer *const *opts, int n_opts,
                    wf_lr_scheduler *sched);
/* setup_module(module, move_to_device=true): as setup without optimizers; optimizers
 * created afterwards see the final parameters. */
int wf_fabric_setup_module(wf_fabric *fab, wf_module *m, bool move_to_device);
/* setup_optimizers(*optimizers): register optimizers whose parameters already live where
 * they should (after setup_module). WF_ESTATE when one was set up already. */
int wf_fabric_setup_optimizers(wf_fabric *fab, wf_optimizer *const *opts, int n_opts);
/* Has this module / optimizer been set up with this Fabric? */
bool wf_fabric_is_setup_module(const wf_fabric *fab, const wf_module *m);
bool wf_fabric_is_setup_optimizer(const wf_fabric *fab, const wf_optimizer *opt);

/* A loader set up by the Fabric: batches moved to the device, a sampler injection point. */
typedef struct wf_fabric_loader wf_fabric_loader;
typedef struct wf_fabric_loader_opts {
    bool no_distributed_sampler;  /* Fabric's use_distributed_sampler=False */
    bool no_move_to_device;       /* Fabric's move_to_device=False */
} wf_fabric_loader_opts;
/* setup_dataloaders: the Fabric takes ownership of dl (also on failure) and returns a
 * wrapper (free with wf_fabric_loader_free, which frees dl). With world size > 1 the
 * sampler is replaced by a distributed one (with world size 1 it is kept as is). o may be
 * NULL. NULL + error on failure. */
wf_fabric_loader *wf_fabric_setup_dataloader(wf_fabric *fab, wf_dataloader *dl, const wf_fabric_loader_opts *o);
/* Start an epoch (the sampler's set_epoch); returns 0 or a code. */
int wf_fabric_loader_set_epoch(wf_fabric_loader *l, uint64_t epoch);
/* Next batch (as wf_dataloader_next), each field moved to the device: 1, 0 at the end of
 * the epoch, or a code. The tensors join the caller's scope. */
int wf_fabric_loader_next(wf_fabric_loader *l, wf_tensor **out);
int64_t wf_fabric_loader_len(const wf_fabric_loader *l);
wf_dataloader *wf_fabric_loader_inner(wf_fabric_loader *l);   /* borrowed */
void wf_fabric_loader_free(wf_fabric_loader *l);              /* NULL ok */

/* ---------------------------------------------------------------- training step */

/* backward(loss, model=None): the strategy's, then the precision's backward (loss scaling
 * for 16-mixed). model may be NULL. Returns 0 or the backward's error. */
int wf_fabric_backward(wf_fabric *fab, wf_tensor *loss, wf_module *model);
/* The wrapped optimizer's step: the precision's step (16-mixed: unscale if not done,
 * skip on inf/NaN, update the scale; "-true" low precision: refuse non-finite gradients).
 * Errors: WF_ESTATE when opt was not set up, or when plain wf_backward ran on a set-up
 * module whose precision needs wf_fabric_backward (the gradients would be unscaled: a
 * silent bug in other libraries). *skipped (may be NULL) tells whether the step was
 * skipped. */
int wf_fabric_step(wf_fabric *fab, wf_optimizer *opt, bool *skipped);
/* Skip the LR scheduler when the last step was skipped (AMP overflow); else step it. */
int wf_fabric_scheduler_step(wf_fabric *fab, wf_lr_scheduler *sched);

typedef struct wf_clip_opts {
    double clip_val;       /* > 0: clamp every gradient to [-clip_val, clip_val] */
    double max_norm;       /* > 0: scale gradients so their total norm is at most max_norm */
    double norm_type;      /* 0 = 2; INFINITY for the max norm */
    bool no_error_if_nonfinite;   /* Fabric's error_if_nonfinite=False */
} wf_clip_opts;
/* clip_gradients(module, optimizer, clip_val, max_norm, norm_type, error_if_nonfinite):
 * exactly one of clip_val / max_norm (WF_EINVAL for both or neither). The precision unscales
 * the gradients first (16-mixed). With max_norm, *total_norm (may be NULL) receives the total
 * norm before clipping (else 0). The gradients clipped are those of opt's parameters (or the
 * module's when opt is NULL). WF_ENONFINITE for a non-finite norm unless disabled. */
int wf_fabric_clip_gradients(wf_fabric *fab, wf_module *m, wf_optimizer *opt, const wf_clip_opts *o,
                             double *total_norm);

/* autocast(): the precision's forward context for code outside a set-up module's forward.
 * Pairs must nest. Returns 0 or a code. */
int wf_fabric_autocast_begin(wf_fabric *fab);
int wf_fabric_autocast_end(wf_fabric *fab);

/* to_device: a tensor moved to the Fabric's device (a new handle in the caller's scope). */
wf_tensor *wf_fabric_to_device(wf_fabric *fab, wf_tensor *t);
/* A module moved in place (its parameters and buffers). Returns 0 or a code. */
int wf_fabric_module_to_device(wf_fabric *fab, wf_module *m);

/* print: printf to stdout on local rank 0 only (once per node). Returns the printf result,
 * 0 on other ranks. */
int wf_fabric_print(const wf_fabric *fab, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* seed_everything(seed, workers): seeds weft's global generator and C's rand(), sets
 * WF_GLOBAL_SEED (Fabric's PL_GLOBAL_SEED) and WF_SEED_WORKERS (1 when workers). Loaders made
 * afterwards with seed 0 derive their sampler seed from it. Returns seed. */
uint64_t wf_seed_everything(uint64_t seed, bool workers);
/* The global seed set by wf_seed_everything (from WF_GLOBAL_SEED); *found false if unset. */
uint64_t wf_fabric_global_seed(bool *found);
/* The seed of loader worker `worker` on `rank` (Lightning's pl_worker_init_function:
 * distinct per (seed, worker, rank), the same on every run). */
uint64_t wf_worker_seed(uint64_t base_seed, int worker, int rank);

/* init_module(empty_init) / init_tensor(): while open, tensors and modules are created
 * directly on the Fabric's device in the precision's parameter dtype. With empty_init the
 * layers built inside skip their weight initialization (wf_nn_set_skip_init): the memory is
 * allocated but not filled, for models about to be loaded from a checkpoint. Under "fsdp"
 * (sharded) empty_init means the meta device: nothing is allocated, every initializer is
 * noted, and setup gives each rank only its rows of each parameter, with the values the same
 * seed gives a model built normally (a draw's rows computed directly; trunc_normal_,
 * orthogonal_ and eye_ run again on one full tensor at a time). A parameter changed inside
 * the context by any other op is refused at setup (WF_ESTATE). Pairs must nest (at most 16
 * deep). */
int wf_fabric_init_module_begin(wf_fabric *fab, bool empty_init);
int wf_fabric_init_module_end(wf_fabric *fab);
int wf_fabric_init_tensor_begin(wf_fabric *fab);
int wf_fabric_init_tensor_end(wf_fabric *fab);

/* ---------------------------------------------------------------- collectives
 * Every rank must make the same calls in the same order; each is bounded by the timeout
 * (an error naming the ranks that did not join, never a silent hang). With one process they
 * are local. */

/* barrier(name): waits for every rank. Returns 0 or a code. */
int wf_fabric_barrier(wf_fabric *fab, const char *name);
/* broadcast(tensor, src): a new tensor (caller's scope) holding src's values on every rank;
 * src must be a valid rank (WF_EINVAL). */
wf_tensor *wf_fabric_broadcast(wf_fabric *fab, wf_tensor *t, int src);
/* broadcast of raw bytes (objects): buf (n bytes, the same n on every rank) receives src's. */
int wf_fabric_broadcast_bytes(wf_fabric *fab, void *buf, size_t n, int src);
/* all_gather(t, sync_grads): a new tensor [world_size, *t.shape] with rank r's t at r (one
 * process: t itself, no extra dimension, as Fabric's single-device strategy). sync_grads
 * keeps the gradient flow: the gradient of t is the sum over ranks of the gradients of
 * slice r (reduce-scatter), as torch.distributed.nn.all_gather. */
wf_tensor *wf_fabric_all_gather(wf_fabric *fab, wf_tensor *t, bool sync_grads);
typedef enum wf_fabric_reduce { WF_FABRIC_MEAN = 0, WF_FABRIC_SUM, WF_FABRIC_MAX, WF_FABRIC_MIN } wf_fabric_reduce;
/* all_reduce(t, reduce_op): a new tensor (caller's scope) reduced over ranks. */
wf_tensor *wf_fabric_all_reduce(wf_fabric *fab, wf_tensor *t, wf_fabric_reduce op);
/* no_backward_sync(module, enabled): between begin and end, backward does not synchronize
 * gradients (they accumulate locally; the next synchronized backward reduces the sum).
 * m must be set up (WF_ESTATE). */
int wf_fabric_no_backward_sync_begin(wf_fabric *fab, wf_module *m, bool enabled);
int wf_fabric_no_backward_sync_end(wf_fabric *fab);
/* rank_zero_first(local): rank 0 (per node when local) runs the block first, the others
 * wait in begin until it ends it. If rank 0 fails inside the block it calls
 * wf_fabric_rank_zero_first_fail(fab, code) instead of end: the other ranks' begin then
 * returns WF_EDIST naming rank 0's error, and they skip the block (they must not call end).
 *
 *     if ((rc = wf_fabric_rank_zero_first_begin(fab, false)) == 0) {
 *         rc = prepare_data();                       // rank 0 first, then the others
 *         rc = rc ? wf_fabric_rank_zero_first_fail(fab, rc) : wf_fabric_rank_zero_first_end(fab);
 *     }
 */
int wf_fabric_rank_zero_first_begin(wf_fabric *fab, bool local);
int wf_fabric_rank_zero_first_end(wf_fabric *fab);
/* Close the block after a failure: returns code (the error message is kept); on rank 0 it
 * also tells the waiting ranks. */
int wf_fabric_rank_zero_first_fail(wf_fabric *fab, int code);

/* ---------------------------------------------------------------- callbacks and logging */

/* call(hook, payload): every callback that has a hook named hook is called in order; the
 * first nonzero return stops and is returned. Callbacks without it are skipped. */
int wf_fabric_call(wf_fabric *fab, const char *hook, void *payload);
/* log(name, value, step) / log_dict to every logger (rank 0 only). step < 0: the logger's
 * counter. Returns 0 or the first logger's error. */
int wf_fabric_log(wf_fabric *fab, const char *name, double value, int64_t step);
int wf_fabric_log_dict(wf_fabric *fab, const char *const *names, const double *values, int n, int64_t step);
/* log_hyperparams to every logger that logs hyperparameters (rank 0 only), with the
 * arguments of wf_logger_log_hyperparams. Fabric has no such method (its users call
 * logger.log_hyperparams(params) on each logger); this forwards the call. Loggers that do not
 * log hyperparameters are skipped: Fabric's CSVLogger raises NotImplementedError there (only
 * PyTorch Lightning's CSVLogger writes hparams.yaml), so wf_logger_log_hyperparams on a CSV
 * logger stays WF_ENOTSUP. Returns 0 (also with no loggers), WF_ENOTSUP when the Fabric has
 * loggers and none of them logs hyperparameters, or the first logger's error. */
int wf_fabric_log_hyperparams(wf_fabric *fab, const char *const *names, const char *const *str_values,
                              const double *num_values, const bool *is_number, int n);

/* ================================================================ checkpoints */

/* A state: an ordered list of named entries (Fabric's state dict). Entries added with the
 * add functions point at live objects: wf_fabric_save reads them, wf_fabric_load restores
 * them in place. States returned by wf_fabric_load (what was not requested) own their
 * values. */
typedef struct wf_fabric_state wf_fabric_state;
typedef enum wf_state_kind {
    WF_STATE_MODULE = 1, WF_STATE_OPTIMIZER, WF_STATE_SCHEDULER, WF_STATE_TENSOR,
    WF_STATE_INT, WF_STATE_DOUBLE, WF_STATE_STRING, WF_STATE_RNG, WF_STATE_PRECISION,
    WF_STATE_TENSORS,   /* a group of named tensors (a module/optimizer not requested) */
    WF_STATE_JSON,      /* a JSON value not requested (scheduler state, param_groups) */
    WF_STATE_LOADER     /* a loader's position: epoch and batches consumed */
} wf_state_kind;

wf_fabric_state *wf_fabric_state_new(void);   /* NULL + WF_ENOMEM */
void wf_fabric_state_free(wf_fabric_state *s); /* releases owned values; NULL ok */
/* Add entries; name is copied, must be non-empty, contain no '/', be unique (WF_EINVAL).
 * The objects are borrowed and must outlive the state's use. */
int wf_fabric_state_add_module(wf_fabric_state *s, const char *name, wf_module *m);
int wf_fabric_state_add_optimizer(wf_fabric_state *s, const char *name, wf_optimizer *opt);
int wf_fabric_state_add_scheduler(wf_fabric_state *s, const char *name, wf_lr_scheduler *sched);
int wf_fabric_state_add_tensor(wf_fabric_state *s, const char *name, wf_tensor *t);  /* retained */
int wf_fabric_state_add_int(wf_fabric_state *s, const char *name, int64_t *v);
int wf_fabric_state_add_double(wf_fabric_state *s, const char *name, double *v);
/* A string buffer of capacity cap (load writes at most cap-1 bytes + NUL, WF_EINVAL if longer). */
int wf_fabric_state_add_string(wf_fabric_state *s, const char *name, char *buf, size_t cap);
/* The global RNG (seed and offset): saved from / restored into wf_rng_get/set_state. */
int wf_fabric_state_add_rng(wf_fabric_state *s, const char *name);
/* The Fabric's precision plugin state (grad scaler scale and growth tracker). */
int wf_fabric_state_add_precision(wf_fabric_state *s, const char *name, wf_fabric *fab);
/* A loader's position (wf_dataloader_position: epoch and batches of it consumed), so a run
 * saved mid-epoch resumes with the next batch: load skips the consumed batches without
 * making them. Every rank's loader is at the same position (equal shards), so rank 0's is
 * everyone's. Saved as metadata {"epoch":"E","batches":B}. */
int wf_fabric_state_add_loader(wf_fabric_state *s, const char *name, wf_fabric_loader *l);

/* Reading a state (e.g. the remainder returned by load). */
int wf_fabric_state_count(const wf_fabric_state *s);
const char *wf_fabric_state_name_at(const wf_fabric_state *s, int i);   /* borrowed */
wf_state_kind wf_fabric_state_kind_at(const wf_fabric_state *s, int i); /* 0 if out of range */
int wf_fabric_state_find(const wf_fabric_state *s, const char *name);   /* index or WF_ENOTFOUND */
/* Values of entries by name: WF_ENOTFOUND if absent, WF_EDTYPE if the kind differs. */
int wf_fabric_state_get_int(const wf_fabric_state *s, const char *name, int64_t *out);
int wf_fabric_state_get_double(const wf_fabric_state *s, const char *name, double *out);
const char *wf_fabric_state_get_string(const wf_fabric_state *s, const char *name); /* borrowed or NULL */
wf_tensor *wf_fabric_state_get_tensor(const wf_fabric_state *s, const char *name);  /* borrowed or NULL */
/* A WF_STATE_TENSORS entry (borrowed): names are relative ("layers.0.weight", "state/0/step"). */
const wf_state_dict *wf_fabric_state_get_tensors(const wf_fabric_state *s, const char *name);
/* A WF_STATE_JSON entry, or the JSON attached to a TENSORS entry (param_groups) (borrowed). */
const char *wf_fabric_state_get_json(const wf_fabric_state *s, const char *name);

/* save(path, state, filter): the checkpoint container (a safetensors file any reader opens):
 *  - module "model": tensors "model/<param name>";
 *  - optimizer "optimizer": tensors "optimizer/state/<i>/<key>", metadata
 *    "optimizer/param_groups" (JSON);
 *  - scheduler, int, double, string, rng, precision: metadata "<name>" holding JSON;
 *  - tensor "t": tensor "t";
 *  - metadata "weft/format" = "weft-checkpoint-1" and "weft/entries" (JSON name -> kind);
 *  - a CRC-32 per tensor (io.h). The save is atomic (temporary file, fsync, rename).
 * filter (may be NULL) maps entry names to predicates on (tensor name, tensor): only tensors
 * for which it returns true are saved. A filter naming an entry not in the state: WF_EINVAL.
 * Rank 0 writes; ends with a barrier. Returns 0 or a code (WF_EIO names the path).
 * Under "fsdp" every rank takes part. fsdp.state_dict_type "sharded" (the default): path is a
 * folder, each rank writing its rows of every module and optimizer tensor in parallel, and
 * index.json (docs/distributed.md); a filter or a checkpoint IO plugin is WF_ENOTSUP there.
 * "full": one file (the same as without FSDP), gathered to rank 0 piece by piece, so rank 0
 * never holds the whole model. Both load at any world size. */
typedef bool (*wf_save_filter_fn)(const char *name, wf_tensor *t, void *ud);
typedef struct wf_save_filter {
    const char *key;       /* entry name; an array of filters ends with key NULL */
    wf_save_filter_fn fn;
    void *ud;
} wf_save_filter;
int wf_fabric_save(wf_fabric *fab, const char *path, wf_fabric_state *state, const wf_save_filter *filter);

/* load(path, state, strict): restore every entry of state in place from the checkpoint and
 * return what the checkpoint holds beyond it (a new state owned by the caller: modules and
 * optimizers as WF_STATE_TENSORS, the rest as their kinds). With state NULL, return the
 * whole checkpoint. strict: an entry requested but missing from the file is WF_ENOTFOUND and
 * modules load strictly (missing/unexpected parameter names); not strict: missing entries
 * are skipped and modules load what matches. Refuses truncated, corrupted (CRC) and absurd
 * files (a header length beyond the file or 100 MB) with WF_ECORRUPT before allocating.
 * path may be a sharded checkpoint folder (it holds index.json), saved at any world size:
 * under "fsdp" each rank reads only its rows of each module and optimizer tensor, under any
 * other strategy every rank reads the whole tensors; every rank must call it (collective),
 * and a damaged folder is refused on every rank before anything is written. A full file
 * into an FSDP model is read by rows too.
 * Returns NULL + error on failure (objects already restored may have changed). */
wf_fabric_state *wf_fabric_load(wf_fabric *fab, const char *path, wf_fabric_state *state, bool strict);
/* load_raw(path, obj, strict): a plain safetensors file not written by Fabric (e.g.
 * safetensors.torch.save_file(model.state_dict())) into a module; for an optimizer, a file
 * holding its flattened state ("state/<i>/<key>" tensors and a "param_groups" metadata
 * entry, as wf_fabric_save writes under a prefix). Returns 0 or a code. */
int wf_fabric_load_raw_module(wf_fabric *fab, const char *path, wf_module *m, bool strict);
int wf_fabric_load_raw_optimizer(wf_fabric *fab, const char *path, wf_optimizer *opt);

/* ================================================================ throughput
 * Lightning's Throughput / ThroughputMonitor, measure_flops and get_available_flops
 * (lightning.fabric.utilities.throughput), in fabric/throughput.c. */

/* Peak FLOP/s of a device for a precision (get_available_flops): device_name is matched
 * without case ("NVIDIA H100 80GB HBM3" is the H100 SXM, "H100 PCIe", "H100 NVL", "H200",
 * "A100"); precision is a Fabric precision name ("bf16-mixed", "32-true", ...; "32-true"
 * with tf32 = true gives the TF32 tensor-core figure). Dense figures from NVIDIA's data
 * sheets (no sparsity). Returns the FLOP/s, or 0 with WF_ENOTFOUND for a device or
 * precision the table does not hold (MFU is then unknown, as Lightning returns None). */
double wf_get_available_flops(const char *device_name, const char *precision, bool tf32);
/* The CPU's peak: cores x GHz x FLOPs per cycle per core. cores <= 0: the online cores;
 * ghz <= 0: the highest "cpu MHz" of /proc/cpuinfo; flops_per_cycle <= 0: 32 for float32
 * (two 8-lane FMA units, AVX2), 16 for float64 (dtype_bytes 8). Returns 0 + WF_ENOTFOUND
 * when the clock cannot be read and ghz was not given. */
double wf_cpu_peak_flops(int cores, double ghz, double flops_per_cycle, int dtype_bytes);
/* The model name of a device (CPU: /proc/cpuinfo's "model name"; cuda:N: the N-th entry of
 * /proc/driver/nvidia/gpus, in PCI order) into buf. Returns 0 or WF_ENOTFOUND. */
int wf_device_name(wf_device dev, char *buf, size_t n);

/* measure_flops(model, forward_fn, loss_fn): the FLOPs of one forward (and, with loss_fn,
 * its loss and backward), counted exactly as 2*m*n*k for every matrix product the ops run
 * (matmul, bmm, linear, conv2d and their gradients; elementwise work is not counted, as
 * PyTorch's FlopCounterMode). The model's parameters must be on the meta device (build it
 * there: wf_set_default_device(WF_META) or wf_module_to(m, WF_META, ...)): nothing is
 * computed and nothing allocated, so a 350M model costs microseconds. forward returns the
 * output (on meta) for the model; loss (may be NULL) turns it into a scalar. ud is passed
 * to both. Gradients the backward leaves on the parameters are dropped. Runs in its own
 * scope. Returns 0 and *flops, or a code (WF_EDEVICE for a parameter off the meta device,
 * the forward's or backward's error). */
typedef wf_tensor *(*wf_flops_forward_fn)(wf_module *model, void *ud);
typedef wf_tensor *(*wf_flops_loss_fn)(wf_tensor *output, void *ud);
int wf_measure_flops(wf_module *model, wf_flops_forward_fn forward, wf_flops_loss_fn loss, void *ud,
                     int64_t *flops);

/* Throughput over a sliding window of the last window_size updates (Lightning's Throughput).
 * Each update gives the run's totals so far: time (seconds since any fixed start), batches,
 * samples, lengths (tokens; < 0 when not tracked) and the FLOPs of this device since the
 * previous update (< 0 when not tracked). */
typedef struct wf_throughput wf_throughput;
typedef struct wf_throughput_opts {
    double available_flops;   /* peak FLOP/s of one device; 0: no MFU (monitor: looked up) */
    int world_size;           /* 0 = 1 (monitor: the Fabric's) */
    int window_size;          /* 0 = 100; must be >= 2 */
    const char *separator;    /* NULL = "/" ("device/mfu") */
} wf_throughput_opts;
wf_throughput *wf_throughput_new(const wf_throughput_opts *o);   /* NULL + WF_EINVAL / WF_ENOMEM */
/* Errors (WF_EINVAL, nothing recorded): time or a count going backwards, negative counts,
 * lengths < samples, lengths given on some updates and not others. */
int wf_throughput_update(wf_throughput *t, double time, int64_t batches, int64_t samples, int64_t lengths,
                         double flops);
/* The metrics (compute()): "time", "batches", "samples" and "lengths" (the latest totals)
 * always; once the window is full, "device/batches_per_sec", "device/samples_per_sec",
 * "device/items_per_sec" (with lengths), "device/flops_per_sec" and "device/mfu" (with flops
 * and available_flops), plus the world's "batches_per_sec", "samples_per_sec",
 * "items_per_sec", "flops_per_sec" when world_size > 1. Rates use the window's first and last
 * updates; FLOPs sum the updates after the first. */
#define WF_THROUGHPUT_MAX_METRICS 16
typedef struct wf_throughput_metrics {
    int n;
    const char *names[WF_THROUGHPUT_MAX_METRICS];   /* owned by the wf_throughput */
    double values[WF_THROUGHPUT_MAX_METRICS];
} wf_throughput_metrics;
int wf_throughput_compute(const wf_throughput *t, wf_throughput_metrics *out);
/* A metric by name (NAN when absent, e.g. before the window fills). */
double wf_throughput_metric(const wf_throughput_metrics *m, const char *name);
void wf_throughput_reset(wf_throughput *t);
void wf_throughput_free(wf_throughput *t);   /* NULL ok */

/* ThroughputMonitor(fabric): a wf_throughput whose world size is the Fabric's and whose
 * available_flops (when opts leave it 0) is the peak of the Fabric's device for its
 * precision (wf_device_name + wf_get_available_flops; the CPU: wf_cpu_peak_flops), and
 * compute_and_log sends the metrics to the Fabric's loggers (wf_fabric_log_dict at step).
 * Free with wf_throughput_free; the Fabric must outlive it. */
wf_throughput *wf_throughput_monitor_new(wf_fabric *fab, const wf_throughput_opts *o);
int wf_throughput_compute_and_log(wf_throughput *t, int64_t step, wf_throughput_metrics *out);
/* The peak FLOP/s the throughput uses for MFU (0: none). */
double wf_throughput_available_flops(const wf_throughput *t);

#ifdef __cplusplus
}
#endif
#endif
