"""Gate saturation (the paper's analysis 2): per gate unit, the fraction of test steps on which the gate is
left-saturated (activation < 0.1) and right-saturated (> 0.9).

Gates are the sigmoid gates as PyTorch defines them: LSTM input i, forget f, output o; GRU reset r and update
z, where PyTorch's z weighs the *previous* state (h = (1-z)*n + z*h_prev), so a right-saturated GRU update
gate keeps its memory. The paper's z weighs the candidate: it is 1 - PyTorch's z. Tables keep PyTorch's z; the
figure plots the paper's (its left and right fractions are PyTorch's right and left), labelled so. PyTorch's
reset gate also differs from the paper's: it multiplies the recurrent matrix product, not h_prev before it.

Table (Parquet): model, layer (from 1), gate, unit (from 0), frac_left, frac_right, steps.
Figure: one scatter per gate type, x = fraction right-saturated, y = fraction left-saturated, coloured by
layer, with the diagonal x + y = 1 (gates on it are always saturated one way or the other).
"""


import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from rnnlens.errors import InputError
from rnnlens.io import atomic_csv, read_parquet
from rnnlens.io import write_table as write_arrow_table

LEFT, RIGHT = 0.1, 0.9
GATE_ORDER = ("input", "forget", "output", "reset", "update")  # the paper's; other gates follow in their order
SCHEMA = pa.schema([("model", pa.string()), ("layer", pa.int16()), ("gate", pa.string()), ("unit", pa.int32()),
                    ("frac_left", pa.float64()), ("frac_right", pa.float64()), ("steps", pa.int64())])
META_KEY = b"rnnlens"


def saturation_fractions(values, left=LEFT, right=RIGHT):
    """values (steps, units) of one gate -> (fraction < left, fraction > right) per unit."""
    values = np.asarray(values)
    return (values < left).mean(axis=0), (values > right).mean(axis=0)


def gates_of(kinds):
    """{kind: gate name} of a runner's kinds (rnnlens.archs.Kind), and the names the paper defines flipped."""
    gates = {name: kind.label or name for name, kind in kinds.items() if kind.gate}
    flipped = [kind.label or name for name, kind in kinds.items() if kind.gate and kind.flip]
    return gates, flipped


class SaturationCounter:
    """Streaming counts of saturated steps per gate unit; feed it the internals chunk by chunk."""

    def __init__(self, gates, layers, hidden, left=LEFT, right=RIGHT):
        """gates: {activation kind: gate name} (a runner's kinds with gate=True, by their labels)."""
        if not gates:
            raise InputError("no gates to count; gate saturation applies to architectures with sigmoid gates")
        self.layers, self.hidden, self.left, self.right = layers, hidden, left, right
        self.gates = dict(gates)
        self.left_counts = {(k, g): torch.zeros(hidden, dtype=torch.int64) for k in range(layers) for g in self.gates}
        self.right_counts = {key: torch.zeros_like(v) for key, v in self.left_counts.items()}
        self.steps = 0

    def update(self, acts, valid=None):
        """acts: per layer {name: (batch, time, hidden)}; valid: (batch, time) bool mask of real positions."""
        for k, layer in enumerate(acts):
            for g in self.gates:
                values = layer[g]
                if valid is not None:
                    values = values[valid.to(values.device)]
                values = values.reshape(-1, self.hidden)
                self.left_counts[k, g] += (values < self.left).sum(0).cpu()
                self.right_counts[k, g] += (values > self.right).sum(0).cpu()
        n = int(valid.sum()) if valid is not None else int(np.prod(acts[0][next(iter(self.gates))].shape[:-1]))
        self.steps += n

    def table(self, model_id):
        rows = []
        steps = max(self.steps, 1)
        for (k, g), left in self.left_counts.items():
            rows.append(pd.DataFrame({
                "model": model_id, "layer": k + 1, "gate": self.gates[g], "unit": np.arange(self.hidden),
                "frac_left": left.numpy() / steps, "frac_right": self.right_counts[k, g].numpy() / steps,
                "steps": self.steps}))
        return pd.concat(rows, ignore_index=True)


def empty_table():
    return SCHEMA.empty_table().to_pandas()


def write_table(frame, path, meta=None):
    meta = {**(meta or {}), "left_threshold": LEFT, "right_threshold": RIGHT}
    return write_arrow_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), path, meta)


def read_table(path):
    return read_parquet(path).to_pandas()


def summarize(frame):
    """Per model, gate and layer: units, mean fractions, and the shares of units right/left-saturated more than
    90% of the time (forget gates right-saturated almost always are the paper's integrators) or never
    saturated either way more than 10% of the time."""
    if frame.empty:
        return pd.DataFrame(columns=["model", "gate", "layer", "units", "mean_frac_left", "mean_frac_right",
                                     "share_right_over_90", "share_left_over_90", "share_rarely_saturated"])
    grouped = frame.assign(
        right90=frame.frac_right > 0.9, left90=frame.frac_left > 0.9,
        rarely=(frame.frac_right < 0.1) & (frame.frac_left < 0.1),
    ).groupby(["model", "gate", "layer"], sort=False)
    out = grouped.agg(units=("unit", "size"), mean_frac_left=("frac_left", "mean"),
                      mean_frac_right=("frac_right", "mean"), share_right_over_90=("right90", "mean"),
                      share_left_over_90=("left90", "mean"), share_rarely_saturated=("rarely", "mean")).reset_index()
    order = list(GATE_ORDER) + [g for g in dict.fromkeys(out["gate"]) if g not in GATE_ORDER]
    out["gate"] = pd.Categorical(out["gate"], order, ordered=True)
    return out.sort_values(["model", "gate", "layer"]).reset_index(drop=True).assign(gate=lambda d: d.gate.astype(str))


def write_summary(summary, path):
    return atomic_csv(summary, path, float_format="%.4f")
