#!/bin/bash
# 1,000 connected clients on one server: memory per connection and round time.
set -u
BIN=${BIN:-shoal}; N=${N:-1000}; ADDR=127.0.0.1:7601; MADDR=127.0.0.1:9101
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
metric() { curl -s http://$MADDR/metrics | awk -v m="$1" '$1==m{print $2}'; }
# Phase 1: connect N clients to a server that waits for more, and measure its memory.
$BIN server --insecure --listen $ADDR --metrics-listen $MADDR --dataset synthetic --data-seed 1 --model logreg --clients $N \
  --fraction 1 --min-clients $((N+1)) --wait-timeout 120s --rounds 1 --target-accuracy 0 --seed 5 --out /tmp/bench/scale1 --log-level error 2>/tmp/bench/s1.err &
S=$!; sleep 2
R0=$(rss $S); H0=$(metric go_memstats_heap_inuse_bytes); G0=$(metric go_goroutines)
$BIN client --insecure --server $ADDR --name load --replicas $N --partition-index 0 --dataset synthetic --data-seed 1 --model logreg \
  --clients $N --seed 5 --log-level error 2>/tmp/bench/c1.err &
C=$!
for i in $(seq 1 120); do c=$(metric shoal_connected_clients); [ "${c%.*}" = "$N" ] && break; sleep 1; done
sleep 3
R1=$(rss $S); H1=$(metric go_memstats_heap_inuse_bytes); G1=$(metric go_goroutines)
echo "connected=$c  server RSS ${R0} kB -> ${R1} kB: $(( (R1-R0)*1024/N )) B/connection RSS; heap in use $H0 -> $H1: $(awk -v a=$H0 -v b=$H1 -v n=$N 'BEGIN{printf "%d", (b-a)/n}') B/connection; goroutines $G0 -> $G1"
kill $C $S; wait 2>/dev/null
# Phase 2: rounds with N participants each.
$BIN server --insecure --listen $ADDR --dataset synthetic --data-seed 1 --model logreg --clients $N --fraction 1 --min-clients $N \
  --rounds ${ROUNDS:-5} --lr 0.05 --target-accuracy 0 --seed 5 --out /tmp/bench/scale2 --json --log-level error >/tmp/bench/s2.json 2>/tmp/bench/s2.err &
S=$!; sleep 1
/usr/bin/time -v $BIN client --insecure --server $ADDR --name load --replicas $N --partition-index 0 --dataset synthetic --data-seed 1 --model logreg \
  --clients $N --seed 5 --log-level error 2>/tmp/bench/c2.err &
peak=0; while kill -0 $S 2>/dev/null; do r=$(rss $S 2>/dev/null || echo 0); [ "${r:-0}" -gt "$peak" ] && peak=$r; sleep 0.2; done
wait
grep "round\|final" /tmp/bench/s2.err
echo "server peak RSS ${peak} kB; client process (all $N replicas): $(grep 'Maximum resident' /tmp/bench/c2.err)"
