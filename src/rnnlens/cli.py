"""`rnnlens <command>`: every workflow step, runnable by hand. Snakemake rules call these."""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

# Commands implemented in their own modules, each exposing cli(argv) -> int.
MODULE_COMMANDS = {
    "ngram": "rnnlens.ngram",
    "nnn": "rnnlens.nnn",
    "brackets": "rnnlens.brackets",
    "perchar": "rnnlens.perchar",
    "internals": "rnnlens.internals",
    "cell-pictures": "rnnlens.cellviz",
    "best-cells": "rnnlens.cells",
    "saturation-figure": "rnnlens.saturation",
    "oracles": "rnnlens.oracles",
    "small-vs-large": "rnnlens.oracles",
    "agreement": "rnnlens.agreement",
    "dynamics": "rnnlens.dynamics",
    "dynamics-models": "rnnlens.dynamics",
    "explore-store": "rnnlens.explore.store",
    "explore": "rnnlens.explore.server",
}


def log(*parts, **kwargs):
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def cmd_fetch(args):
    from rnnlens.corpus import acquire, atomic_write_text

    spec = json.loads(args.spec)
    provenance = acquire(spec, args.out, log=log)
    provenance["corpus"] = args.corpus
    atomic_write_text(args.provenance, json.dumps(provenance, indent=2) + "\n")
    log(f"corpus {args.corpus}: {Path(args.out).stat().st_size} bytes, sha256 {provenance['sha256']}")
    return 0


def cmd_prepare(args):
    from rnnlens.corpus import atomic_write_text, prepare

    fractions = json.loads(args.split)
    summary = prepare(args.corpus, args.corpus_bin, fractions, args.min_train_bytes)
    summary["provenance"] = json.loads(Path(args.provenance).read_text()) if args.provenance else None
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    log(f"corpus {args.corpus}: {summary['size']} bytes, vocabulary {summary['vocab_size']}, "
        f"splits {summary['split_sizes']}")
    return 0


def cmd_models_table(args):
    import pandas as pd

    from rnnlens.model import models_table
    from rnnlens.corpus import atomic_csv

    meta = json.loads(Path(args.data).read_text())
    df = pd.DataFrame(models_table(meta["corpus"], meta["vocab_size"], args.archs.split(","),
                      [int(x) for x in args.layers.split(",")], [int(x) for x in args.sizes.split(",")]))
    atomic_csv(df, args.out)
    log(f"models table for {meta['corpus']} (vocabulary {meta['vocab_size']}): {len(df)} models -> {args.out}")
    return 0


def cmd_train(args):
    import pandas as pd
    import torch

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import ModelSpec, parse_model_id
    from rnnlens.train import TrainConfig, TrainingDiverged, train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads(args.settings))
    corpus = PreparedCorpus.load(args.data)
    arch, layers, size = parse_model_id(args.model)
    table = pd.read_csv(args.models_table).set_index("model")
    if args.model not in table.index:
        raise SystemExit(f"model {args.model} is not in {args.models_table}; add its arch/layers/size to the grid")
    hidden = int(table.loc[args.model, "hidden"])
    spec = ModelSpec(arch, layers, hidden, corpus.vocab_size, cfg.dropout)
    meta = {"model_id": args.model, "corpus": corpus.name, "size_label": size,
            "code_fingerprint": args.code_fingerprint}
    try:
        return train(cfg, corpus, spec, args.out_model, args.out_history, args.checkpoint, meta=meta,
                     stop_after_steps=args.stop_after_steps, log=log)
    except TrainingDiverged as err:
        log(f"ERROR: {err}")
        return 3


def cmd_select_dropout(args):
    from rnnlens.train import select_dropout

    select_dropout(args.trials, args.out_model, args.out_history, args.out_selection, log=log)
    return 0


def cmd_evaluate(args):
    import torch

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.evaluate import evaluate
    from rnnlens.model import load_model
    from rnnlens.train import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    model, extra = load_model(args.model)
    corpus = PreparedCorpus.load(args.data)
    model_id = args.model_id or extra.get("model_id", Path(args.model).parent.name)
    evaluate(model, extra, corpus, args.out, model_id, streams=args.streams, warmup=args.warmup,
             device=pick_device(args.device), log=log)
    return 0


def cmd_table1(args):
    from rnnlens.corpus import atomic_write_text
    from rnnlens.corpus import atomic_csv
    from rnnlens.tables import table1, table1_markdown

    df = table1(args.predictions, args.models, json.loads(args.paper_names))
    atomic_csv(df, args.out_csv)
    atomic_write_text(args.out_md, table1_markdown(df))
    log(f"Table 1: {len(df)} models -> {args.out_csv}, {args.out_md}")
    return 0


def cmd_table2(args):
    from rnnlens.corpus import atomic_write_text
    from rnnlens.corpus import atomic_csv
    from rnnlens.tables import table2, table2_markdown

    df = table2(args.ngram, args.nnn, args.table1)
    atomic_csv(df, args.out_csv)
    atomic_write_text(args.out_md, table2_markdown(df))
    log(f"Table 2: {len(df)} rows -> {args.out_csv}, {args.out_md}")
    return 0


def cmd_pick(args):
    """Print the predictions path of the chosen model (used by analysis rules that need 'the best LSTM')."""
    from rnnlens.tables import pick_model

    models = [pick_model(args.table1, args.corpus, args.arch, args.size, args.layers)]
    if args.every_arch:
        # best of each arch, plus each depth of the main arch at the largest size
        df = __import__("pandas").read_csv(args.table1)
        df = df[df.corpus == args.corpus]
        models = [pick_model(args.table1, args.corpus, a) for a in sorted(df.arch.unique())]
        main = args.arch or "lstm"
        models += [pick_model(args.table1, args.corpus, main, "max", l) for l in sorted(df.layers.unique())
                   if ((df.arch == main) & (df.layers == l)).any()]
        models = list(dict.fromkeys(models))
    from rnnlens.tables import unconverged_models

    for m in unconverged_models(args.table1, args.corpus, models):
        # stderr: the analysis command that reads stdout gets only paths; its own log and figure say it too
        print(f"note: {m}, picked from Table 1 for {args.corpus}, has not converged (stopped at training.max_epochs "
              "while still improving); raise training.max_epochs", file=sys.stderr)
    print(" ".join(args.template.format(corpus=args.corpus, model=m) for m in models))
    return 0


def cmd_curves(args):
    from rnnlens.tables import training_curves

    training_curves(args.histories, args.labels, args.out, args.title)
    return 0


def cmd_sample(args):
    from rnnlens.sample import run

    return run(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="rnnlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="materialise a configured corpus (path, url+sha256, stdlib, tarball)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--spec", required=True, help="the corpus's config entry as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance", required=True)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("prepare", help="vocabulary, contiguous splits and a summary JSON")
    p.add_argument("--corpus", required=True)
    p.add_argument("--corpus-bin", required=True)
    p.add_argument("--provenance")
    p.add_argument("--split", required=True, help='JSON, e.g. {"train": 0.8, "val": 0.1, "test": 0.1}')
    p.add_argument("--min-train-bytes", type=int, default=2)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("models-table", help="hidden size of every grid point from its parameter budget")
    p.add_argument("--data", required=True)
    p.add_argument("--archs", default="rnn,lstm,gru")
    p.add_argument("--layers", default="1,2,3")
    p.add_argument("--sizes", default="64,128,256,512")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_models_table)

    p = sub.add_parser("train", help="train (or resume) one model")
    p.add_argument("--data", required=True)
    p.add_argument("--models-table", required=True)
    p.add_argument("--model", required=True, help="model id, e.g. lstm-2x128")
    p.add_argument("--settings", default="{}", help="training settings as JSON (see TrainConfig)")
    p.add_argument("--out-model", required=True)
    p.add_argument("--out-history", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--code-fingerprint", default="")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("select-dropout", help="the model of a grid point: its dropout trial with the best "
                                              "validation loss")
    p.add_argument("--trials", nargs="+", required=True, help="model.pt of every dropout trial")
    p.add_argument("--out-model", required=True)
    p.add_argument("--out-history", required=True)
    p.add_argument("--out-selection", required=True)
    p.set_defaults(func=cmd_select_dropout)

    p = sub.add_parser("evaluate", help="test-set predictions Parquet of a trained model")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model-id")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("table1", help="Table 1 from predictions metadata and models tables")
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--paper-names", default="{}", help="JSON corpus -> paper corpus (warpeace, linux)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("table2", help="Table 2 from n-gram and n-NN predictions and Table 1")
    p.add_argument("--ngram", nargs="*", default=[])
    p.add_argument("--nnn", nargs="*", default=[])
    p.add_argument("--table1", help="Table 1 CSV, for the best RNN of each corpus beside the baselines")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=cmd_table2)

    p = sub.add_parser("pick", help="print the path of the best model of a kind (from Table 1)")
    p.add_argument("--table1", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--arch")
    p.add_argument("--size", default="any", choices=["any", "min", "max"])
    p.add_argument("--layers", type=int)
    p.add_argument("--every-arch", action="store_true", help="best of each arch and each depth at the largest size")
    p.add_argument("--template", default="results/{corpus}/predictions/{model}.parquet")
    p.set_defaults(func=cmd_pick)

    p = sub.add_parser("curves", help="training curves figure from history CSVs")
    p.add_argument("--histories", nargs="+", required=True)
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--title")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("sample", help="generate text from a trained model")
    p.add_argument("model", help="a trained model.pt")
    p.add_argument("-n", "--length", type=int, default=500)
    p.add_argument("-t", "--temperature", type=float, default=1.0)
    p.add_argument("-p", "--prime", default="", help="priming text (backslash escapes such as \\n allowed)")
    p.add_argument("-s", "--seed", type=int, default=1)
    p.add_argument("--argmax", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("-o", "--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_sample)

    for name in MODULE_COMMANDS:
        sub.add_parser(name, help=f"see `rnnlens {name} --help`", add_help=False)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MODULE_COMMANDS:
        module = importlib.import_module(MODULE_COMMANDS[argv[0]])
        entry = getattr(module, "cli_" + argv[0].replace("-", "_"), None) or module.cli
        return entry(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except Exception as err:  # noqa: BLE001 - turn known input errors into one clear line
        from rnnlens.corpus import CorpusError

        if isinstance(err, (CorpusError, ValueError)):
            print(f"rnnlens {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
