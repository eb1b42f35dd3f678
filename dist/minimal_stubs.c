/* dist/minimal_stubs.c: what the minimal preset has instead of multi-process dist/, compiled as
 * one object (each object's own ELF headers and tables cost the 1 MB budget about 1 KB): the
 * job environments refused by name, the collectives, the rendezvous store, the timeline and
 * the launcher, each failing with its name. Each stub stays its own file to read. */
#include "cluster_env_fill_stub.c"
#include "collectives_stub.c"
#undef MINIMAL
#include "store_stub.c"
#undef MINIMAL
#include "trace_stub.c"
#include "launch_stub.c"
