"""Model and predictor ids: the one place that knows their grammar (no torch, so the workflow, tables and figures
read ids without loading models).

    model id       ARCH-LAYERSxSIZE          lstm-2x128, mygru-1x64   (SIZE: the parameter budget's label)
    predictor id   MODEL[+dyn]               lstm-2x128+dyn: the model under dynamic evaluation
                   MODEL~NAME                lstm-2x128~ablate-L2U40: the model under an intervention
                                             (rnnlens.interventions; NAME: letters, digits, '.', '_', '-')

ARCH is a registered architecture's name (rnnlens.archs): lower-case letters, digits and underscores, starting
with a letter, so that `-` always ends it.
"""

import re
from typing import NamedTuple

DYNAMIC_SUFFIX = "+dyn"
INTERVENTION_SEP = "~"
INTERVENTION_PATTERN = "[A-Za-z0-9][A-Za-z0-9_.-]*"
ARCH_PATTERN = "[a-z][a-z0-9_]*"
MODEL_PATTERN = f"{ARCH_PATTERN}-[0-9]+x[0-9]+"  # also the workflow's wildcard constraint of a trained model
PREDICTOR_PATTERN = f"{MODEL_PATTERN}(?:\\{DYNAMIC_SUFFIX}|{INTERVENTION_SEP}{INTERVENTION_PATTERN})?"
_MODEL = re.compile(f"({ARCH_PATTERN})-([0-9]+)x([0-9]+)")


# the order of architectures in tables and figures: the paper's, then those beyond it, each followed by its dynamic
# evaluation; other architectures (your own, interventions) come last, by name
ARCH_ORDER = tuple(a + suffix for a in ("lstm", "rnn", "gru", "transformer", "lru") for suffix in ("", DYNAMIC_SUFFIX))


def arch_rank(arch):
    """A sort key of architectures (families such as lstm+dyn too) in tables and figures."""
    return f"{ARCH_ORDER.index(arch):03d}" if arch in ARCH_ORDER else f"999{arch}"


class ModelId(NamedTuple):
    arch: str
    layers: int
    size: int

    def __str__(self):
        return format_model_id(self.arch, self.layers, self.size)


def format_model_id(arch, layers, size):
    return f"{arch}-{int(layers)}x{int(size)}"


def parse_model_id(mid):
    """'lstm-2x128' (or its predictor 'lstm-2x128+dyn') -> ModelId('lstm', 2, 128); ValueError naming the form."""
    match = _MODEL.fullmatch(base_model(mid))
    if not match:
        raise ValueError(f"model id {mid!r} is not of the form ARCH-LAYERSxSIZE, e.g. lstm-2x128 (ARCH: lower-case "
                         "letters, digits and _)")
    return ModelId(match.group(1), int(match.group(2)), int(match.group(3)))


def find_model_id(text):
    """The first model id inside `text` (a label, a file name), or None."""
    match = _MODEL.search(text)
    return ModelId(match.group(1), int(match.group(2)), int(match.group(3))) if match else None


def is_dynamic(pid):
    return pid.endswith(DYNAMIC_SUFFIX)


def base_model(pid):
    """The trained model behind a predictor id: lstm-2x128+dyn -> lstm-2x128, lstm-2x128~ablate-L2U40 -> lstm-2x128."""
    return pid.split(INTERVENTION_SEP, 1)[0].removesuffix(DYNAMIC_SUFFIX)


def intervention_of(pid):
    """The intervention's name of a predictor id (lstm-2x128~ablate-L2U40 -> ablate-L2U40), or None."""
    return pid.split(INTERVENTION_SEP, 1)[1] if INTERVENTION_SEP in pid else None


def intervention_id(mid, name):
    return f"{mid}{INTERVENTION_SEP}{name}"


def default_intervention_name(mode, layer, units, value=None):
    """ablate-L2U40 (held at the mean), zero-L2U40 / hold-L2U40 (a value), patch-L2U40; several units: L2U3-17."""
    verb = {"mean": "ablate", "patch": "patch"}.get(mode) or ("zero" if not value else "hold")
    return f"{verb}-L{int(layer)}U{'-'.join(str(int(u)) for u in units)}"


def dynamic_id(mid):
    return mid + DYNAMIC_SUFFIX


def arch_of(pid):
    return parse_model_id(pid).arch


def family_of(pid):
    """The architecture a predictor is grouped by in tables and figures: lstm, lstm+dyn, or lstm~ablate-L2U40 (an
    intervention is its own family, so that "the best LSTM" stays an unaltered one)."""
    name = intervention_of(pid)
    if name is not None:
        return arch_of(pid) + INTERVENTION_SEP + name
    return arch_of(pid) + (DYNAMIC_SUFFIX if is_dynamic(pid) else "")


def size_label(pid):
    return parse_model_id(pid).size
