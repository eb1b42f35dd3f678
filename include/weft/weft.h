/* weft/weft.h: everything. */
#ifndef WEFT_H
#define WEFT_H
#include "tensor.h"
#include "autograd.h"
#endif
