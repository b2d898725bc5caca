"""The noise a time verdict must beat, measured from the two runs compared.

Two runs on a shared machine differ by more than the rounds of either show: the rounds of a run
share the machine's state of that moment (another tenant, the clock), so a test on them alone
reads a 15% shift of the whole machine as certain. The verdict is built from what the two runs
measure between them instead:

- A cell's time is a low percentile of its rounds, FAST (`fast_time`): other work on the machine
  only ever adds time, so the fastest rounds are the least disturbed ones (timeit's advice), but
  the one fastest round is an extreme of its rounds, and moves with them: with one core of two
  kept busy by another process, the 10th percentile of 41 rounds (the 5th fastest) caught a
  quarter slower 39 times in 40 pairs where the fastest caught it 31 times, with no unchanged pair
  flagged by either (docs/compare.md). d = ln(new / base).
- The run-wide shift s = median of d over the timed cells: a machine that got slower shifts every
  cell. u = d - s is a cell's change against the run.
- The methods of a family are timed in the same interleaved rounds, at the same moment, so
  v = d - mean(d of the family's other cells) is a cell's change against its family, in which
  the moment cancels. Suspects are left out of their family's reference (a slower `manual` must
  not make the rest of its family look faster), unless no other cell is left: cells whose change
  against the run passes both the threshold and SUSPECT sigma_u (sigma_u = 1.4826 MAD(u), the
  spread of those changes), and cells of a code (below) whose median change against the rest of
  its families passes the threshold (`_changed_codes`).
- The noise floor sigma = 1.4826 MAD of v over the cells that are not suspects and whose
  reference holds none: each family ran at a moment of its own in each run, so the cells are so
  many samples of the run-to-run noise of a cell; the MAD lets the few that did change stand out
  instead of widening it. Never below MIN_SIGMA.

A cell regresses when it is slower than the threshold both against the run and against its
family, and beyond the noise on either of two tests, Benjamini-Hochberg q < ALPHA over what is
tested:
- the cell alone: z = v / sigma against a Student t of TAIL_DF degrees of freedom scaled to the
  same MAD. Unchanged cells on a busy machine stray further than a normal law allows (A/A pairs
  on two shared cores: the 99th percentile of |z| at 2.7 to 3.4 in quiet spells, 4.3 to 7.3
  under load, where a normal law puts 2.6, t(3) 5.2 and t(2) 8.2), so one cell must stray far to
  count alone;
- its code: the cells of one problem and method (every size and pattern) run the same code, so a
  change of the code moves them all: the median v of a code's k >= MIN_CODE_CELLS cells, normal,
  against its standard error sqrt(tau^2 + sigma^2 pi / 2k). sigma^2 pi / 2k is what the cells' own
  noise leaves in a median of k; tau is the code's own wander between two runs, which no number
  of its cells averages away: with one core of two kept busy by another process, an unchanged
  run's `manual` was 10% slower against its family in all four of its cells at once (A/A pairs,
  docs/compare.md). tau^2 = (1.4826 MAD of the codes' medians)^2 less the median of their
  sigma^2 pi / 2k, over the codes of at least two cells that did not change past the threshold
  against their families; with fewer than MIN_SPREAD_CODES such codes tau is not measured, the
  output says so, and the cells are taken as independent (tau = 0: the threshold still guards).
A cell alone in its family is judged the same way by u, against sigma_u. With fewer than
MIN_CELLS timed cells in common the noise cannot be measured: cells are judged on their rounds
(Mann-Whitney U), which cannot tell a shift of the whole machine from a change, and the output
says so.

What a pair can tell: a slow-down of a code is caught 4 times in 5 (POWER) when its true change is
the bar of its test plus z(POWER) standard errors (the test's least detectable change); the least
of those over the codes, and over one cell alone, is what the pair tells. Above BLIND (or the
threshold, if higher) the pair says it cannot tell such a change from noise, whether or not it
flags anything: a gate must not pass silently on runs too noisy to see what it is for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, mannwhitneyu, median_abs_deviation, norm
from scipy.stats import t as student

ALPHA = 0.05  # false-discovery rate of the time verdicts
FAST = 10  # the percentile of a cell's rounds its time is judged by: the 5th fastest of 41
MIN_CELLS = 8  # timed cells to measure a shift and a noise floor from
MIN_SIGMA = 0.02  # ln units: a floor so quiet that a 10% change is 5 sigma
TAIL_DF = 2  # degrees of freedom of the single-cell test's t law
MIN_CODE_CELLS = 3  # cells of a code for its median to stand: one stray cell moves the mean of two
MIN_SAMPLES = 3  # rounds per run, for the rank test
SUSPECT = 3.0  # a cell whose change against the run passes the threshold and SUSPECT sigma_u
BAND = 1.96  # the noise floor is shown as the 95% band of one unchanged cell, exp(±1.96 sigma)
MIN_SPREAD_CODES = 3  # codes of two cells or more to measure how a code wanders between runs
# a pair that cannot catch a change of this ratio (or of the threshold, if higher) POWER of the
# time says so: a quarter slower, what a gate on a busy machine is still asked to catch
BLIND = 1.25
POWER = 0.8

FAMILY, RUN, ROUNDS = "family", "run", "rounds"  # what a cell's change was judged against
BARS = {"alone_bar": "sigma", "alone_bar_run": "sigma_run"}


@dataclass(frozen=True)
class Noise:
    """What the time verdicts were judged against: the run-wide shift and the noise floor."""

    cells: int  # timed cells in common
    shift: float | None = None  # new/base of the whole run (exp s); None when too few cells
    sigma: float | None = None  # of a cell's ln change against its family; None when not measured
    sigma_cells: int = 0  # cells sigma was measured over
    sigma_run: float | None = None  # of a cell's ln change against the run, for cells alone in a family
    # the change (a share) one cell alone must pass to stand out of sigma (and of sigma_run)
    alone_bar: float | None = None
    alone_bar_run: float | None = None
    # how a code's median wanders between two runs beyond its cells' noise (ln units); None when
    # too few codes to measure it (then taken as 0)
    code_spread: float | None = None
    code_spread_codes: int = 0  # codes it was measured over
    # the least slow-down (a share) caught POWER of the time by one cell alone
    alone_told: float | None = None

    @property
    def measured(self) -> bool:
        return self.shift is not None

    @staticmethod
    def band(sigma: float) -> float:
        """The noise floor as a share: an unchanged cell's ratio falls within exp(±BAND sigma)."""
        return math.exp(BAND * sigma) - 1


def least_told(m: pd.DataFrame, noise: Noise) -> float | None:
    """The least slow-down (new/base) two runs catch POWER of the time: the smaller of what one
    cell alone and what the cells of a code together must truly change by (judge's `code_told`
    and `alone_told`); None where the noise was not measured."""
    told = [noise.alone_told] if noise.alone_told is not None else []
    told += list(m["code_told"].dropna()) if "code_told" in m else []
    return 1 + min(told) if noise.measured and told else None


def blind(m: pd.DataFrame, noise: Noise, threshold: float = 1.0) -> str | None:
    """What two runs too noisy to catch a slow-down of BLIND (or of the threshold, if higher)
    must say; None if they can."""
    least, asked = least_told(m, noise), max(BLIND, threshold)
    if least is None or least <= asked:
        return None
    return (
        f"this pair cannot tell a {asked:g}x change from noise: rerun on a quieter machine (it catches "
        f"a slow-down {POWER:.0%} of the time from {least:.2f}x)"
    )


def fast_time(samples, time_min_s: float) -> float:
    """A cell's time as the verdicts judge it: the FAST percentile of its rounds; its fastest round
    where its rounds were not recorded."""
    t = _samples(samples)
    return float(np.percentile(t, FAST)) if t is not None else float(time_min_s)


def _robust_sigma(x: pd.Series) -> float:
    return max(float(median_abs_deviation(x.dropna(), scale="normal")), MIN_SIGMA)


def _others_mean(d: pd.Series, family: pd.Series, keep: pd.Series) -> pd.Series:
    """Per cell, the mean of d over the other cells of its family that `keep` holds; NaN if none."""
    kept = d.where(keep)
    total = kept.groupby(family).transform("sum")
    others = kept.groupby(family).transform("count") - keep.astype(int)
    return ((total - kept.fillna(0.0)) / others).where(others > 0)


# z = x / (1.4826 MAD) in units of a t(TAIL_DF) law with the same MAD
TAIL_SCALE = 1.4826 * student.ppf(0.75, TAIL_DF)


def _tail_p(z: pd.Series) -> pd.Series:
    """One-sided p of z = x / (1.4826 MAD) under a t(TAIL_DF) law with the same MAD."""
    return pd.Series(student.sf(z * TAIL_SCALE, TAIL_DF), index=z.index)


def _tail_z(p: float) -> float:
    """The z = x / (1.4826 MAD) whose one-sided p under that law is p."""
    return float(student.isf(p, TAIL_DF) / TAIL_SCALE)


def _bh(p: pd.Series) -> pd.Series:
    p = p.dropna()
    return pd.Series(false_discovery_control(p.to_numpy(), method="bh") if len(p) else [], index=p.index)


def judge(m: pd.DataFrame, threshold: float) -> tuple[pd.DataFrame, Noise]:
    """Time verdicts of matched cells. `m`: one row per cell with time_s_base/_new (fast_time; NaN
    where a cell has no time), time_samples_s_base/_new, family and code (the problem and method). Adds
    ratio, vs_run, vs_family, change (the ratio the verdict is on), test, z, q (the cell's test),
    code_change, code_cells, code_q (its code's), code_bar and code_told (what its code must pass, and
    what it catches POWER of the time), regression, faster, within_noise."""
    base, new = m["time_s_base"].astype(float), m["time_s_new"].astype(float)
    timed = (base > 0) & (new > 0) & np.isfinite(base) & np.isfinite(new)
    d = np.log(new.where(timed) / base.where(timed))
    m = m.assign(ratio=np.exp(d), vs_run=np.nan, vs_family=np.nan, change=np.nan, test=None, z=np.nan)
    m = m.assign(p=np.nan, q=np.nan, code_change=np.nan, code_cells=0, code_q=np.nan, code_bar=np.nan)
    m = m.assign(code_told=np.nan)
    m = m.assign(regression=False, faster=False, within_noise=False)
    if timed.sum() < MIN_CELLS:
        return _on_rounds(m, timed, threshold), Noise(int(timed.sum()))
    u, v, changed, noise = _views(m, d, timed, math.log(threshold))
    in_family, alone = timed & v.notna(), timed & v.isna()

    # the evidence of each cell: its change against the family, or against the run when alone
    x = v.where(in_family, u.where(alone))
    scale = pd.Series(
        np.select([in_family, alone], [noise.sigma or np.nan, noise.sigma_run or np.nan], np.nan)
    )
    scale.index = m.index
    m["vs_run"], m["vs_family"] = np.exp(u), np.exp(v)
    m["test"] = np.select([in_family, alone], [FAMILY, RUN], None)
    m["z"] = x / scale
    # both views past the threshold: the change is the cell's, not its family's moment or the run's
    m["change"] = np.exp(np.minimum(u, v).where(in_family, u.where(alone)))
    gain = np.exp(np.maximum(u, v).where(in_family, u.where(alone)))
    m["p"] = _tail_p(m["z"]).where(timed)
    m["q"] = _bh(m["p"])
    cell_faster = _bh(1 - m["p"]).reindex(m.index) < ALPHA

    code = m["code"].where(timed)
    k = x.groupby(code).transform("count")
    m["code_change"] = np.exp(x.groupby(code).transform("median"))
    m["code_cells"] = k.fillna(0).astype(int)
    within = scale**2 * math.pi / (2 * k)  # what the cells' own noise leaves in the median of k
    spread, spread_codes = _code_spread(np.log(m["code_change"]), within, code.where(~changed), k)
    noise = replace(noise, code_spread=spread, code_spread_codes=spread_codes)
    code_se = np.sqrt((spread or 0.0) ** 2 + within)
    code_z = np.log(m["code_change"]) / code_se
    first = ~code.duplicated() & code.notna() & (k >= MIN_CODE_CELLS)
    m["code_q"] = code.map(_bh(pd.Series(norm.sf(code_z[first]), index=code[first])))
    code_gain_q = code.map(_bh(pd.Series(norm.cdf(code_z[first]), index=code[first])))

    # what it takes to stand out when a cell, or a code, is the only one that moved (BH's first rank):
    # p = ALPHA / tests, the z of that p, as a share of time
    # and what it takes to be caught POWER of the time: that bar plus z(POWER) standard errors
    cells_tested, codes_tested = int(m["p"].notna().sum()), int(first.sum())
    if codes_tested:
        z_code = norm.isf(ALPHA / codes_tested)
        m["code_bar"] = np.exp(z_code * code_se).where(k >= MIN_CODE_CELLS) - 1
        m["code_told"] = np.exp((z_code + norm.isf(1 - POWER)) * code_se).where(k >= MIN_CODE_CELLS) - 1
    if cells_tested:
        z_alone = _tail_z(ALPHA / cells_tested)
        bars = {k: math.exp(z_alone * getattr(noise, f)) - 1 for k, f in BARS.items() if getattr(noise, f)}
        scales = [s for s in (noise.sigma, noise.sigma_run) if s]
        told = math.exp((z_alone + _tail_z(1 - POWER)) * min(scales)) - 1
        noise = replace(noise, **bars, alone_told=told)

    code_slower = (m["code_q"] < ALPHA) & (m["code_change"] > threshold)
    code_faster = (code_gain_q < ALPHA) & (m["code_change"] < 1 / threshold)
    m["regression"] = timed & (m["change"] > threshold) & ((m["q"] < ALPHA) | code_slower)
    m["faster"] = timed & (gain < 1 / threshold) & (cell_faster | code_faster)
    m["within_noise"] = timed & (m["change"] > threshold) & ~m["regression"]
    return m, noise


def _code_spread(
    median: pd.Series, within: pd.Series, code: pd.Series, k: pd.Series
) -> tuple[float | None, int]:
    """tau, how a code's median (ln) wanders between two runs beyond its cells' noise, and the
    codes it was measured over: (1.4826 MAD of the medians)^2 less the median of what the cells'
    noise leaves in each, over the codes of at least two cells that did not change past the
    threshold (`code` NaN for those: a change is not the wander it is judged against); None below
    MIN_SPREAD_CODES."""
    first = ~code.duplicated() & code.notna() & (k >= 2) & median.notna()
    if first.sum() < MIN_SPREAD_CODES:
        return None, int(first.sum())
    total = float(median_abs_deviation(median[first], scale="normal")) ** 2
    return math.sqrt(max(total - float(within[first].median()), 0.0)), int(first.sum())


def _changed_codes(d: pd.Series, m: pd.DataFrame, timed: pd.Series, lt: float) -> pd.Series:
    """The cells of codes that changed past the threshold against the rest of their families, in
    which the families' moments cancel. A slower code makes the others of its families look faster
    (and a faster one, slower), so the one that moved most is taken out of the references first and
    the rest judged again without it; while MIN_CELLS cells with a reference are left to measure
    the noise from (past that, on a busy machine, codes that only wandered were taken out too, and
    with the noise unmeasured every cell was judged against the run, where a 2x change was lost)."""
    code = m["code"].where(timed)
    out = pd.Series(False, index=m.index)
    ref = _others_mean(d, m["family"], timed)  # each cell's reference: its family's cells not out
    while True:
        median = (d - ref).groupby(code).median().abs()
        median = median.drop(code[out].unique(), errors="ignore").dropna()
        if median.empty or median.max() <= lt:
            return out
        more = out | (code == median.idxmax())
        ref_more = _others_mean(d, m["family"], timed & ~more)
        if (timed & ~more & ref_more.notna()).sum() < MIN_CELLS:
            return out
        out, ref = more, ref_more


def _views(
    m: pd.DataFrame, d: pd.Series, timed: pd.Series, lt: float
) -> tuple[pd.Series, pd.Series, pd.Series, Noise]:
    """u (against the run) and v (against the family; NaN where a cell has none, or where too few
    cells have one to measure its noise), the cells of codes that changed, and the noise they are
    judged against."""
    s = float(d[timed].median())
    u = d - s
    sigma_run = _robust_sigma(u[timed])
    changed = _changed_codes(d, m, timed, lt)
    steady = timed & (u.abs() <= max(lt, SUSPECT * sigma_run)) & ~changed
    ref = _others_mean(d, m["family"], steady)
    clean = timed & ref.notna() & steady
    v = d - ref.fillna(_others_mean(d, m["family"], timed))  # every other cell changed: all of them
    sigma = _robust_sigma(v[clean]) if clean.sum() >= MIN_CELLS else None
    if sigma is None:  # too few cells with a clean family to measure its noise: all against the run
        v = v * np.nan
    alone = timed & v.isna()
    noise = Noise(
        int(timed.sum()),
        math.exp(s),
        sigma,
        int(clean.sum()) if sigma else 0,
        sigma_run if alone.any() else None,
    )
    return u, v.where(timed), changed, noise


def _samples(v) -> np.ndarray | None:
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) >= MIN_SAMPLES:
        t = np.asarray(v, dtype=float)
        return t if np.isfinite(t).all() else None
    return None


def rank_test(new: np.ndarray, base: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; exact where the samples are few and untied (scipy's
    default turns to the normal approximation above 8 samples: 8e-5 where the exact p of 11
    rounds against 11, none overlapping, is 3e-6)."""
    few = len(new) + len(base) <= 60 and len(np.unique(np.concatenate([new, base]))) == len(new) + len(base)
    method = "exact" if few else "asymptotic"
    return float(mannwhitneyu(new, base, alternative="two-sided", method=method).pvalue)


def _on_rounds(m: pd.DataFrame, timed: pd.Series, threshold: float) -> pd.DataFrame:
    """Too few cells to measure the noise between the runs: each cell's rounds, Mann-Whitney U."""
    for i in np.flatnonzero(timed.to_numpy()):
        sb, sn = _samples(m["time_samples_s_base"].iat[i]), _samples(m["time_samples_s_new"].iat[i])
        if sb is not None and sn is not None:
            m.iat[i, m.columns.get_loc("p")] = rank_test(sn, sb)
            m.iat[i, m.columns.get_loc("test")] = ROUNDS
            m.iat[i, m.columns.get_loc("ratio")] = float(np.median(sn) / np.median(sb))
    tested = m["test"] == ROUNDS
    m["change"] = m["ratio"].where(tested)
    m["q"] = _bh(m["p"])
    significant = m["q"] < ALPHA
    m["regression"] = significant & (m["change"] > threshold)
    m["faster"] = significant & (m["change"] < 1 / threshold)
    m["within_noise"] = tested & ~significant & (m["change"] > threshold)
    return m
