/* tests/fuzz/fuzz_weft_run.c: `weft run`'s argument parsing (fabric/cli/weft.c, parse_run),
 * which checks --accelerator, --devices, --num-nodes, --node-rank, --main-port and the rest
 * before anything starts. The input is the argument list after "run", split at newlines or
 * NULs; its first byte is the number of CUDA devices the machine pretends to have (0..8). */
#define WEFT_CLI_NO_MAIN
#include "fabric/cli/weft.c"

#include "fuzz_util.h"

/* cmd_run starts processes and main's text is main's: present in the included file, never
 * used here */
int (*const fuzz_unused_cmd_run)(int, char **) = cmd_run;
const char *const *const fuzz_unused_usage = &usage_main;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int gpus = data[0] % 9;
    char *argv[65], *block;
    int argc = fuzz_fields(data + 1, size - 1, argv, 64, &block);
    if (!block) return 0;
    argv[argc] = NULL;
    run_args a;
    char msg[1024];
    bool usage;
    int rc = parse_run(argc, argv, gpus, &a, msg, sizeof msg, &usage);
    if (rc == 0 && !a.help) {
        /* what cmd_run relies on */
        if (a.prog < 0 || a.prog >= argc || a.nprocs < 1 || a.nodes < 1 || a.node_rank < 0 ||
            a.node_rank >= a.nodes || a.port < 0 || a.port > 65535)
            abort();
        if (!strcmp(a.kind, "cuda") && a.nprocs > gpus) abort();
    } else if (rc && (rc != 2 || !msg[0])) {
        abort();
    }
    free(block);
    return 0;
}
