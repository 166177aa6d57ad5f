"""Training seeds as trials (`training.seeds`): each seed of each dropout value is its own training job.

The dropout of a grid point is the one with the lowest validation loss averaged over the seeds, so that one lucky
seed does not choose it. The first seed of the list is the documented seed: its model is "the model" that every
analysis of one model reads; each further seed gets a model at the same dropout, for Table 1's mean, standard
deviation and 95% interval over seeds (rnnlens.tables).

(A separate module from rnnlens.train, so that adding seeds changes no fingerprint of the training itself.)
"""

import json
import logging
from collections import defaultdict
from pathlib import Path

from rnnlens.errors import InputError
from rnnlens.io import torch_load
from rnnlens.train import write_selected

log = logging.getLogger(__name__)

def _trials(paths):
    """(seed, dropout, best validation loss, path, payload) of every trial model.pt."""
    out = []
    for path in map(Path, paths):
        payload = torch_load(path)
        extra = payload["extra"]
        cfg = extra["train_config"]
        out.append((int(cfg["seed"]), float(cfg["dropout"]), float(extra["best_val_loss"]), path, payload))
        log.info(f"trial {path}: seed {cfg['seed']}, dropout {cfg['dropout']:g}, "
                 f"best validation loss {extra['best_val_loss']:.4f}")
    return out


def choose_dropout(trials):
    """The dropout with the lowest mean validation loss over seeds (ties: the smaller dropout), the mean loss of
    every dropout, and the loss of every seed and dropout."""
    by_seed = defaultdict(dict)
    for seed, dropout, val, _, _ in trials:
        by_seed[seed][dropout] = val
    dropouts = sorted({d for losses in by_seed.values() for d in losses})
    missing = [(s, d) for s in by_seed for d in dropouts if d not in by_seed[s]]
    if missing:
        raise InputError(f"trials missing for (seed, dropout) {missing}: every seed needs a trial of every dropout")
    mean = {d: sum(by_seed[s][d] for s in by_seed) / len(by_seed) for d in dropouts}
    best = min(dropouts, key=lambda d: (mean[d], d))
    return best, mean, by_seed


def select_seeds(trials, out_model, out_history, out_selection, dropout_of=None):
    """The model of one seed from its trials. Without `dropout_of`: `trials` are every seed's dropout trials, the
    documented seed's first; the dropout with the best mean validation loss over seeds is chosen and the documented
    seed's trial of it becomes the model. With `dropout_of` (the documented seed's selection.json): `trials` are
    one further seed's, and its trial at the dropout chosen there becomes that seed's model."""
    found = _trials(trials)
    if dropout_of is None:
        seed = found[0][0]
        dropout, mean, by_seed = choose_dropout(found)
        selection = {"dropout": dropout, "seed": seed, "seeds": list(by_seed), "mean_val_loss": mean[dropout],
                     "val_loss_by_dropout": {f"{d:g}": v for d, v in mean.items()},
                     "val_loss_by_seed": {str(s): {f"{d:g}": v for d, v in losses.items()}
                                          for s, losses in by_seed.items()}}
    else:
        chosen = json.loads(Path(dropout_of).read_text())
        seeds = {t[0] for t in found}
        if len(seeds) != 1:
            raise InputError(f"--dropout-of takes the trials of one seed; got seeds {sorted(seeds)}")
        seed, dropout = seeds.pop(), float(chosen["dropout"])
        selection = {"dropout": dropout, "seed": seed, "chosen_in": str(dropout_of),
                     "val_loss_by_dropout": chosen["val_loss_by_dropout"]}
    hit = [t for t in found if t[0] == seed and t[1] == dropout]
    if not hit:
        raise InputError(f"no trial of seed {seed} at dropout {dropout:g} among {len(found)} trial(s); give every "
                         f"dropout trial of the seed")
    _, _, best_val, path, payload = hit[0]
    selection.update({"best_val_loss": best_val, "trial": str(path.parent.name)})
    write_selected(path, payload, selection, out_model, out_history, out_selection)
    log.info(f"seed {seed}: dropout {dropout:g} (validation loss {best_val:.4f}) -> {out_model}")
    return selection


# --- commands -------------------------------------------------------------------------------------------------------

def add_select_seeds_arguments(parser):
    parser.add_argument("--trials", nargs="+", required=True,
                        help="model.pt of every trial: every seed's, the documented seed's first (or, with "
                             "--dropout-of, one further seed's)")
    parser.add_argument("--dropout-of", help="the documented seed's selection.json: take its dropout")
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-history", required=True)
    parser.add_argument("--out-selection", required=True)


def run_select_seeds(args):
    select_seeds(args.trials, args.out_model, args.out_history, args.out_selection, args.dropout_of)
    return 0
