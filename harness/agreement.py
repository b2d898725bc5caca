"""Is a gradient right? Its normwise errors against the float64 reference (harness.reference,
its tolerances by harness.tolerance), per parameter and over all of them, and the verdict; and
the same of the loss a user's Function returns. The sentence naming a likely
bug is `harness.diagnosis`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .problems.base import Tensors

if TYPE_CHECKING:
    from .twin import Precision


@dataclass
class Part:
    """The errors of one parameter's gradient against its reference."""

    rel_err: float
    scale: float  # |g| / |expected|
    cosine: float  # <g, expected> / (|g| |expected|): -1 is a sign error
    sine: float  # |g off the line of expected| / |g|: 0 for a pure scale
    tol: float

    @property
    def agree(self) -> bool:
        return self.rel_err <= self.tol  # NaN compares False: a NaN gradient never agrees

    @property
    def aligned(self) -> bool:
        """On the reference's line within rounding: what is wrong, if anything, is a scale."""
        return self.sine <= self.tol


@dataclass
class LossCheck:
    """The loss a user's Function returned, against the reference loss (float64 autograd of the
    plain `loss`, on the same inputs)."""

    value: float
    reference: float
    tol: float  # on rel_err: Reference.loss_tolerance

    @property
    def rel_err(self) -> float:
        return abs(self.value - self.reference) / max(abs(self.reference), torch.finfo(torch.float64).tiny)

    @property
    def scale(self) -> float:
        return self.value / self.reference if self.reference else math.inf

    @property
    def agree(self) -> bool:
        return self.rel_err <= self.tol  # NaN compares False


@dataclass
class GradOutputCheck:
    """Whether a backward scales by its incoming gradient: (w * loss).backward() against w times
    loss.backward()'s gradient, of the method's own. `scale` is 1 when it does, 1/w when the
    backward ignores grad_output (right under `full` only because grad_output is 1 there)."""

    weight: float
    scale: float  # |g_w| / (w |g_1|)
    rel_err: float  # |g_w - w g_1| / |w g_1|
    tol: float

    @property
    def agree(self) -> bool:
        return self.rel_err <= self.tol

    @property
    def ignored(self) -> bool:
        """The gradient of (w * loss) is that of loss: grad_output never reached the gradient."""
        return abs(self.scale * self.weight - 1) <= self.tol


@dataclass
class WeightingFinding:
    """A gradient that follows a wrong weighting (harness.weighting): of a split step's micro-batches
    (`follows` "rows", "1/k", or "items" where items(data) miscounts), `off` (rel_err) from the
    loss's gradient; of the samples ("unweighted": the loss with every sample weight 1, which a
    backward reading one grad_output for every row gives); or, with `follows` None, a micro-batch
    (rows `batch`) whose own float64 gradient is not finite (a mean over nothing)."""

    follows: str | None
    off: float
    declared_items: bool  # whether the problem says what its loss is a mean over (Problem.items)
    batch: tuple[int, int] | None = None
    held: list[float] | None = None  # items of each micro-batch of the pattern, empty ones too
    scale: float | None = None  # |g| over the weighting's gradient ("unweighted")


@dataclass
class Agreement:
    """All parameters at once, each parameter, the same method's float64 twin, and for a user's
    Function the loss its forward returns and how its backward takes grad_output."""

    rel_err: float
    max_abs_err: float
    scale: float  # |g| / |expected|
    cosine: float  # <g, expected> / (|g| |expected|): -1 is a sign error
    tol: float
    per_param: dict[str, Part] = field(default_factory=dict)
    twin: Agreement | None = None  # the method run in float64: its formula, without rounding
    diagnosis: str | None = None
    sine: float = math.nan  # |g off the line of expected| / |g|; unknown: from the cosine
    twin_skipped: str | None = None  # why the float64 twin could not run (a Function without float64)
    forward: LossCheck | None = None
    grad_output: GradOutputCheck | None = None
    weighting: WeightingFinding | None = None  # a split step's micro-batches weighted wrongly
    right_on_rows: int | None = None  # the method agrees in float64 on this many first rows alone
    # where a twin that disagrees errs (harness.twin): a formula, or a lower precision inside it
    twin_precision: Precision | None = None
    # the twin computes in a precision coarser than this cell's dtype: precision this cell loses
    loses_precision: bool = False

    def __post_init__(self):
        if math.isnan(self.sine):
            self.sine = math.sqrt(max(0.0, 1 - self.cosine**2))

    @property
    def aligned(self) -> bool:
        return self.sine <= self.tol

    @property
    def within_tol(self) -> bool:
        return self.rel_err <= self.tol

    @property
    def formula_wrong(self) -> bool:
        """The twin disagrees, and not by a lower precision's rounding."""
        if self.twin is None or self.twin.within_tol:
            return False
        return self.twin_precision is None or self.twin_precision.level is None

    @property
    def forward_wrong(self) -> bool:
        return self.forward is not None and not self.forward.agree

    @property
    def grad_output_wrong(self) -> bool:
        return self.grad_output is not None and not self.grad_output.agree

    @property
    def agree(self) -> bool:
        """Within this dtype's tolerance, the formula right in float64 where it was run (and not
        computed in a precision coarser than this dtype), and for a Function its forward's loss
        right and its backward scaled by grad_output."""
        wrong = self.formula_wrong or self.loses_precision or self.forward_wrong or self.grad_output_wrong
        return self.within_tol and not wrong


def _flat(g: Tensors, keys) -> torch.Tensor:
    return torch.cat([g[k].detach().to("cpu", torch.float64).reshape(-1) for k in keys])


def _errors(g: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float, float]:
    """(rel_err, scale, cosine, sine) of g against ref."""
    tiny = torch.finfo(torch.float64).tiny
    ref_norm, g_norm = ref.norm().item(), g.norm().item()
    along = (g @ ref).item() / max(ref_norm, tiny)
    off = (g - along * ref / max(ref_norm, tiny)).norm().item()
    return (
        ((g - ref).norm() / max(ref_norm, tiny)).item(),
        g_norm / max(ref_norm, tiny),
        along / max(g_norm, tiny),
        off / max(g_norm, tiny),
    )


def compare(
    grads: Tensors, reference: Tensors, multiplier: float, tol: float, param_tol: dict | None = None
) -> Agreement:
    """Errors of `grads` against multiplier x `reference`, over all parameters at once and per
    parameter (each against `param_tol[k]`, default `tol`)."""
    keys = list(reference)
    missing = [k for k in keys if k not in grads]
    if missing:
        raise ValueError(f"the gradient has no entry for {', '.join(missing)}")
    for k in keys:
        if tuple(grads[k].shape) != tuple(reference[k].shape):
            raise ValueError(
                f"gradient of {k} has shape {tuple(grads[k].shape)}, "
                f"the parameter {tuple(reference[k].shape)}"
            )
    g, ref = _flat(grads, keys), multiplier * _flat(reference, keys)
    param_tol = param_tol or {}
    per_param = {
        k: Part(*_errors(_flat(grads, [k]), multiplier * _flat(reference, [k])), tol=param_tol.get(k, tol))
        for k in keys
    }
    rel_err, scale, cosine, sine = _errors(g, ref)
    return Agreement(
        rel_err=rel_err,
        scale=scale,
        cosine=cosine,
        sine=sine,
        tol=tol,
        max_abs_err=(g - ref).abs().max().item() if g.numel() else 0.0,
        per_param=per_param,
    )


def check_grad_output(scaled: Tensors, plain: Tensors, weight: float, tol: float) -> GradOutputCheck:
    """`scaled`, the gradient of (weight * loss), against weight x `plain`, that of loss."""
    keys = list(plain)
    g, expected = _flat(scaled, keys), weight * _flat(plain, keys)
    rel_err, scale, _, _ = _errors(g, expected)
    return GradOutputCheck(weight=weight, scale=scale, rel_err=rel_err, tol=tol)
