/* fabric/minimal_stubs.c: what the minimal preset has instead of the throughput utilities, the
 * multi-process strategies and sharded checkpoints, compiled as one object (each object's own
 * ELF headers and tables cost the 1 MB budget about 1 KB). Each stub stays its own file to read
 * and fails naming itself. */
#include "throughput_stub.c"
#undef MINIMAL
#include "strategy_dist_stub.c"
#include "sharded_checkpoint_stub.c"
