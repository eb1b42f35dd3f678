/* tensor/ops_matmul.c: placeholder until the real code lands. */
typedef int wf__placeholder_ops_matmul;
