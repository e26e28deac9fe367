#!/bin/bash
# Scale-out measurements of docs/scale.md (issue 15). SHOAL is the binary (default ./shoal), OUT the directory of the runs.
# usage: run.sh NAME MODE(tier|server) SECURE(none|secaggplus)
set -u
NAME=$1 MODE=$2 SEC=$3
S=$(realpath "${SHOAL:-./shoal}"); D=${OUT:-/tmp/scale}/$NAME; rm -rf $D; mkdir -p $D; cd $D
T="--dataset synthetic --model logreg --clients 6000"
if [ $MODE = tier ]; then
  etcd --data-dir $D/etcd --listen-client-urls http://127.0.0.1:23792 --advertise-client-urls http://127.0.0.1:23792 --listen-peer-urls http://127.0.0.1:23802 > etcd.log 2>&1 &
  sleep 1.5; E=http://127.0.0.1:23792
  for i in 1 2 3; do $S edge --etcd $E --population $NAME --name e$i --insecure --listen 127.0.0.1:2870$i --internal-listen 127.0.0.1:2871$i --log-level warn --heartbeat 30s > e$i.log 2>&1 & done
  /usr/bin/time -v $S coordinator --etcd $E --population $NAME --name c --insecure --store $D/run.db $T --rounds 2 --target-accuracy 0 --goal 5000 --over-select 1.2 --min-group 500 --selection-timeout 10m --min-fraction 1 --fit-timeout 10m --stage-timeout 5m --secure-sum $SEC --max-dropout 0.05 --json > c.json 2> c.log &
  ADDR=(127.0.0.1:28701 127.0.0.1:28702 127.0.0.1:28703)
else
  /usr/bin/time -v $S server --insecure --listen 127.0.0.1:28700 $T --rounds 2 --target-accuracy 0 --fraction 0.8334 --over-select 1.2 --wait-clients 6000 --fit-timeout 10m --stage-timeout 5m --secure-sum $SEC --max-dropout 0.05 --heartbeat 30s --out $D/out --json > c.json 2> c.log &
  ADDR=(127.0.0.1:28700 127.0.0.1:28700 127.0.0.1:28700)
fi
sleep 1
for i in 0 1 2; do $S client --server ${ADDR[$i]} --insecure --name d$i --replicas 2000 --partition-index $((i*2000)) $T --max-backoff 5s --log-level warn > d$i.log 2>&1 & done
# sample edge/server memory while the run goes on
for n in $(seq 1 600); do
  sleep 2
  for p in $(pgrep -f "population $NAME --name e" ) $(pgrep -f "server --insecure --listen 127.0.0.1:28700"); do echo "$n $p $(grep VmRSS /proc/$p/status 2>/dev/null)"; done >> mem.log
  grep -q "rounds_run" c.json 2>/dev/null && break
  grep -q ": error:" c.log && break
done
sleep 3
pkill -f "population $NAME" ; pkill -f "client --server 127.0.0.1:287"; pkill -f "etcd --data-dir $D"
grep -E "round |Maximum resident|Elapsed" c.log
