#!/usr/bin/env bash
# Cost of the live dashboard: the same seeded 10,000-client DP simulation without --ui, then
# with --ui and one headless Chromium showing its overview page, alternating; prints each
# run's seconds (summary.json) and the ratio of each pair. Usage: ui/bench/cost.sh [ROUNDS] [PAIRS]
set -euo pipefail
rounds=${1:-100}; pairs=${2:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
go build -o "$work/shoal" ./cmd/shoal
args=(simulate --clients 10000 --fraction 0.01 --sampling poisson --dp central --model 2nn
      --rounds "$rounds" --seed 1 --target-accuracy 0 --json)
secs() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1/summary.json"; }
for p in $(seq "$pairs"); do
	"$work/shoal" "${args[@]}" --out "$work/off$p" >/dev/null 2>&1
	"$work/shoal" "${args[@]}" --out "$work/on$p" --ui 127.0.0.1:8097 >/dev/null 2>"$work/on$p.log" &
	sim=$!
	until grep -q dashboard "$work/on$p.log" 2>/dev/null; do sleep 0.05; done
	/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
		--disable-sync --no-first-run --user-data-dir="$work/profile$p" --remote-debugging-port=0 \
		--window-size=1280,800 http://127.0.0.1:8097/ >/dev/null 2>&1 &
	browser=$!
	sleep 5 # then check that the page holds its events stream open
	ss -tn state established '( dport = :8097 )' | grep -q 8097 && echo "pair $p: browser connected" || echo "pair $p: browser NOT connected"
	wait "$sim"
	kill "$browser" 2>/dev/null || true; wait "$browser" 2>/dev/null || true
	off=$(secs "$work/off$p"); on=$(secs "$work/on$p")
	/usr/bin/python3 -c 'import sys; a,b=map(float,sys.argv[1:3]); print(f"pair {sys.argv[3]}: without {a:.2f} s, with --ui + browser {b:.2f} s, ratio {b/a:.4f}")' "$off" "$on" "$p"
done
