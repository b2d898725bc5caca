"""The line under the cost model (costmodel.py): Theil-Sen over rounds at several sizes, held at
or above zero, its bootstrap over rounds, and where two lines cross a threshold of each other.

Pure numpy on arrays: every function takes a batch of resamples along its leading axes at once.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD = 1.10  # "within 10% of the baseline", as `gradbench crossover` searches for
RESAMPLES = 400  # bootstrap resamples: enough for the 2.5% and 97.5% points to settle to a few %
BATCH = 100  # resamples drawn at once: bounds the pairwise slopes held in memory
LEVEL = 0.95


def theil_sen(xs: list[float], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(fixed, slope) of the rounds `ys[j]` (arrays of shape (..., rounds_j)) measured at x =
    `xs[j]`, over any leading axes at once: the median of the slopes between every two rounds at
    different x, and the median of y - slope x. scipy.stats.theilslopes(method="joint") on one
    series gives the same; this form also takes a batch of bootstrap resamples."""
    slopes = [
        ((ys[k][..., None, :] - ys[j][..., :, None]) / (xs[k] - xs[j])).reshape(*ys[j].shape[:-1], -1)
        for j in range(len(xs))
        for k in range(j + 1, len(xs))
        if xs[k] != xs[j]
    ]
    slope = np.median(np.concatenate(slopes, axis=-1), axis=-1)
    rest = np.concatenate([y - slope[..., None] * x for x, y in zip(xs, ys)], axis=-1)
    return np.median(rest, axis=-1), slope


def nonnegative_line(xs: list[float], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """theil_sen's (fixed, slope), with the fixed cost held at or above zero: where the free
    intercept is below zero, fixed = 0 and slope = the median of y / x over every round (Theil-Sen
    through the origin). Elementwise over the leading axes."""
    fixed, slope = theil_sen(xs, ys)
    through = np.median(np.concatenate([y / x for x, y in zip(xs, ys)], axis=-1), axis=-1)
    held = fixed < 0
    return np.where(held, 0.0, fixed), np.where(held, through, slope)


def bootstrap(xs: list[float], strata: list[np.ndarray]) -> np.ndarray | None:
    """Resampled (fixed, slope) per method: shape (2, methods, RESAMPLES). `strata[j]` holds the
    rounds of every method at xs[j] (methods x rounds); rounds are drawn by column, so the
    methods' rounds stay paired, and each stratum keeps its count. None where a stratum has fewer
    than two rounds. (Drawn here rather than by scipy.stats.bootstrap, whose import alone is a
    tenth of a report's time.)"""
    if min(s.shape[-1] for s in strata) < 2:
        return None
    rng = np.random.default_rng(0)  # a report reads the same every time it is written
    out = []
    for start in range(0, RESAMPLES, BATCH):
        size = min(BATCH, RESAMPLES - start)
        # (methods, resamples, rounds) per stratum
        drawn = [s[:, rng.integers(0, s.shape[-1], size=(size, s.shape[-1]))] for s in strata]
        out.append(np.stack(nonnegative_line(xs, drawn)))
    return np.concatenate(out, axis=-1)


def interval(samples: np.ndarray) -> tuple[float, float]:
    """The central LEVEL of bootstrap values, as values that occurred (an infinite one included)."""
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    tail = (1 - LEVEL) / 2
    lo, hi = np.quantile(samples, [tail, 1 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def crossing_x(fixed_0, slope_0, fixed_m, slope_m, threshold: float = THRESHOLD):
    """x* from which (fixed_m + slope_m x) <= t (fixed_0 + slope_0 x), elementwise: 0 where the
    method is within t of the baseline at every x, inf where it never is (or only below x*)."""
    excess_fixed = np.asarray(fixed_m - threshold * fixed_0, dtype=float)
    excess_slope = np.asarray(slope_m - threshold * slope_0, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = -excess_fixed / excess_slope
    return np.where(excess_fixed <= 0, 0.0, np.where(excess_slope >= 0, math.inf, x))
