#!/usr/bin/env bash
# Federate a scikit-learn logistic regression (trainer.py) over four "hospitals" holding
# scikit-learn's breast-cancer data, with threshold homomorphic encryption as the secure sum
# (committee of 4, any 3 decrypt), and print the run's JSON summary.
# Usage: run.sh [ROUNDS] (default 20). Extra flags: SHOAL_FLAGS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-20}
python=${PYTHON:-/usr/bin/python3}
"$python" -c 'import sklearn' || { echo "run.sh: $python cannot import sklearn (apt-get install -y python3-sklearn)" >&2; exit 1; }
cd "$root"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Shoal needs a data set to size the four virtual clients; the hospitals' rows are the trainer's.
"$python" "$here/trainer.py" --write-csv "$out/breast-cancer.csv"
# shellcheck disable=SC2086 # SHOAL_FLAGS is a list of flags
go run ./cmd/shoal simulate --dataset csv --data "$out/breast-cancer.csv" --label-column target \
	--clients 4 --fraction 1 --min-clients 4 --rounds "$rounds" --target-accuracy 0 \
	--local-epochs 1 --lr 0.05 --seed 1 --workers 2 \
	--secure-sum he --he-committee 4 --he-threshold 3 \
	--trainer "$python $here/trainer.py --hospitals 4" --out "$out/run" --json ${SHOAL_FLAGS:-}
