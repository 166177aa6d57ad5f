#!/usr/bin/env bash
# docs/results/memory_definitions.csv: the dynamic-memory oracle under each definition the paper's wording allows
# (rnnlens.oracles.MEMORY_DEFINITIONS), counted on War and Peace for the reference run's lstm-2x64 (30 epochs, seed
# 1: the paper's small-model budget) and, as a second predictor with fewer errors, the 20-gram. Makes what it
# needs through the committed workflow (memory_oracle.yaml over the reference settings; in a folder that already
# holds the reference run it only reads it), then counts. CPU: about 25 min on one shared core.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=${CORES:-1}
export PATH="$PWD/.venv/bin:$PATH"
[ -f data/warpeace.txt ] || { echo "make_memory_definitions: data/warpeace.txt is missing; see docs/results/README.md" >&2; exit 1; }
P=results/warpeace/predictions
ngrams=()
for n in 1 2 3 4 5 6 7 8 9; do ngrams+=("$P/ngram-$n.parquet"); done
snakemake "$P/lstm-2x64.parquet" "$P/ngram-20.parquet" "${ngrams[@]}" --cores "$CORES" \
  --configfile docs/results/reference.yaml docs/results/warpeace.yaml docs/results/memory_oracle.yaml
rnnlens memory-definitions --data results/warpeace/data.json --ngram "${ngrams[@]}" \
  --predictions "$P/lstm-2x64.parquet" "$P/ngram-20.parquet" --csv-out docs/results/memory_definitions.csv
# the documentation's numbers from the results just written
python scripts/render_docs.py
