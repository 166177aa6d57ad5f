"""Uncertainty for the comparison figures: percentile bootstrap intervals with a fixed seed (95%, 1000 resamples
unless told), over test positions and, where a model has several training seeds, over the seeds too.

With several seeds the bootstrap has two levels, as the data do: a resample draws the seeds with replacement
(their mean is the model) and then the test positions with replacement. Positions are drawn independently, so
the intervals leave out the correlation of neighbouring characters (errors cluster within words): they say how
much the figure would move with another test text of the same kind, not with another training run, unless
there are seeds to say that.
"""

import numpy as np

from rnnlens.errors import InputError

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
CELLS_PER_CHUNK = 1 << 22  # resampled positions held at once (a few arrays of 32 MB)


def describe(resamples=RESAMPLES, level=LEVEL, seeds=1, over="positions"):
    """The interval in words, for a figure: '95% bootstrap intervals (1000 resamples over positions)'."""
    what = f"seeds ({seeds}) and {over}" if seeds > 1 else over
    return f"{100 * level:g}% bootstrap intervals ({resamples} resamples over {what})"


def percentile_interval(samples, level=LEVEL, axis=0):
    """-> (lo, hi): the central `level` share of `samples` along `axis`."""
    if not 0 < level < 1:
        raise InputError(f"interval level {level} must be in (0, 1), e.g. 0.95")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail], axis=axis)
    return lo, hi


def as_seeds(values, name="values"):
    """One array per position, or one row per seed -> (seeds, positions) float64."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.shape[0] < 1:
        raise InputError(f"{name}: expected (positions,) or (seeds, positions) values, got shape {values.shape}")
    return values


def seed_weights(rng, resamples, seeds):
    """(resamples, seeds) weights: how often each seed is drawn in a resample of `seeds` draws, over `seeds`."""
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    counts = np.zeros((resamples, seeds))
    np.add.at(counts, (np.repeat(np.arange(resamples), seeds), draws.ravel()), 1.0)
    return counts / seeds


def grouped_means(groups, quantities, resamples=RESAMPLES, seed=SEED):
    """Bootstrap of per-group means, stratified: each group (e.g. one character) keeps its number of positions
    and is resampled within itself, the same positions for every quantity (so differences stay paired).

    groups: (positions,) ints; quantities: {name: (positions,) or (seeds, positions) values}.
    -> (group ids, {name: (resamples, groups) resampled means}); a quantity with several seeds is their mean in
    every resample, the seeds drawn with replacement."""
    groups = np.asarray(groups)
    values = {name: as_seeds(v, name) for name, v in quantities.items()}
    n = len(groups)
    for name, v in values.items():
        if v.shape[1] != n:
            raise InputError(f"{name} has {v.shape[1]} positions but there are {n} group labels")
    if n == 0:
        raise InputError("no positions to resample")
    order = np.argsort(groups, kind="stable")
    ids, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    # int32/float32 index arithmetic: half the memory traffic of int64, and test splits stay far below 2**31
    start_of = np.repeat(starts, counts).astype(np.int32)
    count_of, last_of = np.repeat(counts, counts).astype(np.float32), np.repeat(counts - 1, counts).astype(np.int32)
    values = {name: v[:, order] for name, v in values.items()}
    rng = np.random.default_rng(seed)
    out = {name: np.empty((resamples, len(ids))) for name in values}
    chunk = max(1, CELLS_PER_CHUNK // n)
    for b0 in range(0, resamples, chunk):
        b = min(chunk, resamples - b0)
        # a uniform position within the position's own group (float32 rounding can reach the count: clipped)
        within = np.minimum((rng.random((b, n), dtype=np.float32) * count_of).astype(np.int32), last_of)
        index = start_of + within
        for name, v in values.items():
            if len(v) == 1:
                picked = v[0][index]
            else:
                weights = seed_weights(rng, b, len(v))
                picked = sum(weights[:, s, None] * v[s][index] for s in range(len(v)))
            out[name][b0:b0 + b] = np.add.reduceat(picked, starts, axis=1) / counts
    return ids, out


def category_counts(labels_by_seed, n_categories, resamples=RESAMPLES, seed=SEED):
    """Bootstrap of the counts of categories 0..n_categories-1 among positions (label -1: counted in none).

    labels_by_seed: one (positions,) label array per seed. Drawing positions with replacement draws the counts
    from a multinomial with the observed shares, so no position is resampled one by one.
    -> (resamples, n_categories) counts, the mean over the drawn seeds."""
    if not len(labels_by_seed):
        raise InputError("no labels to resample")
    shares, sizes = [], []
    for labels in labels_by_seed:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            raise InputError("a seed has no positions to resample")
        if labels.max() >= n_categories or labels.min() < -1:
            raise InputError(f"labels must lie in -1..{n_categories - 1}")
        counts = np.bincount(labels + 1, minlength=n_categories + 1)
        shares.append(counts / counts.sum())
        sizes.append(len(labels))
    shares, sizes = np.array(shares), np.array(sizes)
    rng = np.random.default_rng(seed)
    seeds = len(sizes)
    if seeds == 1:
        draws = rng.multinomial(sizes[0], shares[0], size=resamples)
    else:
        chosen = rng.integers(0, seeds, size=(resamples, seeds))
        draws = rng.multinomial(sizes[chosen], shares[chosen]).mean(axis=1)
    return draws[:, 1:]
