"""Did a training run converge? A run that early stopping ended has (no validation gain for `patience` epochs);
a run that `max_epochs` ended while its best validation loss was still falling by more than
`training.convergence_tolerance` (a fraction per epoch, over its last two epochs) has not: its numbers are those
of a model still learning, and every analysis that picks "the best" model from them should say so.

The verdict is written into the model's metadata by training (`convergence`, `converged`), carried into the
predictions metadata by evaluation, marked in Table 1 and repeated by the analyses that pick models from it.
"""

import math

SETTING = "training.max_epochs"
TOLERANCE_SETTING = "training.convergence_tolerance"
DEFAULT_TOLERANCE = 0.01
WINDOW = 2  # epochs over which the recent improvement is averaged (one epoch alone is noisy)
UNCONVERGED = "unconverged"


def assess(val_losses, max_epochs, patience_exhausted, tolerance=DEFAULT_TOLERANCE, initial_loss=None):
    """Verdict on one run from its validation losses (one per epoch, in order).

    initial_loss: the loss before training (ln of the vocabulary size for a near-uniform start), used as
    epoch 0 when the run has a single epoch. -> dict: converged (bool), stopped_by ("early_stopping" or
    "max_epochs"), epochs, improvement_per_epoch (relative fall of the best validation loss per epoch over the
    last WINDOW epochs: 0.05 when it fell 5% in each), tolerance."""
    losses = [float(v) for v in val_losses]
    best, running = [], math.inf
    for v in losses:
        running = min(running, v)
        best.append(running)
    if initial_loss is not None:
        best = [float(initial_loss)] + best
    k = min(WINDOW, len(best) - 1)
    if k < 1 or not math.isfinite(best[-1 - k]) or best[-1 - k] <= 0:
        improvement = None
    else:
        improvement = 1.0 - (best[-1] / best[-1 - k]) ** (1.0 / k)  # the relative fall per epoch, compounded
    stopped_by = "early_stopping" if patience_exhausted or len(losses) < max_epochs else "max_epochs"
    converged = stopped_by == "early_stopping" or (improvement is not None and improvement <= tolerance)
    return {"converged": bool(converged), "stopped_by": stopped_by, "epochs": len(losses),
            "improvement_per_epoch": None if improvement is None else round(improvement, 6),
            "tolerance": tolerance}


def warning(model_id, verdict):
    """The warning for an unconverged run, naming the setting to raise (None when the run converged); logged as a
    warning, it reads `HH:MM:SS WARNING: <model> has not converged ...`."""
    if verdict["converged"]:
        return None
    fell = verdict["improvement_per_epoch"]
    how = f"was still falling {100 * fell:.1f}% per epoch" if fell is not None else "could not be judged"
    return (f"{model_id} has not converged: it stopped at {SETTING} = {verdict['epochs']} while its "
            f"validation loss {how} (more than {TOLERANCE_SETTING} = {100 * verdict['tolerance']:g}%). Its "
            f"numbers are those of a model still learning; raise {SETTING} (for this model alone: "
            f"training_overrides.{model_id}.max_epochs) and rerun.")


def is_unconverged(meta):
    """True only when metadata says so (older files without a verdict count as unknown, not unconverged)."""
    return (meta or {}).get("converged") is False


DYN_FLAGGED = "dyn flagged: no gain over static"


def dynamic_flag(meta):
    """Why a dynamic-evaluation predictor did not beat its static model (rnnlens.dyneval), or None."""
    return ((meta or {}).get("dynamic") or {}).get("flag")


def label(model_id, meta):
    """The model id as figures and logs show it: marked when the model has not converged, and when it is a
    dynamic-evaluation predictor flagged for not beating its static model."""
    out = f"{model_id} ({UNCONVERGED})" if is_unconverged(meta) else model_id
    return f"{out} ({DYN_FLAGGED})" if dynamic_flag(meta) else out


def pick_note(model_id, meta, role="the best model"):
    """A sentence for an analysis that picked this model, or None when it converged (or nothing is known)."""
    if not is_unconverged(meta):
        return None
    conv = meta.get("convergence") or {}
    fell = conv.get("improvement_per_epoch")
    how = f", validation loss still falling {100 * fell:.1f}% per epoch" if fell else ""
    return (f"note: {model_id}, picked as {role}, has not converged (stopped at {SETTING}{how}); "
            f"raise {SETTING} for conclusions about trained models")
