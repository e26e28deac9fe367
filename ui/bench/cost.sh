#!/usr/bin/env bash
# Cost of the live dashboard: the same seeded 10,000-client DP simulation without --ui, then
# with --ui and one headless Chromium showing its overview page, alternating. For each run:
# the run's wall seconds (summary.json) and the CPU seconds of the shoal process; for the
# browser, the CPU seconds of its processes still alive at the end of the run.
# Usage: ui/bench/cost.sh [ROUNDS] [PAIRS]
set -euo pipefail
rounds=${1:-100}; pairs=${2:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
go build -o "$work/shoal" ./cmd/shoal
args=(simulate --clients 10000 --fraction 0.01 --sampling poisson --dp central --model 2nn
      --rounds "$rounds" --seed 1 --target-accuracy 0)
# cpu CMD...: runs CMD and writes its CPU seconds (user + system) to stdout.
cpu() { /usr/bin/python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[-1] + ".log", "w"))
r = resource.getrusage(resource.RUSAGE_CHILDREN); print(f"{r.ru_utime + r.ru_stime:.2f}")' "$@"; }
secs() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1/summary.json"; }
for p in $(seq "$pairs"); do
	off_cpu=$(cpu "$work/shoal" "${args[@]}" --out "$work/off$p")
	cpu "$work/shoal" "${args[@]}" --ui 127.0.0.1:8097 --out "$work/on$p" > "$work/on$p.cpu" &
	sim=$!
	until grep -q dashboard "$work/on$p.log" 2>/dev/null; do sleep 0.05; done
	/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
		--disable-sync --no-first-run --user-data-dir="$work/profile$p" --remote-debugging-port=0 \
		--window-size=1280,800 http://127.0.0.1:8097/ >/dev/null 2>&1 &
	browser=$!
	sleep 5 # then check that the page holds its events stream open
	ss -tn state established '( dport = :8097 )' | grep -q 8097 && echo "pair $p: browser connected" || echo "pair $p: browser NOT connected"
	while kill -0 "$sim" 2>/dev/null; do
		b=$(for q in $(pgrep -f "profile$p" || true); do awk '{print $14+$15}' /proc/$q/stat 2>/dev/null; done | awk '{s+=$1} END {print s/100}')
		sleep 0.5
	done
	wait "$sim"
	kill "$browser" 2>/dev/null || true; wait "$browser" 2>/dev/null || true
	/usr/bin/python3 -c 'import sys
a, b, ca, cb, cbr = map(float, sys.argv[1:6])
print(f"pair {sys.argv[6]}: wall {a:.2f} s without, {b:.2f} s with --ui + browser (ratio {b/a:.4f}); "
      f"shoal CPU {ca:.2f} s vs {cb:.2f} s (ratio {cb/ca:.4f}); browser CPU {cbr:.2f} s")' \
		"$(secs "$work/off$p")" "$(secs "$work/on$p")" "$off_cpu" "$(cat "$work/on$p.cpu")" "${b:-0}" "$p"
done
