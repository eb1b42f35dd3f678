/* autograd/backward_conv.c: placeholder until the real code lands. */
typedef int wf__placeholder_backward_conv;
