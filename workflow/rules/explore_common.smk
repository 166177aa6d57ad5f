# The activation explorer's stores (rnnlens.explore): one per model listed under analysis.explore.models.
# `rnnlens explore {corpus}` serves them; `snakemake explore` builds every configured one.

EXPLORE = ANALYSIS["explore"]
EXPLORE_MODELS = [m for m in EXPLORE["models"] if m in MODELS]
# the oracle settings the oracles rule uses (less the n-gram orders, which come as files)
EXPLORE_ORACLES = {k: v for k, v in ORACLES.items() if k != "ngram_orders"}


def explore_targets():
    return expand(
        "results/{corpus}/explore/{model}/store.json",
        corpus=CORPORA,
        model=EXPLORE_MODELS,
    )


def explore_ngram(wildcards):
    if REFERENCE_NGRAM not in NGRAM_ORDERS:
        return []
    return f"results/{wildcards.corpus}/predictions/ngram-{REFERENCE_NGRAM}.parquet"


def explore_ngram_arg(wildcards, input):
    return f"--ngram {input.ngram}" if input.ngram else ""
