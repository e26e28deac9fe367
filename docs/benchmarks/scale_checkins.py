"""Check-ins per second at a tier's edges, from their logs (edge --log-level debug):
'client connected' is a device admitted, 'client steered away' one told when to come back.

usage: TITLE="..." /usr/bin/python3 scale_checkins.py OUT.png LABEL=DIR [LABEL=DIR ...]   (DIR holds e*.log)
"""
import glob
import os
import re
import sys
from collections import Counter
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAMP = re.compile(r"time=(\S+) level=\S+ msg=\"client (connected|steered away)\"")


def checkins(d):
    """Per-second counts of admitted and steered check-ins, from the first check-in."""
    times = {"connected": [], "steered away": []}
    for path in glob.glob(d + "/e*.log"):
        for line in open(path):
            m = STAMP.search(line)
            if m:
                times[m.group(2)].append(datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp())
    t0 = min(times["connected"] + times["steered away"])
    return {k: Counter(int(t - t0) for t in v) for k, v in times.items()}, {k: len(v) for k, v in times.items()}


def main():
    out = sys.argv[1]
    fig, ax = plt.subplots(figsize=(8, 4))
    for arg in sys.argv[2:]:
        label, d = arg.split("=", 1)
        per_sec, total = checkins(d)
        end = max(max(c, default=0) for c in per_sec.values()) + 1
        xs = range(end + 1)
        for kind, c in per_sec.items():
            if total[kind]:
                ax.step(xs, [c.get(x, 0) for x in xs], where="post", label=f"{label}: {kind} ({total[kind]})")
        print(label, {k: (v, max(per_sec[k].values(), default=0)) for k, v in total.items()}, "over", end, "s")
    ax.set_xlabel("seconds since the first check-in")
    ax.set_ylabel("devices per second (all edges)")
    ax.set_yscale("symlog")
    ax.legend()
    ax.set_title(os.environ.get("TITLE", "2,000 devices, 2 edges, goal 200 per round"))
    fig.tight_layout()
    fig.savefig(out, dpi=110)


main()
