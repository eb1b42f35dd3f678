/* fabric/cli/consolidate.c: `weft consolidate FOLDER [--output FILE]` (Lightning's
 * consolidate_checkpoint): a sharded checkpoint folder (fabric/sharded_checkpoint.h) as one
 * full weft checkpoint file, which any safetensors reader opens and wf_fabric_load reads.
 * The output defaults to FOLDER.consolidated, as Lightning names it, and is never replaced.
 * Exit status: 0, 1 when the folder cannot be consolidated (the reason on stderr), 2 for a
 * usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_impl.h"
#include "fabric/sharded_checkpoint.h"
#include "weft/tensor.h"

static const char *usage_consolidate =
    "usage: weft consolidate FOLDER [--output FILE]\n"
    "\n"
    "Write the sharded checkpoint in FOLDER (rank-<k>-of-<N>.safetensors and index.json) as one\n"
    "full checkpoint file: a safetensors file every reader opens, loadable at any world size.\n"
    "\n"
    "Options (also as --output=FILE; --output_file as Lightning spells it):\n"
    "  --output FILE   where to write it (default: FOLDER.consolidated); never replaced\n"
    "  -h, --help      this text\n";

int weft_cmd_consolidate(int argc, char **argv) {
    const char *folder = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_consolidate, stdout);
            return 0;
        }
        const char *v = NULL;
        for (int k = 0; k < 2 && !v; k++) {
            const char *opt = k ? "--output_file" : "--output";
            size_t l = strlen(opt);
            if (!strncmp(a, opt, l) && a[l] == '=') v = a + l + 1;
            else if (!strcmp(a, opt)) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "weft consolidate: %s needs a value\n\n%s", opt, usage_consolidate);
                    return 2;
                }
                v = argv[++i];
            }
        }
        if (v) {
            if (!*v) {
                fprintf(stderr, "weft consolidate: empty output path\n\n%s", usage_consolidate);
                return 2;
            }
            out = v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "weft consolidate: unknown option \"%s\"\n\n%s", a, usage_consolidate);
            return 2;
        } else if (folder) {
            fprintf(stderr, "weft consolidate: one FOLDER only (got \"%s\" and \"%s\")\n\n%s", folder, a,
                    usage_consolidate);
            return 2;
        } else {
            folder = a;
        }
    }
    if (!folder || !*folder) {
        fprintf(stderr, "weft consolidate: missing FOLDER\n\n%s", usage_consolidate);
        return 2;
    }
    char *def = NULL;
    if (!out) {
        size_t l = strlen(folder);
        while (l > 1 && folder[l - 1] == '/') l--;
        if (!(def = malloc(l + sizeof ".consolidated"))) return 1;
        memcpy(def, folder, l);
        memcpy(def + l, ".consolidated", sizeof ".consolidated");
        out = def;
    }
    int rc = wf__sharded_consolidate(folder, out);
    if (rc) fprintf(stderr, "weft consolidate: %s\n", wf_error_message());
    else printf("weft consolidate: wrote %s\n", out);
    free(def);
    return rc ? 1 : 0;
}
