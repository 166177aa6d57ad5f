# Rules that a cluster run (Slurm) keeps on the host that runs Snakemake instead of submitting them: a submitted
# job waits in the queue and loads the controller, while one of these takes seconds and a few hundred MB, mostly
# Python importing its libraries, whatever the models' size (bench/bench_rules.py measured every rule on a test
# split the size of the paper's; docs/results/rule_costs.csv, docs/slurm.md). Submitted stay the rules that train,
# evaluate or otherwise run a model (internals, dynamic evaluation, explorer stores, training dynamics), build or
# train a baseline (n-grams, n-NN), and the download. Without a cluster executor every rule runs locally anyway.


localrules:
    # one pass over the corpus's bytes; the checkpoint every other job waits for
    prepare_corpus,
    # each grid point's hidden size from its parameter budget (arithmetic on data.json), and a copy of the table
    models_table,
    model_spec,
    models_report,
    # the dropout trial with the best validation loss: reads the trials' metadata and copies one model file
    select_dropout,
    # Tables 1 and 2: the metadata of the predictions files, not their rows
    corpus_table1,
    table1,
    table2,
    # figures from small tables: training histories, cell scores, gate saturation, error categories per arch, and
    # each model's cell pictures and saturation figure, drawn from its internals' tables
    training_curves,
    cell_pictures,
    model_saturation_figure,
    best_cells,
    saturation_figure,
    compare_archs,
    # analyses of saved predictions (one byte's probabilities per test position, no model): the error oracles,
    # the picked models' comparisons, bracket distances, the agreement matrix and its t-SNE
    oracles,
    error_breakdown,
    small_vs_large,
    perchar,
    brackets,
    agreement,
