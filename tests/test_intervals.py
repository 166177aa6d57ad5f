"""Bootstrap intervals of the comparison figures: they cover what they should, as wide as theory says, paired where
they should be, fixed by their seed, and wider when training seeds disagree."""
import numpy as np
import pytest

from rnnlens.errors import InputError
from rnnlens.intervals import category_counts, describe, grouped_means, percentile_interval, seed_weights


def test_group_mean_intervals_match_the_standard_error_and_are_reproducible():
    rng = np.random.default_rng(0)
    groups = np.repeat([3, 7, 9], [400, 100, 2500])
    values = rng.random(len(groups))  # uniform: sd 1/sqrt(12)
    ids, samples = grouped_means(groups, {"v": values}, resamples=1000, seed=1)
    assert ids.tolist() == [3, 7, 9] and samples["v"].shape == (1000, 3)
    lo, hi = percentile_interval(samples["v"])
    for k, (g, n) in enumerate(((3, 400), (7, 100), (9, 2500))):
        mean = values[groups == g].mean()
        assert lo[k] < mean < hi[k]
        # the width of a 95% interval of a mean: 2 * 1.96 * sd / sqrt(n), within bootstrap noise
        assert hi[k] - lo[k] == pytest.approx(2 * 1.96 * values[groups == g].std() / np.sqrt(n), rel=0.15)
    again = grouped_means(groups, {"v": values}, resamples=1000, seed=1)[1]["v"]
    np.testing.assert_array_equal(samples["v"], again)
    # a group of identical values has no spread: its interval is the value
    ids, samples = grouped_means(np.array([0, 0, 1, 1, 1]), {"v": np.array([0.2, 0.2, 0.1, 0.5, 0.9])}, 200)
    assert np.all(samples["v"][:, 0] == pytest.approx(0.2))


def test_quantities_are_resampled_at_the_same_positions():
    """A - B resampled with A and B paired: B = A + 0.1 everywhere gives a difference with no spread at all."""
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 4, 3000)
    a = rng.random(3000)
    ids, samples = grouped_means(groups, {"a": a, "b": a + 0.1}, resamples=300)
    diff = samples["a"] - samples["b"]
    np.testing.assert_allclose(diff, -0.1, atol=1e-12)
    assert np.ptp(samples["a"], axis=0).min() > 0.01  # while each mean alone does vary


def test_seeds_that_disagree_widen_the_interval_and_their_mean_is_the_model():
    rng = np.random.default_rng(3)
    groups = np.zeros(2000, int)
    base = rng.random(2000)
    agreeing = np.stack([base, base])
    disagreeing = np.stack([np.clip(base - 0.2, 0, 1), np.clip(base + 0.2, 0, 1)])
    _, same = grouped_means(groups, {"v": agreeing}, resamples=500)
    _, apart = grouped_means(groups, {"v": disagreeing}, resamples=500)
    width_same = np.subtract(*percentile_interval(same["v"])[::-1])[0]
    width_apart = np.subtract(*percentile_interval(apart["v"])[::-1])[0]
    assert width_apart > 5 * width_same
    # over the resamples the seeds are drawn with replacement: the mean of their means is their mean
    assert apart["v"].mean() == pytest.approx(disagreeing.mean(), abs=0.01)
    weights = seed_weights(np.random.default_rng(0), 1000, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert set(np.unique(weights * 3)) <= {0.0, 1.0, 2.0, 3.0}


def test_category_counts_resample_positions_and_seeds():
    labels = np.array([-1] * 600 + [0] * 300 + [1] * 100)  # -1: no error
    draws = category_counts([labels], 2, resamples=2000, seed=0)
    assert draws.shape == (2000, 2)
    assert draws.mean(axis=0) == pytest.approx([300, 100], rel=0.02)
    # a count's resampling sd is binomial: sqrt(n p (1 - p))
    assert draws.std(axis=0) == pytest.approx(np.sqrt(1000 * np.array([0.3, 0.1]) * np.array([0.7, 0.9])), rel=0.1)
    other = np.array([-1] * 600 + [0] * 100 + [1] * 300)
    two = category_counts([labels, other], 2, resamples=2000, seed=0)
    assert two.mean(axis=0) == pytest.approx([200, 200], rel=0.03)
    assert two.std(axis=0)[0] > 3 * draws.std(axis=0)[0]  # the seeds' disagreement is in the interval
    with pytest.raises(InputError, match="labels must lie"):
        category_counts([np.array([0, 5])], 2)


def test_interval_wording_and_bad_level():
    assert describe() == "95% bootstrap intervals (1000 resamples over positions)"
    assert describe(seeds=3) == "95% bootstrap intervals (1000 resamples over seeds (3) and positions)"
    with pytest.raises(InputError, match="level"):
        percentile_interval(np.zeros(10), level=95)
