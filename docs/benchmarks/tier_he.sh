#!/bin/bash
# Round time of HE groups against SecAgg groups in the scale-out tier (BENCHMARKS.md, "HE groups").
# usage: tier_he.sh NAME SECURE(he|secagg|secaggplus|none)
# One etcd, one coordinator, EDGES edges (default 2), PER devices on each (default 12, one `shoal client
# --replicas PER` process per edge), one group per edge (--min-group PER, --goal EDGES·PER, no
# over-selection), ROUNDS rounds (default 3) of MODEL on DATASET (default 2nn on mnist); HE committee
# K (default 5), threshold T (default 3). SHOAL is the binary (default ./shoal), OUT the directory of the
# runs (default /tmp/tierhe); EDGELOG=debug logs each HE group's ceremony and round times. Only the processes this script starts are stopped, by their ids.
set -u
NAME=$1 SEC=$2
EDGES=${EDGES:-2} PER=${PER:-12} ROUNDS=${ROUNDS:-3} K=${K:-5} TH=${T:-3}
N=$((EDGES*PER))
S=$(realpath "${SHOAL:-./shoal}"); D=${OUT:-/tmp/tierhe}/$NAME; rm -rf $D; mkdir -p $D; cd $D
TR="--dataset ${DATASET:-mnist} --model ${MODEL:-2nn} --clients $N --seed 1"
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; }
trap stop EXIT
etcd --data-dir $D/etcd --listen-client-urls http://127.0.0.1:23793 --advertise-client-urls http://127.0.0.1:23793 --listen-peer-urls http://127.0.0.1:23803 > etcd.log 2>&1 &
PIDS+=($!); sleep 1.5; E=http://127.0.0.1:23793
for i in $(seq 1 $EDGES); do
  $S edge --etcd $E --population $NAME --name e$i --insecure --listen 127.0.0.1:2880$i --internal-listen 127.0.0.1:2881$i --log-level ${EDGELOG:-info} > e$i.log 2>&1 & PIDS+=($!)
done
/usr/bin/time -v $S coordinator --etcd $E --population $NAME --name c --insecure --store $D/run.db $TR --rounds $ROUNDS --target-accuracy 0 \
  --goal $N --over-select 1 --min-group $PER --selection-timeout 5m --min-fraction 1 --fit-timeout 10m --stage-timeout 5m \
  --secure-sum $SEC --he-committee $K --he-threshold $TH --json > c.json 2> c.log &
TP=$!; PIDS+=($TP)
until [ $(grep -l "registered in population" e?.log 2>/dev/null | wc -l) = $EDGES ]; do sleep 1; done
for i in $(seq 1 $EDGES); do
  $S client --server 127.0.0.1:2880$i --insecure --name d$i --replicas $PER --partition-index $(((i-1)*PER)) $TR --max-backoff 2s > d$i.log 2>&1 & PIDS+=($!)
done
wait $TP
stop; trap - EXIT
grep -E "round |Maximum resident|Elapsed" c.log
grep -h "he group done" e?.log | sed 's/.*round=\([0-9]*\).*ceremony_seconds=\([0-9.]*\) round_seconds=\([0-9.]*\).*/edge group, round \1: ceremony \2 s, encrypted round \3 s/' 
/usr/bin/python3 - c.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for h in s["history"]:
    st = {x["stage"]: x["seconds"] for x in h.get("stages", [])}
    print(f'round {h["round"]}: {h["seconds"]:.2f} s, participants {h["participants"]}, stages ' + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
PY
