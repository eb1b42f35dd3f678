/* examples/embedded: train a 2-layer MLP inside one fixed memory arena.
 *
 *   build/examples/embedded/embedded [--arena-kb N] [--steps N] [--quiet]
 *
 * Prints the loss as it falls and the arena's high-water mark; with an arena too small
 * (--arena-kb 16) it says so and exits with status 1. See embedded.c for the training and
 * arena.c for the allocator. */
#include "embedded.h"

#include <stdio.h>

int main(int argc, char **argv) {
    /* stdio would malloc stdout's buffer at the first printf: give it a static one */
    static char out_buf[1024];
    setvbuf(stdout, out_buf, _IOLBF, sizeof out_buf);
    return embedded_main(argc, argv);
}
