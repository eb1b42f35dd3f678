"""bench/trace_plot.py: draw WF_TRACE files (one per rank) as a timeline picture: one row per
rank and lane (host, compute stream, communication), one box per span, all_reduce boxes
labelled with their bucket. Needs matplotlib (pip install matplotlib); used to make the
picture in docs/distributed.md.

    python3 bench/trace_plot.py OUT.png trace.rank0.json trace.rank1.json [--from MS --to MS]
"""
import argparse, json

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("files", nargs="+")
p.add_argument("--from", dest="t0", type=float, default=None, help="window start, ms")
p.add_argument("--to", dest="t1", type=float, default=None, help="window end, ms")
a = p.parse_args()

colors = {"forward": "#4c9be8", "backward": "#f28e2b", "backward_compute": "#f28e2b", "optimizer_step": "#59a14f",
          "ddp_wait": "#e15759", "all_reduce": "#b07aa1"}
lanes = ["host", "compute stream", "communication"]
fig, ax = plt.subplots(figsize=(12, 1.1 + 0.9 * len(a.files) * 3))
rows, labels = 0, []
for f in a.files:
    d = json.load(open(f))
    rank = d["otherData"]["rank"]
    ev = [e for e in d["traceEvents"] if e.get("ph") == "X"]
    for tid, lane in enumerate(lanes):
        y = rows
        labels.append(f"rank {rank} {lane}")
        for e in ev:
            if e["tid"] != tid:
                continue
            s, w = e["ts"] / 1000.0, e["dur"] / 1000.0
            if a.t0 is not None and s + w < a.t0 or a.t1 is not None and s > a.t1:
                continue
            c = colors.get(e["name"], "#bab0ac")
            ax.broken_barh([(s, max(w, 0.02))], (y - 0.4, 0.8), facecolors=c, edgecolor="black", linewidth=0.3)
            b = e.get("args", {}).get("bucket")
            if b is not None and (a.t1 is None or a.t0 is None or w > (a.t1 - a.t0) / 60):
                ax.text(s + w / 2, y, f"b{b}", ha="center", va="center", fontsize=7, color="white")
        rows += 1
ax.set_yticks(range(rows))
ax.set_yticklabels(labels)
ax.invert_yaxis()
if a.t0 is not None or a.t1 is not None:
    ax.set_xlim(a.t0, a.t1)
ax.set_xlabel("ms since the barrier that starts the trace")
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
ax.legend(handles, list(colors.keys()), loc="upper right", fontsize=7, ncol=3)
fig.tight_layout()
fig.savefig(a.out, dpi=110)
print("wrote", a.out)
