/* tensor/ops_conv.c: placeholder until the real code lands. */
typedef int wf__placeholder_ops_conv;
