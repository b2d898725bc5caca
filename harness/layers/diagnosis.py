"""A sentence naming what is wrong with a layer's method, input by input:

    disagrees in x (1.300x, cosine 0.9700); agrees in g

in the words of harness.diagnosis (an integer factor named with `name_scale`). Read in this
order: the forward's value; a backward that ignores grad_output (or does not scale by it); the
gradients, each input named; a formula wrong in float64 (or right there, rounded too much here);
a layout that breaks it. A method that agrees but computes a gradient for an input that needs
none gets a note instead (`wasted`): autograd drops that gradient, the result is right.
"""

from __future__ import annotations

import math

from ..agreement import Agreement, Part
from ..diagnosis import HALF, _accumulator, name_scale
from .layouts import WORDS
from .verdict import LayerVerdict, _all_agree

FLOAT32_ROUNDING = 1e-5  # a float64 result off by less than this: float32's rounding, not a formula


def _part(p: Part, sizes: dict, dtype: str | None = None) -> str:
    """What is wrong with one input's gradient (one output), in a few words."""
    if not math.isfinite(p.rel_err) or not math.isfinite(p.scale):
        return "non-finite"
    if p.scale == 0:
        return "zero: never written?"
    if dtype == "float64" and p.rel_err < FLOAT32_ROUNDING:
        return f"rel_err {p.rel_err:.1e} over {p.tol:.1e}: computed in float32 inside a float64 call?"
    if p.aligned and p.cosine < 0:
        return f"{p.scale:.3f}x its reference, negated: a flipped sign?"
    if p.aligned and abs(p.scale - 1) > p.tol:
        return name_scale(p.scale, sizes, "its reference")
    if p.aligned:
        return f"rel_err {p.rel_err:.1e} over {p.tol:.1e}: rounding beyond calibration?"
    return f"{p.scale:.3f}x, cosine {p.cosine:.4f}, rel_err {p.rel_err:.1e} over {p.tol:.1e}"


def _bad(a: Agreement | None) -> set[str]:
    return set() if a is None else {k for k, p in a.per_param.items() if not p.agree}


def _errs(a: Agreement) -> str:
    """'rel_err of x 1.8e-01, of W1 2.2e-01': the inputs that disagree."""
    return "rel_err " + ", ".join(
        f"of {k} {a.per_param[k].rel_err:.1e}" for k in sorted(_bad(a)) or a.per_param
    )


def inputs_words(a: Agreement, sizes: dict, dtype: str | None = None) -> str:
    """'disagrees in x (1.300x, cosine 0.9700); agrees in g'."""
    bad = [k for k, p in a.per_param.items() if not p.agree]
    good = [k for k in a.per_param if k not in bad]
    if not bad:
        return f"rel_err {a.rel_err:.1e} over {a.tol:.1e} over all at once: rounding beyond calibration?"
    text = "disagrees in " + ", ".join(f"{k} ({_part(a.per_param[k], sizes, dtype)})" for k in bad)
    return text + (f"; agrees in {', '.join(good)}" if good else "")


def wasted(v: LayerVerdict) -> str | None:
    """The note of gradients computed for inputs that need none; None if there were none."""
    if not v.stray:
        return None
    where = "; ".join(f"{k} by {', '.join(fns)}" for k, fns in v.stray.items())
    return (
        f"wasted work: a gradient computed for an input that needs none (requires_grad=False): {where}; "
        "autograd drops it, so the result is right, but skipping it saves its cost (ctx.needs_input_grad)"
    )


def diagnose(v: LayerVerdict, sizes: dict, dtype: str | None = None) -> str | None:
    """None when the method agrees everywhere; the `wasted` note alone when it agrees but computes
    a gradient no input needs."""
    if v.agree:
        return wasted(v)
    said = []
    if not _all_agree(v.output):
        said.append(f"the forward is wrong: {inputs_words(v.output, sizes, dtype)}")
    g = v.grad_output
    finite = math.isfinite(v.grads.rel_err)
    if not finite:
        past = f"past {dtype}'s largest number, {HALF[dtype]:.5g}, " if dtype in HALF else ""
        said.append(f"non-finite gradient: overflow {past}or a NaN in the formula")
    elif not g.agree:
        if g.ignored:
            said.append(
                f"the backward ignores grad_output: {g.weight:g} x grad_output gave the same gradient "
                "(ones where grad_output was meant?)"
            )
        else:
            said.append(
                f"the backward is not linear in grad_output: {g.weight:g} x grad_output gave "
                f"{g.scale:.3f}x {g.weight:g} x the gradient"
            )
    twin = v.twin
    if not _all_agree(v.grads):
        text = inputs_words(v.grads, sizes, dtype)
        if v.formula_wrong:
            text += f"; wrong in float64 too ({_errs(twin)}): the formula, not rounding"
        elif twin is not None and not finite:
            text = f"the float64 twin agrees (rel_err {twin.rel_err:.1e}): the formula is right; {text}"
        elif twin is not None:
            text = (
                f"the float64 twin agrees (rel_err {twin.rel_err:.1e}): the formula is right, its rounding "
                f"in {dtype or 'this dtype'} is not ({_accumulator(dtype)}); {text}"
            )
        said.append(text)
    elif v.formula_wrong:
        said.append(
            f"the formula is wrong: in float64 it {inputs_words(twin, sizes)}, hidden here by rounding "
            f"(rel_err {v.grads.rel_err:.1e} within {v.grads.tol:.1e})"
        )
    for k in v.missing:
        said.append(f"no gradient for {k}, which needs one (the backward returned None for it)")
    said_bad = _bad(v.output) | _bad(v.grads)
    for layout, a in v.layouts.items():
        if _bad(a) <= said_bad and _bad(a):  # the same inputs wrong as in the contiguous run: said
            continue
        if layout.startswith("no-grad:"):
            frozen = layout.partition(":")[2]
            said.append(f"with {frozen} not requiring a gradient, it {inputs_words(a, sizes, dtype)}")
        else:
            said.append(f"with {WORDS.get(layout, layout)}, it {inputs_words(a, sizes, dtype)}")
    if v.stray:
        said.append(wasted(v))
    return "; ".join(said)
