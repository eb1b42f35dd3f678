#!/usr/bin/env python3
"""bench/trace_summary.py: summarize weft's WF_TRACE files (one per rank).

    WF_TRACE=/tmp/run weft run --accelerator cpu --devices 2 build/examples/fabric_mnist
    python3 bench/trace_summary.py /tmp/run            # reads /tmp/run.rank*.json
    python3 bench/trace_summary.py a.rank0.json b.rank1.json

Per rank it prints the busy time of each lane (host, compute stream, communication: the
union of its spans, so nested spans count once), the total of each span name, and how much
of the communication time overlaps backward compute ("hidden", as PyTorch's DDP logger
reports it). Backward compute is the backward spans minus the time the host waits: blocking
collectives (args.async false) and host-lane spans whose name starts with "wait" (the DDP
reducer's end-of-backward wait). Exit 1 when a file is missing or invalid.
"""
import glob
import json
import sys

LANES = {0: "host", 1: "compute stream", 2: "communication"}


def union(intervals):
    """Merge [start, end) intervals; returns a sorted, disjoint list."""
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def length(intervals):
    return sum(e - s for s, e in intervals)


def intersect(a, b):
    """Length of the intersection of two disjoint sorted interval lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if e > s:
            total += e - s
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def subtract(a, b):
    """a minus b, both disjoint sorted interval lists."""
    out = []
    for s, e in a:
        cur = s
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append([cur, bs])
            cur = max(cur, be)
        if cur < e:
            out.append([cur, e])
    return out


def summarize(path):
    with open(path) as f:
        doc = json.load(f)
    events = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    other = doc.get("otherData", {})
    rank = other.get("rank", "?")
    print(f"rank {rank} ({path}): {len(events)} spans, "
          f"{other.get('dropped_events', 0)} dropped, complete={other.get('complete')}")
    lanes = {}
    names = {}
    for e in events:
        iv = (e["ts"], e["ts"] + e["dur"])
        lanes.setdefault(e["tid"], []).append(iv)
        n = names.setdefault((e["tid"], e["name"]), [0, 0.0])
        n[0] += 1
        n[1] += e["dur"]
    for tid in sorted(lanes):
        print(f"  lane {LANES.get(tid, tid):<15} busy {length(union(lanes[tid])) / 1e3:10.3f} ms")
    for (tid, name), (count, dur) in sorted(names.items()):
        print(f"    {LANES.get(tid, tid):<15} {name:<20} x{count:<6} {dur / 1e3:10.3f} ms")
    backward = union([(e["ts"], e["ts"] + e["dur"]) for e in events if e["name"] == "backward"])
    waits = union([(e["ts"], e["ts"] + e["dur"]) for e in events
                   if (e["tid"] == 2 and e.get("args", {}).get("async") is False)
                   or (e["tid"] == 0 and e["name"].startswith("wait"))])
    compute = subtract(backward, waits)
    comm = union(lanes.get(2, []))
    comm_ms = length(comm) / 1e3
    hidden_ms = intersect(comm, compute) / 1e3
    pct = 100.0 * hidden_ms / comm_ms if comm_ms > 0 else 0.0
    print(f"  backward {length(backward) / 1e3:.3f} ms (compute {length(compute) / 1e3:.3f} ms), "
          f"communication {comm_ms:.3f} ms, overlap {hidden_ms:.3f} ms "
          f"({pct:.1f}% of communication hidden under backward compute)")


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    paths = []
    for a in argv[1:]:
        paths += [a] if a.endswith(".json") else sorted(glob.glob(a + ".rank*.json"))
    if not paths:
        print(f"trace_summary: no files for {' '.join(argv[1:])}", file=sys.stderr)
        return 1
    for p in paths:
        try:
            summarize(p)
        except (OSError, ValueError, KeyError) as e:
            print(f"trace_summary: {p}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
