#!/bin/bash
# The scale measurement over mutual TLS: CERTS holds load-0..load-(N-1) (shoal certs client).
set -u
BIN=${BIN:-shoal}; N=${N:-1000}; CERTS=${CERTS:-certs}; ADDR=127.0.0.1:7621; MADDR=127.0.0.1:9121
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
metric() { curl -s http://$MADDR/metrics | awk -v m="$1" '$1==m{print $2}'; }
$BIN server --certs $CERTS --listen $ADDR --metrics-listen $MADDR --dataset synthetic --data-seed 1 --model logreg --clients $N \
  --fraction 1 --min-clients $((N+1)) --wait-timeout 180s --rounds 1 --target-accuracy 0 --seed 5 --out /tmp/scale-tls1 --log-level error 2>/dev/null &
S=$!; sleep 2
R0=$(rss $S); H0=$(metric go_memstats_heap_inuse_bytes)
$BIN client --certs $CERTS --server $ADDR --name load --replicas $N --partition-index 0 --dataset synthetic --data-seed 1 --model logreg \
  --clients $N --seed 5 --log-level error 2>/dev/null &
C=$!
for i in $(seq 1 180); do c=$(metric shoal_connected_clients); [ "${c%.*}" = "$N" ] && break; sleep 1; done
sleep 3
R1=$(rss $S); H1=$(metric go_memstats_heap_inuse_bytes)
echo "mTLS connected=$c RSS/conn $(( (R1-R0)*1024/N )) B, heap/conn $(awk -v a=$H0 -v b=$H1 -v n=$N 'BEGIN{printf "%d", (b-a)/n}') B"
kill $C $S; wait 2>/dev/null
$BIN server --certs $CERTS --listen $ADDR --dataset synthetic --data-seed 1 --model logreg --clients $N --fraction 1 --min-clients $N \
  --rounds ${ROUNDS:-5} --lr 0.05 --target-accuracy 0 --seed 5 --out /tmp/scale-tls2 --log-level error 2>&1 | grep "round\|final" &
S=$!; sleep 1
$BIN client --certs $CERTS --server $ADDR --name load --replicas $N --partition-index 0 --dataset synthetic --data-seed 1 --model logreg \
  --clients $N --seed 5 --log-level error 2>/dev/null
wait
