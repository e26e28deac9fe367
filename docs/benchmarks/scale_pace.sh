#!/bin/bash
# Scale-out measurements of docs/scale.md (issue 15). SHOAL is the binary (default ./shoal), OUT the directory of the runs.
# usage: pace.sh NAME SLACK — 2,000 devices on 2 edges, goal 200 per round; edge logs record every check-in
set -u
NAME=$1 SLACK=$2
S=$(realpath "${SHOAL:-./shoal}"); D=${OUT:-/tmp/scale}/$NAME; rm -rf $D; mkdir -p $D; cd $D
T="--dataset synthetic --model logreg --clients 2000"
etcd --data-dir $D/etcd --listen-client-urls http://127.0.0.1:23793 --advertise-client-urls http://127.0.0.1:23793 --listen-peer-urls http://127.0.0.1:23803 > etcd.log 2>&1 &
sleep 1.5; E=http://127.0.0.1:23793
for i in 1 2; do $S edge --etcd $E --population $NAME --name e$i --insecure --listen 127.0.0.1:2880$i --internal-listen 127.0.0.1:2881$i --log-level debug --heartbeat 30s --pace-slack $SLACK > e$i.log 2>&1 & done
$S coordinator --etcd $E --population $NAME --name c --insecure --store $D/run.db $T --rounds 12 --target-accuracy 0 --goal 200 --over-select 1 --min-group 50 --selection-timeout 3s --min-fraction 0.5 --json > c.json 2> c.log &
sleep 1
for i in 0 1; do $S client --server 127.0.0.1:28801,127.0.0.1:28802 --insecure --name d$i --replicas 1000 --partition-index $((i*1000)) $T --max-backoff 5s --log-level warn > d$i.log 2>&1 & done
for n in $(seq 1 300); do sleep 2; grep -q "rounds_run" c.json 2>/dev/null && break; grep -q ": error:" c.log && break; done
sleep 2
pkill -f "population $NAME" ; pkill -f "client --server 127.0.0.1:2880"; pkill -f "etcd --data-dir $D"
grep -E "round |complete|error" c.log | tail -14
