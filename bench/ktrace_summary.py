"""bench/ktrace_summary.py: summarize a bench/ktrace.c trace of a benchmark that repeats one
step (the GPT block). Finds the step's period from the kernel name sequence (the last steps
are identical), then over the last --steps periods prints: step span, GPU busy time, idle
time, per-kernel totals (ms per step, count), and the largest idle gaps with their
neighbours.   python3 bench/ktrace_summary.py trace.csv [--steps 3] [--top 25]"""
import argparse, collections, re

ap = argparse.ArgumentParser()
ap.add_argument("csv"); ap.add_argument("--steps", type=int, default=3); ap.add_argument("--top", type=int, default=25)
ap.add_argument("--label", default="")
a = ap.parse_args()

recs = []
for line in open(a.csv):
    f = line.rstrip("\n").split(",", 8)
    if f[0] == "K":
        recs.append((int(f[1]), int(f[2]), f[8], "grid=%s blk=%s regs=%s smem=%s" % (f[4], f[5], f[6], f[7])))
    elif f[0] == "C":
        recs.append((int(f[1]), int(f[2]), "[memcpy kind %s]" % f[5], "bytes=" + f[4]))
    elif f[0] == "S":
        recs.append((int(f[1]), int(f[2]), "[memset]", "bytes=" + f[4]))
recs.sort()

def short(n):
    n = re.sub(r"\(.*$", "", n) if not n.startswith("void ") else re.sub(r"\(.*$", "", n[5:])
    return n[:90]

names = [short(r[2]) for r in recs]
period = None
for trim in range(0, 8):   # the program's last records (a final copy to the host) may not repeat
    n = len(names) - trim
    for p in range(5, n // (a.steps + 1) + 1):
        if all(names[n - 1 - i] == names[n - 1 - i - p] for i in range(p * (a.steps - 1))):
            period = p
            break
    if period: break
recs = recs[:n]
if period is None:
    print("no period found in", n, "records"); raise SystemExit(1)
win = recs[n - period * a.steps:]
t0, t1 = win[0][0], win[-1][1]
busy, cur_s, cur_e = 0, None, None
gaps = []
prev = None
for r in win:
    if cur_e is None or r[0] > cur_e:
        if cur_e is not None:
            busy += cur_e - cur_s
            gaps.append((r[0] - cur_e, short(prev[2]), short(r[2])))
        cur_s, cur_e = r[0], r[1]
    else:
        cur_e = max(cur_e, r[1])
    prev = r
busy += cur_e - cur_s
S = a.steps
print("== %s kernels/step %d, step span %.3f ms, GPU busy %.3f ms, idle %.3f ms (%d gaps)" %
      (a.label, period, (t1 - t0) / S / 1e6, busy / S / 1e6, (t1 - t0 - busy) / S / 1e6, len(gaps) // S))
tot = collections.defaultdict(lambda: [0, 0, ""])
for r in win:
    k = short(r[2]); tot[k][0] += r[1] - r[0]; tot[k][1] += 1; tot[k][2] = r[3]
rows = sorted(tot.items(), key=lambda kv: -kv[1][0])
print("ms/step  calls/step  kernel  (launch shape of the last call)")
for k, (t, c, info) in rows[:a.top]:
    print("%7.3f  %5.1f  %s  [%s]" % (t / S / 1e6, c / S, k, info))
gaps.sort(reverse=True)
gsum = collections.Counter()
for g in gaps: gsum[(g[1], g[2])] += g[0]
print("largest idle gaps (us/step, after -> before):")
for (p_, n_), g in gsum.most_common(12):
    print("%8.1f  %s -> %s" % (g / S / 1e3, p_[:60], n_[:60]))
small = sum(g[0] for g in gaps if g[0] < 5000)
print("idle in gaps < 5 us: %.3f ms/step, >= 5 us: %.3f ms/step" % (small / S / 1e6, (sum(g[0] for g in gaps) - small) / S / 1e6))
