#!/bin/bash
# Scale-out measurements of docs/scale.md (issue 15). SHOAL is the binary (default ./shoal), OUT the directory of the runs.
# usage: scale_compare.sh NAME MODE(tier|server) SECURE(none|secaggplus)
# DEVICES devices (default 6000) in PROCS `shoal client --replicas` processes (default 3), GOAL per round
# (default 5000, over-selected ×1.2), ROUNDS (default 2), groups of at least MINGROUP (default 500); the server
# starts once WAIT devices are connected (default: DEVICES) and samples GOAL/WAIT of them.
# Tier: one etcd, one coordinator, three edges; every device is given the three edges and picks one at
# random. The coordinator is held (SIGSTOP; its --lease-ttl outlasts the wait) until every device is
# connected, so that round 1 samples from all of them, as the server does with --wait-clients; the
# edges' RSS then, against their RSS before any device, is the memory per idle connection.
# Only the processes this script starts are stopped, by their ids.
set -u
NAME=$1 MODE=$2 SEC=$3
N=${DEVICES:-6000} PROCS=${PROCS:-3} GOAL=${GOAL:-5000} ROUNDS=${ROUNDS:-2} MINGROUP=${MINGROUP:-500}
S=$(realpath "${SHOAL:-./shoal}"); D=${OUT:-/tmp/scale}/$NAME; rm -rf $D; mkdir -p $D; cd $D
T="--dataset synthetic --data-seed 1 --model logreg --clients $N"
PIDS=() WATCH=()
stop() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; }
trap stop EXIT
rss() { for p in "$@"; do echo "$(date +%s) $p $(ps -o args= -p $p | cut -c1-40 | tr ' ' _) $(grep VmRSS /proc/$p/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2)"; done >> mem.log; }
if [ $MODE = tier ]; then
  etcd --data-dir $D/etcd --listen-client-urls http://127.0.0.1:23792 --advertise-client-urls http://127.0.0.1:23792 --listen-peer-urls http://127.0.0.1:23802 > etcd.log 2>&1 &
  PIDS+=($!); sleep 1.5; E=http://127.0.0.1:23792
  for i in 1 2 3; do $S edge --etcd $E --population $NAME --name e$i --insecure --listen 127.0.0.1:2870$i --internal-listen 127.0.0.1:2871$i --log-level info --heartbeat 30s > e$i.log 2>&1 & PIDS+=($!) WATCH+=($!); done
  /usr/bin/time -v $S coordinator --etcd $E --population $NAME --name c --insecure --store $D/run.db $T --rounds $ROUNDS --target-accuracy 0 --goal $GOAL --over-select 1.2 --min-group $MINGROUP --selection-timeout 10m --min-fraction 1 --fit-timeout 10m --stage-timeout 5m --secure-sum $SEC --max-dropout 0.05 --lease-ttl 30m --json > c.json 2> c.log &
  TP=$!; PIDS+=($TP); sleep 0.5; C=$(pgrep -P $TP); PIDS+=($C) WATCH+=($C)
  until [ $(grep -l "registered in population" e?.log 2>/dev/null | wc -l) = 3 ]; do sleep 1; done
  kill -STOP $C; echo "$(date +%s) coordinator stopped" >> events.log
  ADDR=127.0.0.1:28701,127.0.0.1:28702,127.0.0.1:28703
else
  /usr/bin/time -v $S server --insecure --listen 127.0.0.1:28700 $T --rounds $ROUNDS --target-accuracy 0 --fraction $(awk "BEGIN{print $GOAL/${WAIT:-$N}}") --over-select 1.2 --wait-clients ${WAIT:-$N} --fit-timeout 10m --stage-timeout 5m --secure-sum $SEC --max-dropout 0.05 --heartbeat 30s --out $D/out --json > c.json 2> c.log &
  TP=$!; PIDS+=($TP); sleep 0.5; C=$(pgrep -P $TP); PIDS+=($C) WATCH+=($C)
  ADDR=127.0.0.1:28700
fi
sleep 1; rss "${WATCH[@]}"; echo "$(date +%s) devices start" >> events.log
for i in $(seq 0 $((PROCS-1))); do
  a=$((i*N/PROCS)) b=$(((i+1)*N/PROCS))
  $S client --server $ADDR --insecure --name d$i --replicas $((b-a)) --partition-index $a $T --max-backoff 5s --log-level warn > d$i.log 2>&1 & PIDS+=($!) WATCH+=($!)
done
# sample memory every 2 s while the run goes on; release the coordinator once every device is connected
for n in $(seq 1 1500); do
  sleep 2; rss "${WATCH[@]}"
  if [ $MODE = tier ] && grep -q "coordinator stopped" events.log && ! grep -q "coordinator resumed" events.log; then
    c=$(cat e?.log | grep -c 'msg="client connected"')
    [ $((n % 15)) = 0 ] && echo "$(date +%s) $c connected" >> events.log
    if [ $c -ge $N ] || [ $n -ge 450 ]; then sleep 10; rss "${WATCH[@]}"; echo "$(date +%s) $c connected; coordinator resumed" >> events.log; kill -CONT $C; fi
  fi
  grep -q "rounds_run" c.json 2>/dev/null && break
  grep -q ": error:" c.log && break
  [ $(free -m | awk '/Mem:/{print $7}') -lt 2048 ] && { echo "$(date +%s) under 2 GB available: stopped" >> events.log; break; }
done
sleep 3
stop; trap - EXIT; sleep 1
cat events.log; grep -E "round |Maximum resident|Elapsed" c.log
