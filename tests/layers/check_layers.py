#!/usr/bin/env python3
"""tests/layers/check_layers.py SOURCE_ROOT: the layer graph, derived from the #includes.

Arrows run one way: fabric -> dist -> precision/io -> optim/nn -> autograd -> tensor -> kernels
(tensor/cpu, tensor/cuda). A file may include headers of its own layer and of the layers below
it; including a header of a layer above it is an upward arrow. Public headers count as the
layer they describe (weft/autograd.h is autograd, weft/fabric.h is fabric, ...). Kernels may
include the tensor layer's headers: they share its tensor struct (tensor_impl.h), its op list
(ops.def) and its RNG math (random_math.h); anything above tensor is off limits to them.

Known upward arrows are listed in KNOWN below, each with its reason (the op front-ends that
recorded autograd nodes from tensor/ moved to autograd/fn_*.c in issue 13). The check fails
on any arrow not in KNOWN, and on a KNOWN arrow that is gone (so the list only shrinks).
"""
import glob
import os
import re
import sys

LAYERS = {"tensor/cpu": 0, "tensor/cuda": 0, "tensor": 1, "autograd": 2, "nn": 3, "optim": 3,
          "precision": 4, "io": 4, "dist": 5, "fabric": 6}
PUBLIC = {"tensor.h": 1, "cuda.h": 1, "version.h": 1, "autograd.h": 2, "nn.h": 3, "optim.h": 3,
          "io.h": 4, "data.h": 4, "precision.h": 4, "dist.h": 5, "fabric.h": 6, "weft.h": 6}
NAMES = {0: "kernels", 1: "tensor", 2: "autograd", 3: "optim/nn", 4: "precision/io", 5: "dist", 6: "fabric"}

KNOWN = {
    # The public autocast API (wf_autocast_begin, ...) is declared in precision.h, where a user
    # looks for it; its state lives with the differentiable front-ends that read it
    # (wf__autocast_arg), below precision/. Only the prototypes cross: no call goes up.
    ("autograd/autocast.c", "weft/precision.h"),
    # io/ and fabric/ sources (safetensors, sharded checkpoints: wf_set_grad_enabled) reach
    # weft/autograd.h through tensor_impl.h; dropping it needs an include in each of them.
    # tensor/ itself uses nothing from it.
    ("tensor/tensor_impl.h", "weft/autograd.h"),
}


def layer_of(path):
    for folder in sorted(LAYERS, key=len, reverse=True):
        if path.startswith(folder + "/"):
            return LAYERS[folder]
    return None


def included_layer(inc, src, root):
    """The layer of an #include "inc" written in src, and the name it is reported by."""
    if inc.startswith("weft/"):
        return PUBLIC.get(inc[5:]), inc
    for cand in (os.path.normpath(os.path.join(os.path.dirname(src), inc)), os.path.normpath(inc)):
        if os.path.exists(os.path.join(root, cand)):
            return layer_of(cand), cand
    return None, inc


def main():
    root = sys.argv[1]
    arrows = set()
    for folder in LAYERS:
        for path in glob.glob(os.path.join(root, folder, "*")):
            rel = os.path.relpath(path, root)
            if not re.search(r"\.(c|h|cu|cuh)$", rel):
                continue
            mine = layer_of(rel)
            with open(path, errors="replace") as f:
                text = f.read()
            for inc in re.findall(r'^\s*#\s*include\s*"([^"]+)"', text, re.M):
                theirs, name = included_layer(inc, rel, root)
                if theirs is None or theirs <= mine or (mine == 0 and theirs == 1):
                    continue
                arrows.add((rel, name, mine, theirs))
    found = {(a, b) for a, b, _, _ in arrows}
    new = sorted(x for x in arrows if (x[0], x[1]) not in KNOWN)
    gone = sorted(KNOWN - found)
    for a, b, m, t in new:
        print(f"upward arrow: {a} ({NAMES[m]}) includes {b} ({NAMES[t]})")
    for a, b in gone:
        print(f"gone (remove it from KNOWN in {__file__}): {a} includes {b}")
    print(f"{len(found)} upward arrow(s), {len(KNOWN)} known, {len(new)} new, {len(gone)} gone")
    return 1 if new or gone else 0


if __name__ == "__main__":
    sys.exit(main())
