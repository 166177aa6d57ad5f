#!/usr/bin/env bash
# docs/results/params_match.csv: the models table (`rnnlens models-table`) of every built-in architecture over the
# grids the project uses (sizes 32..512, 1-3 layers) for three vocabularies: 10 bytes (the smallest the tolerance is
# stated for), War and Peace's 87 and 200. Each row: the widths, the parameters, the budget and the deviation from it
# (README, "Size is a parameter budget"). Needs no corpus; a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tables=()
for entry in small:10 warpeace:87 wide:200; do
  name=${entry%%:*}
  echo "{\"corpus\": \"$name\", \"vocab_size\": ${entry##*:}}" > "$work/$name.json"
  python -m rnnlens models-table --data "$work/$name.json" --archs rnn,lstm,gru,transformer,lru --layers 1,2,3 \
    --sizes 32,64,128,256,512 --out "$work/$name.csv"
  tables+=("$work/$name.csv")
done
python -c 'import sys, pandas as pd; pd.concat(map(pd.read_csv, sys.argv[1:-1])).to_csv(sys.argv[-1], index=False)' \
  "${tables[@]}" docs/results/params_match.csv
