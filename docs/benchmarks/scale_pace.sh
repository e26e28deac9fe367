#!/bin/bash
# Scale-out measurements of docs/scale.md (issue 15). SHOAL is the binary (default ./shoal), OUT the directory of the runs.
# usage: scale_pace.sh NAME SLACK — DEVICES devices (default 2000) in PROCS `shoal client --replicas` processes
# (default 2), each device given every edge's address; EDGES edges (default 2), goal GOAL per round (default 200),
# ROUNDS rounds (default 12), groups of at least MINGROUP (default 50). Edge logs (--log-level debug) record
# every check-in. Only the processes this script starts are stopped, by their ids.
set -u
NAME=$1 SLACK=$2
N=${DEVICES:-2000} PROCS=${PROCS:-2} EDGES=${EDGES:-2} GOAL=${GOAL:-200} ROUNDS=${ROUNDS:-12} MINGROUP=${MINGROUP:-50}
S=$(realpath "${SHOAL:-./shoal}"); D=${OUT:-/tmp/scale}/$NAME; rm -rf $D; mkdir -p $D; cd $D
T="--dataset synthetic --data-seed 1 --model logreg --clients $N"
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; }
trap stop EXIT
etcd --data-dir $D/etcd --listen-client-urls http://127.0.0.1:23793 --advertise-client-urls http://127.0.0.1:23793 --listen-peer-urls http://127.0.0.1:23803 > etcd.log 2>&1 &
PIDS+=($!); sleep 1.5; E=http://127.0.0.1:23793
ADDR=
for i in $(seq 1 $EDGES); do
  $S edge --etcd $E --population $NAME --name e$i --insecure --listen 127.0.0.1:288$((i+10)) --internal-listen 127.0.0.1:288$((i+30)) --log-level debug --heartbeat 30s --pace-slack $SLACK > e$i.log 2>&1 & PIDS+=($!)
  ADDR=$ADDR${ADDR:+,}127.0.0.1:288$((i+10))
done
$S coordinator --etcd $E --population $NAME --name c --insecure --store $D/run.db $T --rounds $ROUNDS --target-accuracy 0 --goal $GOAL --over-select 1 --min-group $MINGROUP --selection-timeout 3s --min-fraction 0.5 --json > c.json 2> c.log &
PIDS+=($!); sleep 1
for i in $(seq 0 $((PROCS-1))); do
  a=$((i*N/PROCS)) b=$(((i+1)*N/PROCS))
  $S client --server $ADDR --insecure --name d$i --replicas $((b-a)) --partition-index $a $T --max-backoff 5s --log-level warn > d$i.log 2>&1 & PIDS+=($!)
done
for n in $(seq 1 900); do
  sleep 2; grep -q "rounds_run" c.json 2>/dev/null && break; grep -q ": error:" c.log && break
  [ $(free -m | awk '/Mem:/{print $7}') -lt 2048 ] && { echo "under 2 GB available: stopped"; break; }
done
sleep 2
stop; trap - EXIT
grep -E "round |complete|error" c.log | tail -$((ROUNDS+2))
