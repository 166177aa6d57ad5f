# rnnlens: Karpathy, Johnson & Fei-Fei (2015) "Visualizing and Understanding Recurrent Networks" as a workflow.
# The stages live in workflow/rules/*.smk; all logic is in the rnnlens package (src/rnnlens), called by its CLI.

from snakemake.utils import min_version

min_version("9.0")


# A config file given with --configfile is a whole experiment: it replaces config.yaml instead of being merged
# into it (merging would keep the paper's corpora and grid). Snakemake passes --configfile on to cluster jobs, so
# they see the same config. Small changes: --config key=value.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/ngram.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/internals.smk"
include: "workflow/rules/explore_common.smk"
include: "workflow/rules/explore.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        explore_targets(),


# every store of analysis.explore.models (`rnnlens explore CORPUS` serves them)
rule explore:
    input:
        explore_targets(),


onsuccess:
    print_result_locations()


# the bookkeeping and aggregation rules that a cluster run keeps on the submitting host
include: "workflow/rules/local.smk"
