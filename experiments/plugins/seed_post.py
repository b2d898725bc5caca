"""The seed replay: the post "Pytorch 2 Chainrule Autograd" printed tensors and losses; this
report section sets them beside what a seed.yaml run measured, row by row.

Each row quotes a printed value as printed and takes the run's value from the records
(grad_preview, output_preview, final_params) or from the trajectories, whose rows hold the loss
*before* a step's update and the parameters *after* it. A value matches when it rounds to what
the post printed, at the digits the post printed. The section appears in the report of a run
whose config lists this plugin (seed.yaml does), and of no other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.report import Heading, Para, Run, Section, Table, register_section
from harness.report.data import FAILED

HERE = Path(__file__).resolve()

# The backprop loop prints (tensor(1.), tensor(0.9604)) and then every 10th epoch of a loop
# whose epoch e shows the loss at trajectory step e + 1 (its first epoch steps by a zeroed grad):
# ten values, steps 1, 11, ..., 91.
SCALAR_LOSSES = ["1.", "0.9604"] + [
    "0.9604",
    "0.6412",
    "0.4281",
    "0.2858",
    "0.1908",
    "0.1274",
    "0.0850",
    "0.0568",
    "0.0379",
    "0.0253",
]
SCALAR_STEPS = [0, 1] + list(range(1, 92, 10))

# numpy GD, printed at epochs 1, 3, ..., 19 (trajectory steps 0, 2, ..., 18)
NUMPY_W = ["1.200", "1.872", "1.980", "1.997", "1.999", "2.000", "2.000", "2.000", "2.000", "2.000"]
NUMPY_LOSS = [
    "30.00000000",
    "0.76800019",
    "0.01966083",
    "0.00050332",
    "0.00001288",
    "0.00000033",
    "0.00000001",
    "0.00000000",
    "0.00000000",
    "0.00000000",
]
# autograd GD, printed at epochs 1, 11, 21, 31, 41 (trajectory steps 0, 10, 20, 30, 40)
AUTOGRAD_W = ["0.300", "1.665", "1.934", "1.987", "1.997"]
AUTOGRAD_LOSS = ["30.00000000", "1.16278565", "0.04506890", "0.00174685", "0.00006770"]


# -- matching at printed precision ---------------------------------------------------------------


def half_unit(printed: str) -> float:
    """Half a unit in the last printed digit: '0.9604' -> 5e-5, '2.0480e+02' -> 5e-3, '6.' -> 0.5."""
    mantissa, _, exp = printed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0))


def as_printed(value: float, printed: str) -> str:
    """`value` in the post's format for that number."""
    if value is None or not math.isfinite(value):
        return str(value)
    mantissa, _, exp = printed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return f"{value:.{decimals}e}" if exp else f"{value:.{decimals}f}"


def matches(printed: str, value: float | None, rel: float = 0.0, residual: float = 0.0) -> bool:
    if value is None or not math.isfinite(value):
        return False
    # a printed 0.0850 stands for anything that rounds to it; the 1e-9 absorbs float noise at the
    # edge; `rel` is the rounding allowed a value computed on another device (see `rounding`),
    # on the value and, for a mean squared residual r² of terms of size `residual` (w x - y with
    # y up to 8), on the terms: r moves by rel x residual, so r² by 2 sqrt(r²) rel residual
    # (late in a descent r is 0.008 out of w x = 8: there an ulp of the terms is 1e-4 of r)
    allowed = rel * (abs(value) + 2 * math.sqrt(abs(value)) * residual)
    return abs(value - float(printed)) <= half_unit(printed) * (1 + 1e-9) + 1e-15 + allowed


# unit roundoff of each dtype (half an ulp at 1.0)
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
ROUNDINGS = 8  # unit roundoffs: a few ulps, what a different order of the same float32 operations gives


def rounding(r: pd.Series) -> float:
    """The relative difference allowed a value computed elsewhere than on the post's CPU. A GPU
    rounds the same float32 arithmetic differently (fused multiply-adds, another reduction order):
    on an H200 the autograd descent's loss at epoch 11 was 1.16278577 where the post printed
    1.16278565, one float32 ulp apart. On the CPU the run must round to the post exactly."""
    if r.get("device") in (None, "cpu"):
        return 0.0
    return ROUNDINGS * UNIT_ROUNDOFF.get(str(r.get("dtype")), 0.0)


@dataclass
class Row:
    experiment: str
    method: str
    quantity: str
    post: list[str]
    measured: list[float | None] | None  # None: the run has no such cell or step
    note: str = ""
    cell: pd.Series | None = None  # the run's cell the values came from
    residual: float = 0.0  # a loss row's: the size of the terms its residuals subtract (see matches)

    def as_dict(self) -> dict:
        if self.measured is None:
            shown, verdict = self.note or "not in this run", "—"
        else:
            rel = rounding(self.cell) if self.cell is not None else 0.0
            good = [matches(p, v, rel, self.residual) for p, v in zip(self.post, self.measured)]
            exact = all(matches(p, v) for p, v in zip(self.post, self.measured))
            shown = ", ".join(
                ("" if g else "≠") + as_printed(v, p) for v, p, g in zip(self.measured, self.post, good)
            )
            shown += f" ({self.note})" if self.note else ""
            if len(self.measured) == len(self.post) and all(good):
                verdict = (
                    "✓ matches"
                    if exact
                    else f"✓ matches to {self.cell['dtype']} rounding on {self.cell['device']}"
                )
            else:
                verdict = f"✗ differs in {len(good) - sum(good)} of {len(self.post)}"
        return {
            "experiment": self.experiment,
            "method": self.method,
            "quantity": self.quantity,
            "post printed": ", ".join(self.post),
            "this run": shown,
            "match": verdict,
        }


# -- where the run's numbers are -----------------------------------------------------------------


def _cells(run: Run, problem: str, mode: str | None = None, method: str | None = None) -> pd.DataFrame:
    df = run.records
    rows = df[(df["problem"] == problem) & (df["data"] == "post")]
    if mode:
        rows = rows[rows["mode"] == mode]
    if method:
        rows = rows[rows["method"] == method]
    # the post's own method first: it printed what autograd (or numpy) gave
    order = {"autograd": 0, "numpy": 0, "manual": 1}
    return rows.sort_values("method", key=lambda s: s.map(lambda m: (order.get(m, 2), m)))


def _why(r: pd.Series) -> str:
    """Why a cell of the run has no value: its failure, told briefly."""
    if r.get("status") in FAILED:
        return f"cell {r['status']}: {str(r.get('error') or '')[:80]}"
    return ""


def _preview(r: pd.Series, col: str, count: int) -> list[float] | None:
    v = r.get(col)
    if v is None or (isinstance(v, float) and v != v):
        return None
    values = [float(x) for x in list(v)[:count]]
    return values if len(values) == count else None


def _trajectory(run: Run, cell_id: str) -> pd.DataFrame:
    t = run.trajectories
    if t.empty or "cell_id" not in t:
        return t
    return t[t["cell_id"] == cell_id].set_index("step").sort_index()


def _at(traj: pd.DataFrame, steps: list[int], what: str) -> list[float | None] | None:
    if traj.empty or any(s not in traj.index for s in steps):
        return None
    if what == "loss":
        return [float(traj.loc[s, "loss"]) for s in steps]
    return [float(list(traj.loc[s, "params"])[0]) for s in steps]


def _missing(experiment: str, quantity: str, post: list[str], method: str = "") -> Row:
    return Row(experiment, method or "—", quantity, post, None)


# -- the experiments -----------------------------------------------------------------------------


def _chain(run: Run) -> list[Row]:
    exp = "chain: u = mean(3(x+2)²), x = (1, 1, 1)"
    post = ["6.", "6.", "6."]
    cells = _cells(run, "chain")
    rows = [
        Row(exp, r["method"], "x.grad", post, _preview(r, "grad_preview", 3), _why(r), r)
        for _, r in cells.iterrows()
    ]
    return rows or [_missing(exp, "x.grad", post)]


def _vjp(run: Run) -> list[Row]:
    exp = "vjp: y = x·2¹¹, y.backward(v)"
    y, g = ["2252.8000"] * 3, ["2.0480e+02", "2.0480e+03", "2.0480e-01"]
    rows = []
    for _, r in _cells(run, "vjp").iterrows():
        rows.append(Row(exp, r["method"], "y", y, _preview(r, "output_preview", 3), _why(r), r))
        rows.append(
            Row(
                exp, r["method"], "x.grad (v = 0.1, 1, 0.0001)", g, _preview(r, "grad_preview", 3), _why(r), r
            )
        )
    return rows or [_missing(exp, "y", y), _missing(exp, "x.grad", g)]


def _weightsum(run: Run) -> list[Row]:
    exp = "weightsum: (w·3).sum(), 3 epochs, lr 0.1"
    grad, w, out = ["3.", "3.", "3.", "3."], ["0.1000"] * 4, ["4.8000"]
    rows = []
    for _, r in _cells(run, "weightsum", mode="train").iterrows():
        traj = _trajectory(run, r["cell_id"])
        why = _why(r)
        rows.append(
            Row(exp, r["method"], "weights.grad each epoch", grad, _preview(r, "grad_preview", 4), why, r)
        )
        w3 = [float(x) for x in list(traj.loc[2, "params"])[:4]] if 2 in traj.index else None
        rows.append(Row(exp, r["method"], "weights after epoch 3", w, w3, why, r))
        rows.append(Row(exp, r["method"], "model_output at epoch 3", out, _at(traj, [2], "loss"), why, r))
    return rows or [_missing(exp, "weights after epoch 3", w)]


def _scalar(run: Run) -> list[Row]:
    exp = "scalar backprop: (w·x − y)², x=1, y=2, w=1, lr 0.01"
    rows = []
    for _, r in _cells(run, "scalar", mode="train").iterrows():
        traj = _trajectory(run, r["cell_id"])
        why, loop = _why(r), SCALAR_STEPS[2:]
        rows.append(
            Row(
                exp,
                r["method"],
                "loss, first two prints",
                SCALAR_LOSSES[:2],
                _at(traj, [0, 1], "loss"),
                why,
                r,
            )
        )
        rows.append(
            Row(
                exp,
                r["method"],
                "loss, loop epochs 0, 10, …, 90",
                SCALAR_LOSSES[2:],
                _at(traj, loop, "loss"),
                why,
                r,
            )
        )
    return rows or [_missing(exp, "loss", SCALAR_LOSSES)]


def _numpy_gd(run: Run) -> list[Row]:
    exp = "numpy GD, the post's gradient: X = [1,2,3,4], Y = 2X, lr 0.01"
    steps = list(range(0, 20, 2))
    rows = []
    for _, r in _cells(run, "linear1d_post", mode="train", method="numpy").iterrows():
        traj = _trajectory(run, r["cell_id"])
        why = _why(r)
        rows.append(Row(exp, "numpy", "w, epochs 1, 3, …, 19", NUMPY_W, _at(traj, steps, "params"), why, r))
        rows.append(
            Row(
                exp,
                "numpy",
                "loss, epochs 1, 3, …, 19",
                NUMPY_LOSS,
                _at(traj, steps, "loss"),
                why,
                r,
                residual=8.0,
            )
        )
        last = _at(traj, [19], "params")
        rows.append(
            Row(exp, "numpy", "f(5) after training", ["10.000"], [5 * last[0]] if last else None, why, r)
        )
        scale = r.get("scale")
        diagnosis = r.get("diagnosis") or ""
        # the post's own tables show the bug: one step gives w = 1.200 here and 0.300 with autograd
        rows.append(
            Row(
                exp,
                "numpy",
                "gradient ÷ float64 reference (post: w 1.200 vs autograd's 0.300 after one step)",
                ["4.000"],
                [scale] if scale is not None and scale == scale else None,
                cell=r,
                note=(diagnosis.split("?")[0] + "?" if "x the reference" in diagnosis else diagnosis) or why,
            )
        )
    return rows or [_missing(exp, "w", NUMPY_W, "numpy")]


def _autograd_gd(run: Run) -> list[Row]:
    exp = "autograd GD: X = [1,2,3,4], Y = 2X, lr 0.01"
    steps = [0, 10, 20, 30, 40]
    rows = []
    for _, r in _cells(run, "linear1d", mode="train").iterrows():
        traj = _trajectory(run, r["cell_id"])
        why = _why(r)
        rows.append(
            Row(exp, r["method"], "w, epochs 1, 11, …, 41", AUTOGRAD_W, _at(traj, steps, "params"), why, r)
        )
        rows.append(
            Row(
                exp,
                r["method"],
                "loss, epochs 1, 11, …, 41",
                AUTOGRAD_LOSS,
                _at(traj, steps, "loss"),
                why,
                r,
                residual=8.0,
            )
        )
    return rows or [_missing(exp, "w", AUTOGRAD_W, "autograd")]


EXPERIMENTS = (_chain, _vjp, _weightsum, _scalar, _numpy_gd, _autograd_gd)


def replay(run: Run) -> pd.DataFrame:
    """One row per printed quantity and method: the post's value, the run's, and whether they match."""
    return pd.DataFrame([row.as_dict() for exp in EXPERIMENTS for row in exp(run)])


def made_with_this_plugin(run: Run) -> bool:
    """The run's config lists this file (or a copy of it: a run directory read in another checkout)."""
    for listed in map(Path, run.plugins):
        if listed.resolve() == HERE:
            return True
        if listed.name == HERE.name and listed.is_file() and listed.read_bytes() == HERE.read_bytes():
            return True
    return False


@register_section
def seed_replay(run: Run) -> Section | None:
    if not made_with_this_plugin(run):
        return None
    table = replay(run)
    matched = table["match"].str.startswith("✓").sum()
    measured = (table["match"] != "—").sum()
    intro = (
        "The post's printed numbers beside this run's, at the digits the post printed. "
        f"{matched} of {measured} measured rows match ({len(table) - measured} not in this run). "
        "Trajectory rows hold the loss before a step's update and the parameters after it; "
        "a run value marked ≠ is one that does not round to the post's."
    )
    blocks: list = [Para(intro)]
    for experiment, rows in table.groupby("experiment", sort=False):
        blocks += [Heading(experiment, 3), Table(rows.drop(columns="experiment"))]
    differ = measured - matched
    sentence = f"Seed replay: {matched} of {measured} measured rows match the post"
    verb = "differs" if differ == 1 else "differ"
    return Section("Seed replay", blocks, [sentence + (f", **{differ} {verb}**." if differ else ".")])
