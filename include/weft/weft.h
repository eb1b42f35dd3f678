/* weft/weft.h: everything. */
#ifndef WEFT_H
#define WEFT_H
#include "version.h"
#include "tensor.h"
#include "autograd.h"
#include "cuda.h"
#include "io.h"
#include "data.h"
#include "nn.h"
#include "optim.h"
#include "precision.h"
#include "dist.h"
#include "fabric.h"
#endif
