"""`rnnlens <command>`: every workflow step, runnable by hand. Snakemake rules call these.

cli.py only dispatches. A command is one line of COMMANDS: its name, the module that implements it and a one-line
description. That module defines `add_<name>_arguments(parser)` and `run_<name>(args) -> exit code` (the name with
`-` as `_`). Modules are imported only for the command that runs, so `rnnlens --help` stays fast.
"""

import argparse
import importlib
import inspect
import sys

from rnnlens import log
from rnnlens.errors import RnnlensError

COMMANDS = {
    "fetch": ("rnnlens.fetch", "materialise a configured corpus (path, url+sha256, stdlib, tarball)"),
    "prepare": ("rnnlens.corpus", "vocabulary, split pieces and a summary JSON of a fetched corpus"),
    "models-table": ("rnnlens.model", "hidden size of every grid point from its parameter budget"),
    "train": ("rnnlens.train", "train (or resume) one model"),
    "select-dropout": ("rnnlens.train", "the model of a grid point: its dropout trial with the best validation loss"),
    "select-seeds": ("rnnlens.seeds", "the model of one seed (training.seeds): dropout chosen on the mean validation "
                                      "loss over seeds"),
    "evaluate": ("rnnlens.evaluate", "test-set predictions Parquet of a trained model"),
    "table1": ("rnnlens.tables", "Table 1 from predictions metadata and models tables"),
    "table2": ("rnnlens.tables", "Table 2 from n-gram and n-NN predictions and Table 1"),
    "pick": ("rnnlens.picks", "print the predictions path of the best model of a kind (from Table 1)"),
    "curves": ("rnnlens.curves", "training curves figure from history CSVs"),
    "sample": ("rnnlens.sample", "generate text from a trained model"),
    "ngram": ("rnnlens.ngram", "KenLM byte n-gram baseline: build it on the training split, predict the test split"),
    "nnn": ("rnnlens.nnn", "n-NN baseline (one tanh layer over the previous n bytes): train, predict the test split"),
    "brackets": ("rnnlens.brackets", "accuracy at closing brackets and quotes against their distance (Fig. 7)"),
    "perchar": ("rnnlens.perchar", "per-character loss gains of model A over model B, and their error overlap"),
    "internals": ("rnnlens.internals", "exact cell and gate activations of one model: saturation, cell scores, "
                                       "excerpts, pictures"),
    "cell-pictures": ("rnnlens.cellviz", "redraw one model's cell pictures from its internals outputs"),
    "best-cells": ("rnnlens.cells", "cross-model table of the best cell per feature"),
    "intervene": ("rnnlens.interventions", "test predictions of a model with units held inside its recurrence "
                                           "(the predictor {model}~{name})"),
    "cell-effects": ("rnnlens.cell_effects", "ablate each feature's best cell and random control units: loss changes "
                                             "where the feature holds and on its target characters"),
    "saturation-figure": ("rnnlens.saturation_plot", "gate saturation figure (and summary) of one or more models"),
    "oracles": ("rnnlens.oracles", "one model's error breakdown by oracles (Fig. 6)"),
    "small-vs-large": ("rnnlens.oracles", "where the extra errors of a small model fall, against a large one"),
    "memory-definitions": ("rnnlens.oracles", "the dynamic-memory oracle's counts under each definition"),
    "agreement": ("rnnlens.agreement", "argmax agreement matrix of models and its t-SNE embedding"),
    "dynamics": ("rnnlens.dynamics", "compare training snapshots with n-NN models, from saved distributions"),
    "dynamics-models": ("rnnlens.dynamics", "compare a model's training snapshots with the n-NN models"),
    "explore-store": ("rnnlens.explore.store", "build the activation explorer's store of one model"),
    "dyneval": ("rnnlens.dyneval", "test predictions of a trained model under dynamic evaluation ({model}+dyn)"),
    "compare-archs": ("rnnlens.compare", "error breakdown by oracle category per architecture, against the LSTM"),
    "explore": ("rnnlens.explore.server", "serve the activation explorer of a corpus's models on 127.0.0.1"),
    "stale": ("rnnlens.stale", "list every job the workflow would rerun for the current config, and why"),
}


def command_functions(name):
    """-> (add_arguments, run) of command `name`."""
    module = importlib.import_module(COMMANDS[name][0])
    snake = name.replace("-", "_")
    return getattr(module, f"add_{snake}_arguments"), getattr(module, f"run_{snake}")


def build_parser(command=None):
    """The parser of every command; only `command`'s arguments are added (that imports its module alone)."""
    parser = argparse.ArgumentParser(prog="rnnlens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (_, summary) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=summary)
            continue
        add_arguments, run_command = command_functions(name)
        p = sub.add_parser(name, help=summary, description=inspect.getdoc(run_command) or summary,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
    return parser


def run(argv):
    """Parse and run one command; its exceptions propagate (callers and tests that handle them)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    return command_functions(args.command)[1](args) or 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    log.configure()
    try:
        return run(argv)
    except RnnlensError as err:  # a user error: one line naming the problem and the fix; anything else: traceback
        print(f"rnnlens {argv[0]}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
