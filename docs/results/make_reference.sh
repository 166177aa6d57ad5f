#!/usr/bin/env bash
# Reproduce docs/results/: the reference run on the paper's two corpora (local copies under data/, see README.md
# here), through the committed workflow. CPU only: about 2 h on 2 cores (War and Peace: 9 size-64 models of 30
# epochs, every baseline and analysis; Linux: its Table 2 baselines). CORES (default 2) sets the parallelism.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=${CORES:-2}
REF=docs/results/reference.yaml
export PATH="$PWD/.venv/bin:$PATH"
for corpus in warpeace linux; do
  [ -f "data/$corpus.txt" ] || { echo "make_reference: data/$corpus.txt is missing; see docs/results/README.md" >&2; exit 1; }
done
# War and Peace: everything (Table 1's size-64 row, Table 2's baselines, every analysis)
snakemake --configfile "$REF" docs/results/warpeace.yaml --cores "$CORES"
# Linux: the baselines of Table 2 (no RNN grid: Table 1 and the analyses need one)
targets=()
for n in 1 2 3 4 5 6 7 8 9 20; do targets+=("results/linux/ngram/ngram-$n.json"); done
for n in 1 2 3 4 5 20; do targets+=("results/linux/nnn/nnn-$n.json"); done
snakemake "${targets[@]}" --configfile "$REF" docs/results/linux.yaml --cores "$CORES"
# Table 2 of both corpora, and the small outputs this folder keeps
rnnlens table2 --ngram results/*/predictions/ngram-*.parquet --nnn results/*/predictions/nnn-*.parquet \
  --table1 results/tables/table1.csv --out-csv docs/results/table2.csv --out-md docs/results/table2.md
cp results/tables/table1.md results/tables/table1.csv results/tables/best_cells_warpeace.csv docs/results/
fig=results/figures/warpeace
cp "$fig/saturation.png" "$fig/error_breakdown.png" "$fig/perchar.png" "$fig/tsne.png" "$fig/dynamics.png" \
  "$fig/brackets/brackets-warpeace-quote.png" "$fig/brackets/brackets-warpeace-paren.png" \
  results/figures/training_curves_warpeace.png docs/results/
cp results/warpeace/analysis/*.csv docs/results/
# the documentation's numbers (README.md, this folder's README.md, docs/slurm.md) from the results just written
python scripts/render_docs.py
echo "make_reference: docs/results/ and the documentation's numbers updated"
