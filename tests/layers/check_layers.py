#!/usr/bin/env python3
"""tests/layers/check_layers.py [--self-test] SOURCE_ROOT: the layer graph, derived from the
#includes.

Arrows run one way: fabric -> dist -> precision/io -> optim/nn -> autograd -> tensor -> kernels
(tensor/cpu, tensor/cuda). A file may include headers of its own layer and of the layers below
it; including a header of a layer above it is an upward arrow, and the check fails on any.
Public headers count as the layer they describe (weft/autograd.h is autograd, weft/fabric.h is
fabric, ...), both when a source includes them and when they include each other. Kernels may
include the tensor layer's headers: they share its tensor struct (tensor_impl.h), its op list
(ops.def) and its RNG math (random_math.h); anything above tensor is off limits to them.

There are no exceptions (issue 13 removed the last two: tensor_impl.h no longer includes
weft/autograd.h, and autocast's public API is declared in weft/autograd.h, which precision.h
includes). --self-test plants upward arrows in a scratch copy of the tree and checks that each
is reported, so the check cannot pass by finding nothing.
"""
import os
import re
import shutil
import sys
import tempfile

LAYERS = {"tensor/cpu": 0, "tensor/cuda": 0, "tensor": 1, "autograd": 2, "nn": 3, "optim": 3,
          "precision": 4, "io": 4, "dist": 5, "fabric": 6}
PUBLIC = {"tensor.h": 1, "cuda.h": 1, "version.h": 1, "autograd.h": 2, "nn.h": 3, "optim.h": 3,
          "io.h": 4, "data.h": 4, "precision.h": 4, "dist.h": 5, "fabric.h": 6, "weft.h": 6}
NAMES = {0: "kernels", 1: "tensor", 2: "autograd", 3: "optim/nn", 4: "precision/io", 5: "dist", 6: "fabric"}
SOURCE = re.compile(r"\.(c|h|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def layer_of(path):
    if path.startswith("include/weft/"):
        return PUBLIC.get(path[len("include/weft/"):])
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


def sources(root):
    for top in list(LAYERS) + ["include/weft"]:
        if "/" in top and top.split("/")[0] in LAYERS:
            continue   # tensor/cpu, tensor/cuda: walked under tensor/
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(d, f), root)
                if SOURCE.search(rel):
                    yield rel


def upward_arrows(root):
    """Sorted (file, included name, its layer, the included layer) for each upward arrow."""
    arrows = set()
    for rel in sources(root):
        mine = layer_of(rel)
        if mine is None:
            continue
        with open(os.path.join(root, rel), errors="replace") as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            theirs, name = included_layer(inc, rel, root)
            if theirs is None or theirs <= mine or (mine == 0 and theirs == 1):
                continue
            arrows.add((rel, name, mine, theirs))
    return sorted(arrows)


def check(root):
    arrows = upward_arrows(root)
    for a, b, m, t in arrows:
        print(f"upward arrow: {a} ({NAMES[m]}) includes {b} ({NAMES[t]})")
    print(f"{len(arrows)} upward arrow(s)")
    return 1 if arrows else 0


# (file, line to append, the arrow the check must report or None for an allowed include)
PLANTED = [
    ("tensor/tensor_impl.h", '#include "weft/autograd.h"', ("tensor/tensor_impl.h", "weft/autograd.h")),
    ("autograd/autocast.c", '#include "weft/precision.h"', ("autograd/autocast.c", "weft/precision.h")),
    ("autograd/engine.c", '#include "../nn/nn_impl.h"', ("autograd/engine.c", "nn/nn_impl.h")),
    ("tensor/cpu/planted.c", '#include "../../autograd/autograd_impl.h"',
     ("tensor/cpu/planted.c", "autograd/autograd_impl.h")),
    ("include/weft/autograd.h", '#include "precision.h"', ("include/weft/autograd.h", "include/weft/precision.h")),
    ("include/weft/tensor.h", '#include "weft/nn.h"', ("include/weft/tensor.h", "weft/nn.h")),
    ("fabric/cli/planted.c", '#include "weft/tensor.h"', None),
    ("tensor/cuda/planted.cu", '#include "../tensor_impl.h"', None),
]


def self_test(root):
    """Each planted include, alone in a scratch copy of the tree: the arrow is reported (or,
    for an allowed one, nothing is)."""
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for top in ["tensor", "autograd", "nn", "optim", "precision", "io", "dist", "fabric", "include"]:
            src = os.path.join(root, top)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp, top))
        base = upward_arrows(tmp)
        if base:
            print(f"self-test: the tree itself has upward arrows: {base}")
            return 1
        for path, line, want in PLANTED:
            full = os.path.join(tmp, path)
            existed = os.path.exists(full)
            old = open(full).read() if existed else None
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "a") as f:
                f.write("\n" + line + "\n")
            got = [(a, b) for a, b, _, _ in upward_arrows(tmp)]
            if (want and got != [want]) or (not want and got):
                print(f"self-test: {line} in {path}: expected {[want] if want else []}, got {got}")
                failures += 1
            if existed:
                with open(full, "w") as f:
                    f.write(old)
            else:
                os.remove(full)
    print(f"self-test: {len(PLANTED)} planted includes, {failures} misjudged")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--self-test":
        sys.exit(self_test(sys.argv[2]))
    if len(sys.argv) != 2:
        sys.exit("usage: check_layers.py [--self-test] SOURCE_ROOT")
    sys.exit(check(sys.argv[1]))
