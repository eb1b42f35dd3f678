/* fabric/fabric_impl.h: private structures of the Fabric layer. Not installed. */
#ifndef WEFT_FABRIC_IMPL_H
#define WEFT_FABRIC_IMPL_H

#include "weft/fabric.h"
#include "weft/dist.h"
#include "weft/io.h"
#include "tensor/tensor_impl.h"

/* ---------------------------------------------------------------- accelerator (accelerator.c) */
typedef struct wf_accelerator_vt {
    const char *name;                 /* "cpu", "cuda" */
    wf_device_type device_type;
    bool (*is_available)(void);
    int (*auto_device_count)(void);   /* devices "auto" */
    int (*max_devices)(void);         /* devices "-1" */
    bool takes_process_count;         /* CPU: devices is a process count, not indices */
} wf_accelerator_vt;
extern const wf_accelerator_vt wf__accel_cpu, wf__accel_cuda;

/* ---------------------------------------------------------------- strategy (strategy*.c)
 * A strategy owns the processes' collectives and the training step (Lightning's Strategy):
 * Fabric only delegates. The registry entry (wf_strategy_vt) names a strategy and its
 * rules; wf__strategy_new builds the object, whose ops implement it. */
typedef struct wf_strategy_vt {
    const char *name;                 /* canonical name */
    bool multi_process;               /* launches one process per device */
    int zero_stage;                   /* deepspeed*: ZeRO's stage (1, 2, 3), else 0 */
    bool sharded;                     /* fsdp, deepspeed stage 3 */
    bool offload;                     /* "_offload": optimizer state (and stage 3's shards) on the host */
    bool nvme;                        /* "_offload_nvme": refused (no NVMe offload in weft) */
} wf_strategy_vt;
/* Look up a strategy name; NULL if unknown. */
const wf_strategy_vt *wf__strategy_find(const char *name);
/* "auto, single_device, ddp, ..." for messages (static). */
const char *wf__strategy_names(void);

/* FSDP's options, checked and copied from the config (wf__fsdp_settings_from). */
#define WF_FSDP_MAX_WRAP_TYPES 16
typedef struct wf__fsdp_settings {
    int sharding;                     /* fsdp_sharding (fsdp_unit.h): FULL_SHARD = 0 */
    wf_dtype reduce_dtype;            /* WF_F32 unless set */
    bool full_state_dict;             /* state_dict_type "full" */
    bool cpu_offload;
    int64_t min_num_params;
    char wrap_types[WF_FSDP_MAX_WRAP_TYPES][64];
    int n_wrap_types;
    char ac_types[WF_FSDP_MAX_WRAP_TYPES][64];   /* activation_checkpointing_policy */
    int n_ac_types;
} wf__fsdp_settings;
/* Check cfg's FSDP options (any strategy: a typo is an error at wf_fabric_new) and resolve
 * them; strategy_name's "fsdp_cpu_offload" sets cpu_offload. num_nodes is unused (HYBRID_SHARD
 * checks the nodes at launch). 0 or WF_EINVAL naming the value and the valid ones. */
int wf__fsdp_settings_from(const wf_fsdp_opts *o, const char *strategy_name, int num_nodes, wf__fsdp_settings *out);

typedef struct wf_strategy wf_strategy;
typedef struct wf_strategy_ops {
    /* after launch: the process group (multi-process strategies) */
    int (*setup_environment)(wf_strategy *s);
    /* the module, converted and moved: DDP broadcasts rank 0's parameters and buffers */
    int (*setup_module)(wf_strategy *s, wf_module *m);
    /* the precision's backward, then the gradient synchronization (unless no_backward_sync) */
    int (*backward)(wf_strategy *s, wf_tensor *loss, wf_module *m);
    /* before the outermost forward of set-up module m (optional): DDP broadcasts rank 0's
     * buffers (unless ddp.no_broadcast_buffers) */
    int (*pre_forward)(wf_strategy *s, wf_module *m);
    int (*optimizer_step)(wf_strategy *s, wf_optimizer *o, bool *skipped);
    int (*barrier)(wf_strategy *s, const char *name);
    /* t in place from src */
    int (*broadcast)(wf_strategy *s, wf_tensor *t, int src);
    int (*broadcast_bytes)(wf_strategy *s, void *buf, size_t n, int src);
    wf_tensor *(*all_gather)(wf_strategy *s, wf_tensor *t, bool sync_grads);
    wf_tensor *(*all_reduce)(wf_strategy *s, wf_tensor *t, wf_fabric_reduce op);
    /* all=true: true when every rank decided true; else when any did */
    int (*reduce_boolean_decision)(wf_strategy *s, bool decision, bool all, bool *out);
    /* (code, msg) from rank 0 of the world (or of this node when local) to its other ranks:
     * rank 0 passes its values, the others receive them (rank_zero_first, save results) */
    int (*broadcast_status)(wf_strategy *s, bool local, int *code, char *msg, size_t n);
    /* optional: after setup_module, the optimizers built on m's parameters (m NULL: any set-up
     * module's) follow the strategy's parameters: FSDP points them at the shards */
    int (*setup_optimizers)(wf_strategy *s, wf_module *m, wf_optimizer *const *opts, int n);
    /* optional: the tensors whose gradients the optimizer sees, in place of ps[i] (FSDP: a full
     * parameter's shard), so clipping reads the gradients that exist */
    void (*grad_params)(wf_strategy *s, wf_tensor **ps, int n);
    /* optional: clip_grad_norm_ over the ranks' gradients (FSDP: the global norm over shards) */
    int (*clip_grad_norm)(wf_strategy *s, wf_tensor *const *ps, int n, double max_norm, double norm_type,
                          bool error_if_nonfinite, double *total_norm);
    /* rank 0 writes w through the checkpoint IO (unless prior, an earlier failure on rank 0,
     * is nonzero); every rank returns rank 0's result. Other ranks pass w NULL. */
    int (*save_checkpoint)(wf_strategy *s, wf_st_writer *w, const char *path, int prior);
    void (*teardown)(wf_strategy *s);
} wf_strategy_ops;

struct wf_strategy {
    const wf_strategy_ops *ops;
    const wf_strategy_vt *desc;
    wf_precision *precision;          /* borrowed from the Fabric */
    wf_device device;
    wf_cluster_info cluster;
    wf_checkpoint_io io;              /* the plugin's or the default */
    double timeout_s;
    int no_sync_depth;                /* open no_backward_sync blocks that disable the sync */
    wf_process_group *pg;             /* multi-process: the world group (owned) */
    wf_process_group *node_pg;        /* multi-process: this node's ranks (owned) */
    wf_ddp_opts ddp;                  /* the config's DDP options (comm_hook points at comm_hook_buf) */
    char pg_backend[16];              /* the config's process_group_backend ("" = auto) */
    char comm_hook_buf[32];
    wf__fsdp_settings fsdp;           /* the config's FSDP options, resolved (strategy_fsdp.c) */
    void *impl;
    void *fsdp_impl;                  /* FSDP's units (strategy_fsdp.c); impl stays DDP's */
    void *zero_impl;                  /* ZeRO stages 1 and 2's partitions (strategy_zero.c) */
    int zero_n_models;                /* deepspeed*: modules set up (backward needs the model when > 1) */
};
/* Build the strategy for desc (NULL + error). cluster: where this process stands. */
wf_strategy *wf__strategy_new(const wf_strategy_vt *desc, wf_precision *precision, wf_device device,
                              const wf_cluster_info *cluster, const wf_checkpoint_io *io, double timeout_s);
void wf__strategy_free(wf_strategy *s);
/* DDP's collectives, shared by the strategies built on DDP's process group (FSDP, ZeRO):
 * their ops tables point at these instead of forwarding through wf__ddp_ops. */
int wf__ddp_barrier(wf_strategy *s, const char *name);
int wf__ddp_broadcast(wf_strategy *s, wf_tensor *t, int src);
int wf__ddp_broadcast_bytes(wf_strategy *s, void *buf, size_t n, int src);
wf_tensor *wf__ddp_all_gather(wf_strategy *s, wf_tensor *t, bool sync_grads);
wf_tensor *wf__ddp_all_reduce(wf_strategy *s, wf_tensor *t, wf_fabric_reduce op);
int wf__ddp_reduce_boolean_decision(wf_strategy *s, bool decision, bool all, bool *out);
int wf__ddp_broadcast_status(wf_strategy *s, bool local, int *code, char *msg, size_t n);
int wf__ddp_save_checkpoint(wf_strategy *s, wf_st_writer *w, const char *path, int prior);
/* the ops-table entries of those collectives, one list for DDP, FSDP and ZeRO's tables */
#define WF__DDP_COLLECTIVE_OPS                                                                   \
    .barrier = wf__ddp_barrier, .broadcast = wf__ddp_broadcast, .broadcast_bytes = wf__ddp_broadcast_bytes, \
    .all_gather = wf__ddp_all_gather, .all_reduce = wf__ddp_all_reduce,                          \
    .reduce_boolean_decision = wf__ddp_reduce_boolean_decision,                                  \
    .broadcast_status = wf__ddp_broadcast_status, .save_checkpoint = wf__ddp_save_checkpoint
extern const wf_strategy_ops wf__single_device_ops, wf__ddp_ops, wf__fsdp_ops;
/* "deepspeed*" (strategy_zero.c): stages 1 and 2 (zero_ops) partition the optimizer state (and
 * stage 2 the gradients) over the ranks; stage 3 (zero3_ops) is FSDP's FULL_SHARD units. */
extern const wf_strategy_ops wf__zero_ops, wf__zero3_ops;
/* ZeRO stages 1/2 for the checkpoint code, reached through the wf__fsdp_* functions below
 * (strategy_fsdp.c forwards to them): active when s runs stage 1 or 2 with several ranks. */
#ifndef WEFT_MINIMAL
bool wf__zero_active(const wf_strategy *s);
#else   /* one process: constant, so that the compiler drops the sharded paths (the size budget) */
static inline bool wf__zero_active(const wf_strategy *s) { (void)s; return false; }
#endif
int wf__zero_summon(wf_strategy *s, wf_module *m, bool gather);
int wf__zero_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out, bool *sharded);
int wf__zero_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows, bool *sharded);
/* Counters since launch (tests, bench): gradient reductions (one per parameter and backward)
 * and parameter all-gathers (one per model and step). All 0 unless stage 1/2. */
typedef struct wf__zero_counters { int64_t reduces, gathers; int stage; } wf__zero_counters;
void wf__zero_counters_get(const wf_strategy *s, wf__zero_counters *out);
/* FSDP (strategy_fsdp.c), for the Fabric and its checkpoints. */
#ifndef WEFT_MINIMAL
bool wf__fsdp_active(const wf_strategy *s);           /* FSDP ops with sharded parameters */
#else   /* as wf__zero_active: the checkpoints' and the Fabric's FSDP paths are dead code there */
static inline bool wf__fsdp_active(const wf_strategy *s) { (void)s; return false; }
#endif
/* Counters since launch (tests, bench): unit all-gathers and reduce-scatters done, the most
 * all-gathers in flight at once. All 0 when s is not FSDP. */
typedef struct wf__fsdp_counters { int64_t gathers, reduces; int max_in_flight, n_units; } wf__fsdp_counters;
void wf__fsdp_counters_get(const wf_strategy *s, wf__fsdp_counters *out);
/* Gather every unit of set-up module m (gather) so its parameter handles hold the full values,
 * or (!gather) copy each rank's rows of them back into the shards and free them again.
 * Collective: every rank calls it. */
#ifndef WEFT_MINIMAL
int wf__fsdp_summon(wf_strategy *s, wf_module *m, bool gather);
#else   /* nothing is sharded in one process */
static inline int wf__fsdp_summon(wf_strategy *s, wf_module *m, bool gather) { (void)s, (void)m, (void)gather; return 0; }
#endif
/* The full value of t, a set-up module's parameter or an optimizer's shard, or local, a tensor
 * with t's rows (optimizer state), gathered from every rank: rank 0 gets a new tensor (the
 * caller's scope), the others NULL. *sharded is false (and nothing is gathered) when t is not
 * sharded by FSDP. Collective. */
#ifndef WEFT_MINIMAL
int wf__fsdp_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out, bool *sharded);
#else   /* nothing is sharded in one process */
static inline int wf__fsdp_gather_full(wf_strategy *s, const wf_tensor *t, wf_tensor *local, wf_tensor **out,
                                       bool *sharded) {
    (void)s, (void)t, (void)local;
    *out = NULL;
    *sharded = false;
    return 0;
}
#endif
/* This rank's rows of full into the shard of t (a parameter or its shard) or into local
 * (optimizer state with t's rows): *sharded false when t is not sharded. */
#ifndef WEFT_MINIMAL
int wf__fsdp_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows, bool *sharded);
#else   /* nothing is sharded in one process */
static inline int wf__fsdp_rows_of(wf_strategy *s, const wf_tensor *t, wf_tensor *full, wf_tensor **rows,
                                   bool *sharded) {
    (void)s, (void)t, (void)full;
    *rows = NULL;
    *sharded = false;
    return 0;
}
#endif
/* Tensors of m built on the meta device (init_module(empty_init) under FSDP) move to device
 * without data: parameters get their rows at FSDP's setup, buffers their values now. */
#ifndef WEFT_MINIMAL
int wf__fsdp_adopt_meta(wf_module *m, wf_device device, const char *op);
#else   /* nothing is sharded in one process */
static inline int wf__fsdp_adopt_meta(wf_module *m, wf_device device, const char *op) { (void)m, (void)device, (void)op; return 0; }
#endif
/* Shared by the strategies: the default checkpoint IO (atomic safetensors write). */
extern const wf_checkpoint_io wf__default_checkpoint_io;
/* The parameters of m that have gradients (array owned by the caller, wf__free(p, 0)). */
int wf__module_params(wf_module *m, wf_tensor ***out);

/* ---------------------------------------------------------------- connector (connector.c) */
#define WF_CONNECTOR_MAX_WARNINGS 4
typedef struct wf_connector_result {
    const wf_accelerator_vt *accel;
    const wf_strategy_vt *strategy;
    int devices[64];                  /* indices (cuda) or 0..n-1 (cpu processes) */
    int n_devices;
    int num_nodes;
    char precision[32];               /* as requested (after env), resolved by precision.h */
    wf_cluster_info cluster;          /* the plugin's or the detected environment */
    char pg_backend[16];              /* process_group_backend: "" (auto), "mpi", "nccl" */
    char warnings[WF_CONNECTOR_MAX_WARNINGS][256];   /* for the Fabric to emit */
    int n_warnings;
} wf_connector_result;
/* Resolve cfg + environment. Returns 0 or a code. */
int wf__connector_resolve(const wf_fabric_config *cfg, wf_connector_result *out);
void wf__fabric_warn(wf_fabric *fab, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- the object (fabric.c) */
typedef struct wf_fab_module {
    wf_module *m;
    int pre_hook, post_hook;          /* forward hook handles */
    wf_tensor **params;               /* parameters with a plain-backward detector */
    int *hook_ids;
    int n_params;
} wf_fab_module;

struct wf_fabric {
    uint64_t id;                      /* key of the live-Fabric registry (module hooks' ud) */
    wf_connector_result conn;
    wf_device device;
    wf_precision *precision;
    wf_strategy *strategy;
    bool launched;                    /* processes exist and the environment is set up */
    int global_rank, local_rank, node_rank, world_size;
    wf_callback *callbacks;
    int n_callbacks;
    wf_logger **loggers;
    int n_loggers;
    char *warnings;                   /* joined lines */
    size_t warnings_len;
    bool quiet;
    bool warned_ac_policy;            /* the activation_checkpointing_policy warning (non-FSDP) */

    wf_fab_module *modules;
    int n_modules, cap_modules;
    wf_optimizer **opts;
    int n_opts, cap_opts;

    int forward_depth;                /* nesting of set-up modules' forwards */
    bool in_backward;                 /* inside wf_fabric_backward */
    bool plain_backward_seen;         /* a detector fired outside wf_fabric_backward */
    bool force_backward_check;        /* tests: detect plain backward whatever the precision */
    int init_depth;
#define WF_FABRIC_MAX_INIT_DEPTH 16
    bool init_prev_skip[WF_FABRIC_MAX_INIT_DEPTH];   /* skip-init setting to restore per level */
    bool init_prev_meta[WF_FABRIC_MAX_INIT_DEPTH];   /* meta recording to restore per level */
    wf_device init_prev_dev[WF_FABRIC_MAX_INIT_DEPTH];
    bool init_meta;                   /* an FSDP empty_init context built tensors on the meta device */
    int no_sync_depth;
    bool no_sync_enabled[64];         /* per open no_backward_sync block */
    bool launch_called;
    int rzf_depth;
    bool rzf_local[16];               /* per open rank_zero_first block: local or global */
};

struct wf_fabric_loader {
    wf_fabric *fab;
    wf_dataloader *dl;
    bool move;
};

/* checkpoint.c needs the Fabric's precision */
#endif
