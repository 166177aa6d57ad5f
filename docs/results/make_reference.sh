#!/usr/bin/env bash
# Reproduce docs/results/: the reference run on the paper's two corpora (local copies under data/, see README.md
# here), through the committed workflow. CPU only, on 2 cores: about 2 h for War and Peace's 9 size-64 models of 30
# epochs with every baseline and analysis, and Linux's Table 2 baselines; then about 1.5 h for the overlays (seeds
# 2 and 3 of War and Peace's 1-layer models, gru-2x64's cell effects, Linux's 1-layer row of 3 models of 30 epochs
# with its analyses: on an idle core 10-12 min per War and Peace model and 25-30 min per Linux model).
# CORES (default 2) sets the parallelism.
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
# War and Peace's 1-layer cells over seeds 1-3 (seed 1's models are the ones above): Table 1 with mean +- sd, and
# the training curves with the seeds' band
snakemake results/tables/table1.csv results/figures/training_curves_warpeace.png \
  --configfile "$REF" docs/results/warpeace.yaml docs/results/seeds.yaml --cores "$CORES"
cp results/tables/table1.csv docs/results/table1_seeds.csv
cp results/tables/table1.md docs/results/table1_seeds.md
cp results/figures/training_curves_warpeace.png docs/results/training_curves_seeds.png
# gru-2x64's best cells ablated (do they matter?)
snakemake results/tables/cell_effects_warpeace.csv \
  --configfile "$REF" docs/results/warpeace.yaml docs/results/cell_effects.yaml --cores "$CORES"
cp results/tables/cell_effects_warpeace.csv docs/results/cell_effects_warpeace.csv
cp results/figures/warpeace/cell_effects.png docs/results/cell_effects_warpeace.png
# Linux's 1-layer row: Table 1's cells, the `}` curve (the paper's Fig. 7), per-character gains, best cells
fig=results/figures/linux
snakemake results/linux/table1.csv "$fig/brackets/brackets-linux-brace.png" "$fig/perchar.png" \
  results/tables/best_cells_linux.csv results/figures/training_curves_linux.png \
  --configfile "$REF" docs/results/linux.yaml docs/results/linux_rnns.yaml --cores "$CORES"
cp results/linux/table1.csv docs/results/table1_linux.csv
cp results/linux/table1.md docs/results/table1_linux.md
cp results/linux/analysis/brackets.csv docs/results/brackets_linux.csv
cp results/linux/analysis/perchar.csv docs/results/perchar_linux.csv
cp results/linux/analysis/error_overlap.json docs/results/error_overlap_linux.json
cp results/tables/best_cells_linux.csv results/figures/training_curves_linux.png docs/results/
cp "$fig/brackets/brackets-linux-brace.png" docs/results/
cp "$fig/perchar.png" docs/results/perchar_linux.png
# the documentation's numbers (README.md, this folder's README.md, docs/slurm.md) from the results just written
python scripts/render_docs.py
echo "make_reference: docs/results/ and the documentation's numbers updated"
