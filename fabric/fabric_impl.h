/* fabric/fabric_impl.h: private structures of the Fabric layer. Not installed. */
#ifndef WEFT_FABRIC_IMPL_H
#define WEFT_FABRIC_IMPL_H

#include "weft/fabric.h"
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

/* ---------------------------------------------------------------- strategy (strategy.c) */
typedef struct wf_strategy_vt {
    const char *name;                 /* canonical name */
    bool multi_process;               /* launches one process per device */
    bool needs_cuda;                  /* deepspeed */
    bool sharded;                     /* fsdp, deepspeed stage 3 */
} wf_strategy_vt;
/* Look up a strategy name; NULL if unknown. */
const wf_strategy_vt *wf__strategy_find(const char *name);
/* "auto, single_device, ddp, ..." for messages (static). */
const char *wf__strategy_names(void);

/* ---------------------------------------------------------------- connector (connector.c) */
typedef struct wf_connector_result {
    const wf_accelerator_vt *accel;
    const wf_strategy_vt *strategy;
    int devices[64];                  /* indices (cuda) or 0..n-1 (cpu processes) */
    int n_devices;
    int num_nodes;
    char precision[32];               /* as requested (after env), resolved by precision.h */
} wf_connector_result;
/* Resolve cfg + environment. warn(fab, text) records warnings. Returns 0 or a code. */
int wf__connector_resolve(wf_fabric *fab, const wf_fabric_config *cfg, wf_connector_result *out);
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
    int global_rank, local_rank, node_rank, world_size;
    wf_callback *callbacks;
    int n_callbacks;
    wf_logger **loggers;
    int n_loggers;
    char *warnings;                   /* joined lines */
    size_t warnings_len;
    bool quiet;

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
    int no_sync_depth;
    int rzf_depth;
};

struct wf_fabric_loader {
    wf_fabric *fab;
    wf_dataloader *dl;
    bool move;
};

/* checkpoint.c needs the Fabric's precision */
#endif
