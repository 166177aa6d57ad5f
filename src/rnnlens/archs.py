"""The architecture registry: which module implements each architecture, and the protocol every such module meets.

An architecture is one Python module (one module may serve a family: rnnlens.recurrent serves rnn, lstm and gru).
Every stage asks this registry instead of testing an architecture's name, so adding one is one module and one
line: a line of BUILTIN here, or for your own, `architectures: {name: module}` in the workflow config (a dotted
module importable from the workflow's folder, or a path to a .py file). The workflow passes the user's entries to
every job in the environment variable RNNLENS_ARCHITECTURES (JSON), which `rnnlens` commands read.

The protocol (README, "Your own architecture"). Required functions of the module:

    count_parameters(arch, layers, hidden, vocab_size) -> int
        parameters of the model of that width; the workflow picks the width whose count is closest to the budget
        (within rnnlens.model.TOLERANCE of it: see inner_width below for a module whose width alone cannot)
    build_model(spec) -> torch.nn.Module
        spec: rnnlens.model.ModelSpec (arch, layers, hidden, vocab_size, dropout, ...). The model has `.spec`,
        `forward(idx, state=None) -> (logits, state)` for idx (batch, time) int64 (state: whatever the model
        carries from one chunk of text to the next, None to start; a model that carries nothing returns None) and
        `init_weights(scale)`. A model with an int attribute `window` reads at most that many bytes and carries
        no state: it is trained on fresh batches and evaluated in strided windows instead of streams.
    internals_runner(model, method="auto") -> runner
        runner.kinds: {name: Kind} of what it yields per layer (cell, hidden, each gate...), with value ranges and
        which are gates (gate saturation); runner.cell_kind: the kind the cell analyses use; runner.units: units
        of that kind per layer; runner.method: a word for the logs. Then either
        runner.run(idx, state) -> ([{kind: (batch, time, units)} per layer], state) and runner.warm(idx) -> state
        (streamed with carried state by rnnlens.internals), or runner.stream(corpus, rows, warmup, chunk)
        yielding (pos, acts) for a model without state.

Optional part of the runner (interventions, rnnlens.interventions; without it `rnnlens cell-effects` leaves
the architecture's models out and a declared intervention says it does not support them):

    runner.supports_clamp = True
    runner.run(idx, state, clamp={layer (from 0): (units, values)}) holds those units of runner.cell_kind at
        `values` at every step, inside the recurrence (what follows the step reads the held value); values
        (len(units),) or (batch, time, len(units)). Without clamp, exactly the plain run. A runner that streams
        (a model with a `window`) also has this run(): it reads one window from its start, the clamp holds the
        units at every position of it, and it returns None for the state.
    runner.logits(acts) -> (batch, time, vocab): the model's logits from run()'s activations (run() may return
        entries beyond its kinds for this, as the LRU's layer output "out")

    The built-in ones: rnn, gru, lstm clamp the cell state (h, c) inside the recurrence; lru the real or
    imaginary part of a unit of its state x_t, inside the step loop; transformer a unit of the residual stream or
    an MLP neuron at every position of each window (it has no recurrence).

Optional functions (their defaults in brackets):

    training_defaults(arch, settings) -> dict   training settings for this architecture, under the config's
                                                training_overrides [{}]
    spec_options(arch, settings) -> dict        extra ModelSpec fields from the training settings [{}]
    width_step(arch) -> int                     widths are multiples of this [1]
    inner_width(arch, layers, hidden, vocab_size, budget) -> int
                                                a second width the architecture owns (spec.inner: the
                                                transformer's MLP width, the LRU's state size), chosen after
                                                `hidden` so that the count comes within the tolerance where
                                                steps of `hidden` alone cannot [none: inner 0]. A module with it
                                                takes inner as a fifth argument, count_parameters(arch, layers,
                                                hidden, vocab_size, inner), and builds spec.inner; inner 0 (what
                                                a spec made before it holds) means its default shape. A pure
                                                function of its arguments, so a spec always gives the same model
    style(arch) -> {"colormap", "marker"}       its colour family in figures [a spare colormap]
    describe(arch) -> str                       "a vanilla RNN" [the name]
"""

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

from rnnlens.errors import InputError
from rnnlens.ids import ARCH_PATTERN

BUILTIN = {
    "rnn": "rnnlens.recurrent",
    "lstm": "rnnlens.recurrent",
    "gru": "rnnlens.recurrent",
    "transformer": "rnnlens.transformer",
    "lru": "rnnlens.lru",
}
ENV = "RNNLENS_ARCHITECTURES"
REQUIRED = ("count_parameters", "build_model", "internals_runner")
# colour families of architectures that do not choose one (baselines use neutral ones: rnnlens.plots)
SPARE_COLORMAPS = ("PuRd", "BuGn", "OrRd", "GnBu", "YlGn", "RdPu", "PuBu")
SPARE_MARKERS = ("X", "*", "h", "p", "<", ">")


class Kind(NamedTuple):
    """One kind of activation a runner yields per layer."""

    low: float  # the range of its values (None: unbounded), for colour scales
    high: float
    gate: bool = False  # a sigmoid gate: counted by gate saturation
    label: str = ""  # its name in tables and figures (gates: "forget")
    flip: bool = False  # a gate the paper defines as 1 - this one (PyTorch's GRU update gate)


def user_architectures():
    """{name: module or file} registered for this process (the workflow config's `architectures:`)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return {}
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{ENV} is not JSON ({err}); it maps architecture names to modules") from None
    return dict(entries)


def names():
    return list(BUILTIN) + [n for n in user_architectures() if n not in BUILTIN]


def source_of(arch):
    """The dotted module or .py path registered for `arch`."""
    if arch in BUILTIN:
        return BUILTIN[arch]
    user = user_architectures()
    if arch not in user:
        raise InputError(f"unknown architecture {arch!r}: the built-in ones are {', '.join(BUILTIN)}; register your "
                         f"own under `architectures:` in the config (name: module), or in {ENV} for a command run "
                         "by hand")
    return user[arch]


def is_file_source(source):
    return source.endswith(".py") or "/" in source


def _workflow_folder_on_path():
    """A package beside the workflow is importable, as it is for the `python -m rnnlens` jobs run there."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def module_file(arch):
    """The source file of the module of `arch` (for code fingerprints)."""
    source = source_of(arch)
    if is_file_source(source):
        return Path(source).resolve()
    _workflow_folder_on_path()
    try:
        spec = importlib.util.find_spec(source)
    except ImportError:
        spec = None
    if spec is None or not spec.origin:
        raise InputError(f"architecture {arch}: module {source} is not importable; put its package beside the "
                         "workflow (or on PYTHONPATH), or give a path to its .py file")
    return Path(spec.origin).resolve()


_loaded = {}


def load(arch):
    """The module implementing `arch`, imported once and checked against the protocol."""
    source = source_of(arch)
    if source in _loaded:
        return _loaded[source]
    if is_file_source(source):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"architecture {arch}: file {source} does not exist")
        name = f"rnnlens_arch_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        _workflow_folder_on_path()
        try:
            module = importlib.import_module(source)
        except ImportError as err:
            raise InputError(f"architecture {arch}: cannot import {source} ({err}); put its package beside the "
                             "workflow (or on PYTHONPATH), or give a path to its .py file") from None
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise InputError(f"architecture {arch}: module {source} lacks {', '.join(missing)}; an architecture module "
                         f"defines {', '.join(REQUIRED)} (README, 'Your own architecture')")
    _loaded[source] = module
    return module


def check(entries, base_dir="."):
    """Problems of the config's `architectures:` entries, one line each, before any job runs: a bad name, a
    clash with a built-in architecture, a module that does not import or lacks part of the protocol."""
    import re

    problems = []
    saved = os.environ.get(ENV)
    for name, source in entries.items():
        if not re.fullmatch(ARCH_PATTERN, name):
            problems.append(f"architectures.{name}: a name is lower-case letters, digits and _, starting with a letter")
        elif name in BUILTIN:
            problems.append(f"architectures.{name}: {name} is a built-in architecture; choose another name")
        else:
            resolved = str(Path(base_dir, source)) if is_file_source(source) else source
            os.environ[ENV] = json.dumps({name: resolved})
            try:
                load(name)
            except InputError as err:
                problems.append(f"architectures.{name}: {str(err).removeprefix(f'architecture {name}: ')}")
            except Exception as err:  # the user's module failed while importing: say where
                problems.append(f"architectures.{name}: importing {source} failed: {type(err).__name__}: {err}")
    if saved is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = saved
    return problems


def _optional(arch, name, *args, default=None):
    fn = getattr(load(arch), name, None)
    return fn(arch, *args) if callable(fn) else default


def training_defaults(arch, settings):
    return dict(_optional(arch, "training_defaults", dict(settings), default={}) or {})


def spec_options(arch, settings):
    return dict(_optional(arch, "spec_options", dict(settings), default={}) or {})


def width_step(arch):
    return int(_optional(arch, "width_step", default=1) or 1)


def inner_width(arch, layers, hidden, vocab_size, budget):
    """The second width of `arch` for this budget at this width, or 0 for an architecture without one."""
    return int(_optional(arch, "inner_width", layers, hidden, vocab_size, budget, default=0) or 0)


def describe(arch):
    return _optional(arch, "describe", default=None) or f"a {arch}"


def style(arch):
    """{"colormap", "marker"} of an architecture; one without its own takes a spare family by its name."""
    chosen = _optional(arch, "style", default=None) or {}
    index = sum(arch.encode()) % len(SPARE_COLORMAPS)
    return {"colormap": chosen.get("colormap", SPARE_COLORMAPS[index]),
            "marker": chosen.get("marker", SPARE_MARKERS[index % len(SPARE_MARKERS)])}
