/* fabric/cli/cli_impl.h: the `weft` program's subcommands beyond `run` (in their own files).
 * Each takes the arguments after its name and returns the exit status. */
#ifndef WEFT_CLI_IMPL_H
#define WEFT_CLI_IMPL_H

int weft_cmd_consolidate(int argc, char **argv);   /* fabric/cli/consolidate.c */

#endif
