"""Is a layer's method right? Its gradients, input by input, against the float64 truth; the value
its forward returns; its linearity in grad_output; its float64 twin; the same in every layout.
A gradient returned for an input that needs none is noted, not held against it: autograd drops it
(Function.backward may return one, the documentation says None "can" be passed), so the result is
right and only the work computing it is wasted. The sentence naming a likely bug is diagnosis.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..agreement import Agreement, GradOutputCheck, check_grad_output, compare
from ..record import preview
from .layouts import LAYOUTS, Run, fold_of, output_names, run
from .truth import GRAD_OUTPUT_WEIGHT, LayerTruth


@dataclass
class LayerVerdict:
    grads: Agreement  # every floating input, and each (per_param)
    output: Agreement  # the forward's outputs
    grad_output: GradOutputCheck  # the gradient under GRAD_OUTPUT_WEIGHT x grad_output
    twin: Agreement | None = None  # the method in float64 against the truth: its formula
    twin_skipped: str | None = None
    layouts: dict[str, Agreement] = field(default_factory=dict)  # the other layouts that disagree
    stray: dict[str, list[str]] = field(default_factory=dict)  # input -> Functions that returned its gradient
    missing: list[str] = field(default_factory=list)  # inputs that got no gradient at all
    # an exception in another layout (the contiguous run's own propagate): the first one
    raised: Exception | None = None
    preview: list[float] = field(default_factory=list)  # the first values of the gradients

    @property
    def formula_wrong(self) -> bool:
        return self.twin is not None and not _all_agree(self.twin)

    @property
    def agree(self) -> bool:
        return (
            _all_agree(self.grads)
            and _all_agree(self.output)
            and self.grad_output.agree
            and not self.formula_wrong
            and not self.layouts
            and not self.missing
        )


def _all_agree(a: Agreement) -> bool:
    """Every input (every output) within its own tolerance, and all at once."""
    return a.within_tol and all(p.agree for p in a.per_param.values())


def _grads(r: Run, truth: LayerTruth, missing: list[str] | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for k, ref in truth.grads.items():
        g = r.grads.get(k)
        if g is None:
            if missing is not None and bool(ref.any()):  # an input the outputs do not depend on may get None
                missing.append(k)
            g = torch.zeros_like(ref)
        out[k] = g
    return out


def judge_grads(r: Run, truth: LayerTruth, tol: dict[str, float], keys=None) -> Agreement:
    keys = list(truth.grads) if keys is None else keys
    grads = {k: v for k, v in _grads(r, truth).items() if k in keys}
    expected = {k: truth.grads[k] for k in keys}
    return compare(grads, expected, 1.0, max(tol[k] for k in keys), {k: tol[k] for k in keys})


def judge_outputs(r: Run, truth: LayerTruth, tol: dict[str, float]) -> Agreement:
    names = output_names(len(r.outputs))
    if names != list(truth.outputs):
        raise ValueError(f"the forward returned {len(r.outputs)} outputs, the reference {len(truth.outputs)}")
    got = dict(zip(names, r.outputs))
    return compare(got, truth.outputs, 1.0, max(tol[k] for k in names), {k: tol[k] for k in names})


def judge_all(r: Run, truth: LayerTruth) -> Agreement:
    """The outputs and the gradients at once (a layout may break either)."""
    names = output_names(len(r.outputs))
    got = {**dict(zip(names, r.outputs)), **_grads(r, truth)}
    expected = {**truth.outputs, **truth.grads}
    if list(got) != list(expected):
        raise ValueError(f"the forward returned {len(r.outputs)} outputs, the reference {len(truth.outputs)}")
    return compare(got, expected, 1.0, max(truth.tol[k] for k in got), {k: truth.tol[k] for k in got})


def judge(
    fn: Callable,
    truth: LayerTruth,
    rows: tuple[str, ...],
    twin_fn: Callable | None,
    twin_skipped: str | None,
    layouts: tuple[str, ...] = LAYOUTS,
) -> LayerVerdict:
    """fn against the truth in every layout; exceptions raise, naming the Function and layout."""
    base = run(fn, truth.inputs, truth.grad_outputs, rows=rows)
    missing: list[str] = []
    _grads(base, truth, missing)
    grads = judge_grads(base, truth, truth.tol)
    scaled = run(fn, truth.inputs, [g * GRAD_OUTPUT_WEIGHT for g in truth.grad_outputs], rows=rows)
    linear = check_grad_output(_grads(scaled, truth), _grads(base, truth), GRAD_OUTPUT_WEIGHT, truth.grad_tol)
    verdict = LayerVerdict(grads, judge_outputs(base, truth, truth.tol), linear, missing=missing)
    verdict.preview = preview({k: g for k, g in base.grads.items() if g is not None})
    if twin_fn is not None:
        x64 = {k: (v.to(torch.float64) if v.is_floating_point() else v) for k, v in truth.inputs.items()}
        twin = run(twin_fn, x64, [g.to(torch.float64) for g in truth.grad_outputs], rows=rows)
        verdict.twin = judge_grads(twin, truth, truth.formula_tol)
    else:
        verdict.twin_skipped = twin_skipped
    n = next((truth.inputs[k].shape[0] for k in rows if k in truth.inputs), None)
    for layout in layouts:
        if layout == "no-grad":
            _no_grad(fn, truth, rows, verdict, base)
            continue
        if "folded" in layout and (n is None or fold_of(n) is None):
            continue  # no rows to fold, or n is 1 or prime
        try:
            r = run(fn, truth.inputs, truth.grad_outputs, layout=layout, rows=rows)
        except Exception as exc:  # named with its layout by `run`
            verdict.raised = verdict.raised or exc
            continue
        a = judge_all(r, truth)
        if not _all_agree(a):
            verdict.layouts[layout] = a
    return verdict


def _no_grad(fn, truth: LayerTruth, rows, verdict: LayerVerdict, base: Run) -> None:
    """Each floating input in turn not requiring a gradient: it gets None without error, the
    rest still agree, and no Function returns a gradient for it (one it returned in the base run
    too went to a constant of the code's own, not to this input)."""
    if len(truth.grads) < 2:
        return
    for k in truth.grads:
        try:
            r = run(fn, truth.inputs, truth.grad_outputs, layout=f"no-grad:{k}", rows=rows, frozen=k)
        except Exception as exc:
            verdict.raised = verdict.raised or exc
            continue
        new = sorted({where for where, i in set(r.stray) - set(base.stray)})
        if new:
            verdict.stray[k] = new
        rest = [j for j in truth.grads if j != k]
        a = judge_grads(r, truth, truth.tol, rest)
        if not _all_agree(a):
            verdict.layouts[f"no-grad:{k}"] = a
