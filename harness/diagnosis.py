"""A sentence naming the likely bug when a gradient disagrees with its reference.

Read in this order: a non-finite gradient; a gradient on its reference's line within rounding
(a sign, an integer factor, 1/integer, a ratio of the sizes such as n/(n-1), or another constant);
one parameter or more off by such a factor while the rest agree; a wrong direction, parameter by
parameter, "upstream" only where the problem declares its layers. A formula wrong in float64,
where the cell's own dtype let it through, is said first. A user's Function has two more: a
forward whose loss is wrong (said first, apart from the gradient), and a backward that ignores
its incoming gradient, which is right when backpropagated alone (grad_output 1) and k times too
large under k micro-batches whose losses were scaled by 1/k. A gradient that follows a wrong
weighting (harness.weighting: micro-batches by rows for a loss that is not a mean over rows, by 1/k
where it is a mean over items; every row given one grad_output) is named as that, before any word
on its formula, which is then right.
"""

from __future__ import annotations

import math

from .agreement import Agreement, GradOutputCheck, LossCheck, Part, WeightingFinding

INTEGER_TOL = 1e-3  # a scale within this (relative) of an integer or 1/integer is named as one
RATIO_TOL = 0.05  # ... of a ratio of sizes v: within this share of |v - 1| (and INTEGER_TOL)


def _near(x: float, v: float) -> bool:
    return abs(x - v) <= INTEGER_TOL * v


def _factor_causes(m: int, n: int | None, k: int, batch: int | None = None, items=None) -> list[str]:
    causes = []
    if n is not None and n == m:
        causes.append(f"a sum where a mean over n={n} was meant")
    if batch is not None and batch == m and batch != n:
        causes.append(f"a sum where a mean over the {batch} rows of each micro-batch was meant")
    if items is not None and items == m and items != n:
        causes.append(f"a sum where a mean over its {m} items was meant")
    if k == m and k > 1:
        causes.append(f"k={k} accumulations not zeroed or not scaled by 1/k")
    if m == 2:
        causes.append("a second backward through a retained graph, or a doubled term")
    return causes or [f"a stray factor {m}"]


def _inverse_causes(m: int, n: int | None, k: int) -> list[str]:
    causes = []
    if m == 2:
        causes.append("a missing factor 2 (d/dr r^2 = 2r)")
    if n is not None and n == m:
        causes.append(f"a mean over n={n} taken twice")
    if k == m and k > 1:
        causes.append(f"micro-batches scaled by 1/k={k} where the loss was already a mean")
    return causes or [f"a stray factor 1/{m}"]


def _ratios(sizes: dict[str, int | None]) -> list[tuple[int, int, str]]:
    """(numerator, denominator, cause) of the scales a wrong divisor gives: g / g_ref = a / b
    when b divides where a was meant."""
    known = {name: v for name, v in sizes.items() if v is not None and v >= 2}
    out = []
    items = sizes.get("items")
    if items is not None and known.get("n") and items != known["n"] and items == int(items):
        n, m = known["n"], int(items)
        out.append((m, n, f"a mean over all n={n} rows where the loss is a mean over its {m} items"))
    for name in ("n", "k"):
        v = known.get(name)
        if v is not None and v >= 3:
            out.append((v, v - 1, f"divided by {name}-1 where {name} was meant"))
            out.append((v - 1, v, f"divided by {name} where {name}-1 was meant"))
    for a in ("n", "d", "h", "c"):
        for b in ("n", "d", "h", "c"):
            if a != b and a in known and b in known and known[a] != known[b]:
                out.append((known[a], known[b], f"divided by {b} where {a} was meant"))
    return out


def name_scale(scale: float, sizes: dict[str, int | None], whose: str = "the reference") -> str:
    """'4.000x the reference: a sum where a mean over n=4 was meant?' and its kin."""
    n, k = sizes.get("n"), sizes.get("k") or 1
    m = round(scale)
    if m >= 2 and _near(scale, m):
        causes = _factor_causes(m, n, k, sizes.get("batch"), sizes.get("items"))
        return f"{scale:.3f}x {whose}: {' or '.join(causes)}?"
    if scale > 0:
        inv = round(1 / scale)
        if inv >= 2 and _near(1 / scale, inv):
            return f"{scale:.3f}x {whose}: {' or '.join(_inverse_causes(inv, n, k))}?"
    for a, b, cause in _ratios(sizes):
        v = a / b
        if abs(scale - v) <= min(INTEGER_TOL * v, RATIO_TOL * abs(v - 1)):
            return f"{scale:.3f}x {whose} = {a}/{b}: {cause}?"
    return f"{scale:.3f}x {whose}, direction right: a stray constant factor?"


def _on_line(p: Part | Agreement, sizes, whose: str) -> str:
    """What is wrong with a gradient that lies on its reference's line within rounding."""
    if p.cosine < 0:
        return f"opposite sign ({p.scale:.3f}x {whose}, negated): a flipped sign, ascent for descent?"
    if abs(p.scale - 1) <= p.tol:
        return f"rel_err {p.rel_err:.1e} over the tolerance {p.tol:.1e}: rounding beyond calibration?"
    return name_scale(p.scale, sizes, whose)


def _upstream(bad: list[str], good: list[str], layers) -> bool:
    """Every disagreeing parameter in a layer nearer the input than every agreeing one."""
    depth = {k: i for i, layer in enumerate(layers) for k in layer}
    if not bad or not good or any(k not in depth for k in bad + good):
        return False
    return max(depth[k] for k in bad) < min(depth[k] for k in good)


def _shape(a: Agreement, sizes, layers) -> str:
    if a.aligned:
        return _on_line(a, sizes, "the reference")
    parts = a.per_param
    bad = [k for k, p in parts.items() if not p.agree]
    good = [k for k in parts if k not in bad]
    if not bad:  # off the line overall, yet every parameter within its own tolerance
        return f"rel_err {a.rel_err:.1e} over the tolerance {a.tol:.1e}: rounding beyond calibration?"
    if good and all(parts[k].aligned for k in bad):
        named = "; ".join(f"{k} is {_on_line(parts[k], sizes, 'its reference')}" for k in bad)
        return f"{named}; {', '.join(good)} {'agrees' if len(good) == 1 else 'agree'}"
    text = f"wrong direction (cosine {a.cosine:.4f}): disagrees in {', '.join(bad)} ("
    text += "; ".join(
        f"{k} rel_err {parts[k].rel_err:.1e}, {parts[k].scale:.3f}x, cosine {parts[k].cosine:.4f}"
        for k in bad
    )
    text += ")"
    if good:
        text += f"; agrees in {', '.join(good)}"
        if _upstream(bad, good, layers):
            text += ": the error is upstream of those"
    return text


HALF = {"float16": 65504.0, "bfloat16": 3.39e38}  # the largest finite number of each


def _accumulator(dtype: str | None) -> str:
    """A guess at what rounds too much in a correct formula."""
    if dtype in HALF:
        return f"a long sum accumulated in {dtype} rather than float32?"
    return "a long sum in low precision, or cancellation the tolerance does not model?"


def _padding(sizes) -> bool:
    """Whether the loss is a mean over fewer items than rows: some rows hold none (padding)."""
    items, n = sizes.get("items"), sizes.get("n")
    return items is not None and n is not None and items < n


EMPTY_MEAN = "a mean over a chunk or micro-batch with no items (padding alone: 0/0)"


def _forward(f: LossCheck, sizes, dtype: str | None = None) -> str:
    """What is wrong with the loss a Function's forward returned."""
    if not math.isfinite(f.value):
        why = ""
        if dtype in HALF:
            why = f": overflow past {dtype}'s largest number, {HALF[dtype]:.5g}: {_accumulator(dtype)}"
        elif _padding(sizes):
            why = f": {EMPTY_MEAN}?"
        return f"the forward is wrong: it returned a non-finite loss ({f.value}){why}"
    if f.scale < 0:
        return (
            f"the forward is wrong: its loss has the opposite sign ({f.value:.6g} against {f.reference:.6g})"
        )
    named = name_scale(f.scale, sizes, "the reference loss")
    if not named.endswith("a stray constant factor?"):  # a factor or a ratio of sizes, named
        return f"the forward is wrong: its loss is {named}"
    if f.reference and abs(f.scale - 1) <= 0.5:  # close: a rounding or a small term, not a factor
        return (
            f"the forward's loss is off by rel_err {f.rel_err:.1e} over its tolerance {f.tol:.1e} "
            f"({f.value:.8g} against {f.reference:.8g})"
        )
    named = f"{f.scale:.3f}x the reference loss ({f.value:.6g} against {f.reference:.6g})"
    return f"the forward is wrong: its loss is {named}"


def _grad_output(g: GradOutputCheck) -> str:
    if g.ignored:
        return (
            f"the backward ignores its incoming gradient (grad_output): ({g.weight:g} * loss).backward() "
            "gave the gradient of loss.backward()"
        )
    return (
        f"the backward does not scale by its incoming gradient (grad_output): ({g.weight:g} * loss)"
        f".backward() gave {g.scale:.3f}x {g.weight:g} x the gradient of loss.backward()"
    )


def _held(w: WeightingFinding) -> str:
    return ", ".join(f"{h:g}" for h in w.held or [])


def _weighting(w: WeightingFinding, pattern: str | None) -> str:
    """A split step whose micro-batches were weighted wrongly (harness.weighting): the drive, or a
    user's accumulation loop, not the gradient's formula."""
    pattern = pattern or "this pattern"
    if w.follows is None:
        a, b = w.batch
        if w.declared_items:
            return (
                f"non-finite gradient: the micro-batch of rows {a} to {b} holds items by items(data), yet "
                "its own loss is not finite in float64 either: items(data) does not count what the loss "
                "is a mean over?"
            )
        return (
            f"non-finite gradient under {pattern}: the micro-batch of rows {a} to {b} holds nothing the "
            "loss averages (padding alone?), so its own loss is 0/0, NaN in float64 too: the loss is not a "
            "mean over rows. Say what it is a mean over with items(data) (the valid targets of a token "
            "loss), and a micro-batch without any adds nothing"
        )
    off = f"{w.off:.1e} off the loss's gradient"
    if w.follows == "unweighted":
        return (
            f"the gradient is the unweighted loss's ({w.scale:.3f}x it, direction right), every sample "
            "weight taken as 1: the backward reads one grad_output for every row (its first, or their "
            "mean) where row i's gradient needs its own grad_output[i] (reduction='none')"
        )
    if w.follows == "items":
        return (
            f"weighted by items(data) ({_held(w)} items per micro-batch), the step is {off}: items(data) "
            "does not count what the loss is a mean over"
        )
    if not w.declared_items and w.follows == "rows":
        return (
            f"{pattern} weights its micro-batches by their rows (n_i/N), right only for a loss that is a "
            f"mean over rows, and every gradient following it, autograd's too, is {off}: this loss is "
            "not a mean over rows (a mean over valid targets, or weighted?). Say what it is a mean over "
            "with items(data), and each micro-batch is weighted by its items"
        )
    named = {"1/k": "by 1/k (a mean of micro-batch means)", "rows": "by their rows (n_i/N)"}[w.follows]
    if not w.declared_items:  # a mean over rows, in unequal micro-batches
        return (
            f"micro-batches weighted {named} where they are unequal ({off}): weight each by its rows, n_i/N"
        )
    return (
        f"micro-batches weighted {named} where the loss is a mean over items ({_held(w)} per "
        f"micro-batch; {off}): weight each by its items, items_i / items (num_items_in_batch)"
    )


def _accumulated(a: Agreement, pattern: str | None, k: int) -> str:
    """A gradient wrong because its backward mishandles grad_output, under this pattern."""
    why = _grad_output(a.grad_output)
    name = (pattern or "").partition(":")[0]
    if a.within_tol:  # grad_output was 1 here: right by luck
        return (
            f"{why}; right under {pattern or 'this pattern'} only because grad_output is 1 there: gradient "
            "accumulation (microbatch:k, uneven:k), loss scaling and weighted losses get it wrong"
        )
    if name == "microbatch":
        how = f"each of the {k} micro-batches' losses was scaled by 1/{k} before backward()"
    elif name == "uneven":
        how = f"each of the {k} micro-batches' losses was scaled by n_i/N before backward()"
    else:
        how = "the loss was scaled before backward()"
    return f"{a.scale:.3f}x the reference under {pattern}: {why}, and {how}"


def diagnose(
    a: Agreement,
    n: int | None = None,
    k: int = 1,
    d: int | None = None,
    h: int | None = None,
    c: int | None = None,
    layers: tuple[tuple[str, ...], ...] = (),
    pattern: str | None = None,
    dtype: str | None = None,
    items: float | None = None,
) -> str | None:
    """A sentence naming the likely bug when a gradient disagrees; None when it agrees.

    `layers` groups the parameters by layer, input side first (Problem.layers); `pattern` is the
    cell's (microbatch:4), which a backward that ignores grad_output is wrong under; `dtype` the
    cell's (bfloat16), which a correct formula may round too much in; `items` what the loss is a
    mean over where the problem says (Problem.items), a sum over which is named."""
    if a.agree:
        return None
    sizes = {"n": n, "k": k, "d": d, "h": h, "c": c, "items": items}
    if n is not None and (pattern or "").partition(":")[0] == "microbatch" and k > 1:
        sizes["batch"] = n // k  # the rows of each micro-batch, a sum over which is named
    if a.forward_wrong:
        rest = _gradient(a, sizes, layers, pattern, k, dtype)
        forward = _forward(a.forward, sizes, dtype)
        if rest is not None and a.aligned and _near(a.scale, a.forward.scale) and a.cosine > 0:
            rest = f"the gradient is off by the same factor ({a.scale:.3f}x the reference)"
        return forward + ("; the gradient agrees" if rest is None else f"; and {rest}")
    return _gradient(a, sizes, layers, pattern, k, dtype)


def _gradient(a: Agreement, sizes, layers, pattern, k, dtype=None) -> str | None:
    """What is wrong with the gradient (None when nothing is)."""
    if a.within_tol and not (a.formula_wrong or a.loses_precision or a.grad_output_wrong):
        return None
    if a.weighting is not None:
        return _weighting(a.weighting, pattern)
    if not math.isfinite(a.rel_err) or not math.isfinite(a.scale):
        if _padding(sizes):
            return f"non-finite gradient where the float64 reference is finite: {EMPTY_MEAN}?, or overflow"
        return "non-finite gradient: overflow, or a NaN in the data or the formula"
    if a.scale == 0:
        return (
            "the gradient is zero: underflow (a mean's 1/n below the dtype's smallest normal, flushed "
            "to zero), or a backward that never wrote it"
        )
    if a.grad_output_wrong:
        return _accumulated(a, pattern, k)
    twin = a.twin
    if a.loses_precision:  # a formula computed in a precision coarser than this cell's dtype
        return _lower(a)
    if a.within_tol and twin is not None:  # only float64 shows it: say so first
        return (
            f"the formula is wrong: in float64 rel_err {twin.rel_err:.1e} over {twin.tol:.1e}, "
            f"hidden here by rounding (rel_err {a.rel_err:.1e} within {a.tol:.1e}); "
            f"in float64, {_shape(twin, sizes, layers)}"
        )
    if twin is not None and twin.within_tol and not a.within_tol:  # a right formula, rounded too much
        return (
            f"the float64 twin agrees (rel_err {twin.rel_err:.1e}): the formula is right, its rounding "
            f"in {dtype or 'this dtype'} is not ({_accumulator(dtype)}); {_shape(a, sizes, layers)}"
        )
    text = _shape(a, sizes, layers)
    if a.formula_wrong:
        text += f"; wrong in float64 too (rel_err {twin.rel_err:.1e}): the formula, not rounding"
    elif a.twin_precision is not None and a.twin_precision.level is not None:
        text += f"; and {_lower(a)}"
    if a.right_on_rows:
        text += (
            f"; right on its first {a.right_on_rows} rows alone: the error enters past them (a later "
            "chunk's rows, labels or mask sliced wrongly?)"
        )
    return text


LOWER_HINTS = {  # what computes in a lower precision inside a float64 formula (harness.twin.LOWER)
    "float32": "a `.float()` or a float32 accumulator?",
    "half precision": "a cast to bfloat16 or float16, or a half-precision accumulator?",
}


def _lower(a: Agreement) -> str:
    """A formula whose float64 twin errs by a lower precision's rounding, and loses a move of its
    inputs below float32's resolution (harness.twin)."""
    t, p = a.twin, a.twin_precision
    return (
        f"in float64 it computes in {p.level} somewhere: {LOWER_HINTS[p.level]} (rel_err {t.rel_err:.1e} "
        f"over {t.tol:.1e}, within {p.level}'s rounding {p.tol:.1e}; a move of the inputs below float32's "
        f"resolution is lost: its gradient's response off by {p.response:.2g} of the reference's)"
    )
