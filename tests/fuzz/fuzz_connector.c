/* tests/fuzz/fuzz_connector.c: the strings Fabric parses (fabric/connector.c and
 * precision/plugins.c): accelerator, devices, strategy, precision, num_nodes,
 * process_group_backend in the config, and the WF_* variables `weft run` sets, which
 * override them. The input is newline- (or NUL-) separated fields:
 *     accelerator, devices, strategy, precision, num_nodes (an integer), backend,
 *     WF_ACCELERATOR, WF_DEVICES, WF_STRATEGY, WF_PRECISION, WF_NUM_NODES, WF_CLI_USED
 * An empty or missing field leaves the setting out (NULL, or the variable unset). */
#include <stdint.h>
#include <stdlib.h>

#include "fabric/fabric_impl.h"
#include "fuzz_util.h"

static const char *env_names[] = { "WF_ACCELERATOR", "WF_DEVICES", "WF_STRATEGY", "WF_PRECISION",
                                   "WF_NUM_NODES", "WF_CLI_USED" };
#define N_ENV ((int)(sizeof env_names / sizeof env_names[0]))

static const char *opt(char **f, int n, int i) { return i < n && f[i][0] ? f[i] : NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *fields[6 + N_ENV], *block;
    int n = fuzz_fields(data, size, fields, 6 + N_ENV, &block);
    if (!block) return 0;
    for (int i = 0; i < N_ENV; i++) {
        const char *v = opt(fields, n, 6 + i);
        if (v) setenv(env_names[i], v, 1);
        else unsetenv(env_names[i]);
    }
    const char *nodes = opt(fields, n, 4);
    wf_fabric_config c = {
        .accelerator = opt(fields, n, 0), .devices = opt(fields, n, 1), .strategy = opt(fields, n, 2),
        .precision = opt(fields, n, 3), .num_nodes = nodes ? (int)strtol(nodes, NULL, 10) : 0,
        .process_group_backend = opt(fields, n, 5), .quiet = true,
    };
    wf_connector_result r;
    if (!wf__connector_resolve(&c, &r)) {
        if (r.n_devices < 1 || r.n_devices > 64 || r.num_nodes < 1 || !r.accel || !r.strategy) abort();
        char warn[512];
        wf_precision *p = wf_precision_new(r.precision, WF_CPU, warn, sizeof warn);
        wf_precision_free(p);
    }
    for (int i = 0; i < N_ENV; i++) unsetenv(env_names[i]);
    free(block);
    return 0;
}
