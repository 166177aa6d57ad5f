"""Choosing "the best model" of a kind from Table 1, for the analyses that study one: the best LSTM (error
breakdown, per-character gains), the best LSTM at the smallest and the largest size (small vs large), the best of
every architecture (brackets).

The analysis commands resolve their picks themselves (`--table1 T --pick lstm --candidates P...`), so a pick that
fails fails the analysis, with its message in that job's log. (A `$(rnnlens pick ...)` spliced into a rule's shell
line could fail without stopping the command it fed: bash ignores the status of a substitution inside arguments.)
The `pick` command prints the chosen paths, for use by hand.
"""

import logging
import sys
from pathlib import Path

import pandas as pd

from rnnlens.errors import InputError
from rnnlens.predictions import read_meta

log = logging.getLogger(__name__)


def pick_model(table1_csv, corpus, arch=None, size="any", layers=None):
    """Model id with the lowest test loss among the corpus's models of `arch`, at the smallest/largest size
    label ("min"/"max") or any size, optionally at a given depth."""
    df = pd.read_csv(table1_csv)
    df = df[df.corpus == corpus]
    if arch:
        df = df[df.arch == arch]
    if layers:
        df = df[df.layers == int(layers)]
    if size in ("min", "max"):
        df = df[df["size"] == (df["size"].min() if size == "min" else df["size"].max())]
    if df.empty:
        raise InputError(f"no model of corpus {corpus!r} matches arch={arch} size={size} layers={layers} in "
                         f"{table1_csv}; is Table 1 up to date with the grid? (rerun the workflow)")
    return df.loc[df.test_loss.idxmin(), "model"]


def every_arch_models(table1_csv, corpus, main="lstm"):
    """The best model of each architecture, plus the best `main` model of each depth at the largest size."""
    df = pd.read_csv(table1_csv)
    df = df[df.corpus == corpus]
    models = [pick_model(table1_csv, corpus, a) for a in sorted(df.arch.unique())]
    models += [pick_model(table1_csv, corpus, main, "max", layers) for layers in sorted(df.layers.unique())
               if ((df.arch == main) & (df.layers == layers)).any()]
    return list(dict.fromkeys(models))


def unconverged_models(table1_csv, corpus, models):
    """Those of `models` that Table 1 marks as not converged (in the given order)."""
    df = pd.read_csv(table1_csv)
    if "converged" not in df:
        return []
    flags = df[df.corpus == corpus].set_index("model")["converged"].astype(str)
    return [m for m in models if flags.get(m) == "False"]


# --- picking inside an analysis command -----------------------------------------------------------------------------

def add_pick_options(parser, picks):
    """--table1/--pick/--candidates: the alternative to naming the predictions files. `picks` says which."""
    g = parser.add_argument_group("picking the models from Table 1 (instead of naming their predictions files)")
    g.add_argument("--table1", help="Table 1 CSV: the models are chosen by their test loss")
    g.add_argument("--pick", metavar="ARCH", help=f"the architecture to pick: {picks}")
    g.add_argument("--candidates", nargs="+", metavar="PARQUET",
                   help="the predictions files of the corpus's models, among which the picks are looked up")


def _candidates(paths):
    """{model id: [paths]} and the corpus of predictions files (all of one corpus). Several files of one model id
    are its training seeds (training.seeds), the documented seed's first: the one not in predictions/seeds/MODEL/."""
    by_model, corpora = {}, set()
    for path in paths:
        meta = read_meta(path)
        by_model.setdefault(meta.get("model") or Path(path).stem, []).append(path)
        corpora.add(meta.get("corpus"))
    if len(corpora) != 1:
        raise InputError(f"--candidates hold predictions of corpora {sorted(map(str, corpora))}; give one corpus's")
    for files in by_model.values():
        # stable: the documented seed's file first (a folder named seeds higher up the path is no seed's)
        files.sort(key=lambda path: Path(path).parent.parent.name == "seeds")
    return by_model, corpora.pop()


def picked(args, every_arch=False, size="any", every_seed=False):
    """The predictions paths of the models `args.pick` chooses (see add_pick_options); a list, one path per model
    (its documented seed's), or with every_seed one list of paths per model (every seed among the candidates)."""
    if not (args.table1 and args.candidates):
        raise InputError("--pick needs --table1 (to choose by) and --candidates (the predictions to choose from)")
    by_model, corpus = _candidates(args.candidates)
    models = (every_arch_models(args.table1, corpus, args.pick) if every_arch
              else [pick_model(args.table1, corpus, args.pick, size)])
    missing = [m for m in models if m not in by_model]
    if missing:
        raise InputError(f"{args.table1} picks {', '.join(missing)} for {corpus}, but no --candidates file holds its "
                         "predictions; Table 1 is older than the grid: rerun the workflow")
    shown = [f"{m} ({len(by_model[m])} seeds)" if every_seed and len(by_model[m]) > 1 else m for m in models]
    log.info(f"picked from {args.table1}: {', '.join(shown)}")
    return [by_model[m] if every_seed else by_model[m][0] for m in models]


def one_of(args, name, given, size="any", every_seed=False):
    """The predictions given as --`name`, or else the model --pick chooses (with every_seed: the list of its
    seeds' files, as several files of one model given by hand are); exactly one of them."""
    if bool(given) == bool(args.pick):
        raise InputError(f"give either --{name} PARQUET or --pick ARCH with --table1 and --candidates")
    return given or picked(args, size=size, every_seed=every_seed)[0]


# --- the `pick` command ---------------------------------------------------------------------------------------------

def add_pick_arguments(parser):
    parser.add_argument("--table1", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--arch")
    parser.add_argument("--size", default="any", choices=["any", "min", "max"])
    parser.add_argument("--layers", type=int)
    parser.add_argument("--every-arch", action="store_true", help="best of each arch and each depth at the largest size")
    parser.add_argument("--template", default="results/{corpus}/predictions/{model}.parquet")


def run_pick(args):
    """Print the predictions path of the chosen model (the analyses pick for themselves: `--pick ARCH`)."""
    if args.every_arch:
        models = every_arch_models(args.table1, args.corpus, args.arch or "lstm")
    else:
        models = [pick_model(args.table1, args.corpus, args.arch, args.size, args.layers)]
    for m in unconverged_models(args.table1, args.corpus, models):
        # stderr: stdout holds only paths
        print(f"note: {m}, picked from Table 1 for {args.corpus}, has not converged (stopped at training.max_epochs "
              "while still improving); raise training.max_epochs", file=sys.stderr)
    print(" ".join(args.template.format(corpus=args.corpus, model=m) for m in models))
    return 0
