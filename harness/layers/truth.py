"""The float64 truth of a layer's cell, and what its condition allows.

The inputs are made in float32, rounded to the cell's dtype, then upcast: the reference's
autograd in float64 from them is the truth, so what is measured is the error of the computation
alone. grad_output is seeded and random (normal, so neither 1 nor uniform: a backward that reads
one scalar of it, or ones, is wrong), made in float32 and rounded the same way.

Tolerances come from the problems' error model (harness.tolerance), per input: the length of the
sum its gradient takes (Layer.reduction_length: d for RMSNorm's dx, n for its dg) and its
condition. The condition is estimated more simply than the problems': by the running-error
sensitivity of the float64 computation itself. Every input and grad_output, and the result of
every operation of the reference's forward and backward (a dispatch mode), is moved by a
relative rho in random signs, as rounding moves each by up to u; how far the result moves, over
its norm, is the condition of what rounding does to it. It sees the cancellation inside a row
(RMSNorm's dx = rstd (g dy - xhat mean(g dy xhat)), nearly nothing at d = 1; LayerNorm's at
d = 2), though not inside a fused operation (F.layer_norm's own backward). The term spread of
the reductions is taken as 1: a random grad_output gives their terms random signs.

The float64 twin (the method called in float64) is held to float32's tolerance, not to the
problems' 1e-10: a Function that computes in float32 inside whatever it is called in, as
kernels that take half types do, has a right formula; a wrong one errs by far more.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from ..reference import SENSITIVITY_RHO
from ..tolerance import condition, ratio, tolerance
from .base import Layer, Tensors
from .layouts import output_names, outputs_of

GRAD_OUTPUT_WEIGHT = 4.0  # the second grad_output, scaled: exact in every dtype (a power of 2)
# draws of the sensitivity: two where the results hold many numbers; more for a few numbers, whose
# moves are few random signs (two results that cancel are moved alike by chance 1/2 a draw)
SENSITIVITY_DRAWS = (2, 16)
SENSITIVITY_NUMBERS = 4096


@dataclass
class LayerTruth:
    inputs: Tensors  # in the cell's dtype, contiguous, detached
    grad_outputs: list[torch.Tensor]  # in the cell's dtype
    outputs: Tensors  # float64, by name (y, or y0, y1, ...)
    grads: Tensors  # float64, per floating input
    tol: dict[str, float]  # per input and output name, in the cell's dtype
    formula_tol: dict[str, float]  # of the float64 twin: float32's (see above)
    conditions: dict[str, float]

    @property
    def grad_tol(self) -> float:
        """Of all the inputs' gradients at once: the largest of theirs bounds the normwise error."""
        return max(self.tol[k] for k in self.grads)

    @property
    def condition(self) -> float:
        return max(self.conditions[k] for k in self.grads)

    @classmethod
    def of(cls, layer: Layer, made: Tensors, dtype: torch.dtype, gen: torch.Generator) -> LayerTruth:
        inputs = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()) for k, v in made.items()}
        x64 = {k: (v.to(torch.float64) if v.is_floating_point() else v) for k, v in inputs.items()}
        with torch.no_grad():
            shapes = [o.shape for o in outputs_of(layer.reference(**x64))]
        grad_outputs = [torch.randn(s, generator=gen, device=gen.device).to(dtype) for s in shapes]
        g64 = [g.to(torch.float64) for g in grad_outputs]
        outputs, grads = vjp64(layer, x64, g64)
        moved_out, moved_grads = _sensitivity(layer, x64, g64, outputs, grads)
        tol, formula_tol, conditions = {}, {}, {}
        for k, value in {**outputs, **grads}.items():
            length = layer.reduction_length("y" if k in outputs else k)
            c_moved = ratio((moved_out if k in outputs else moved_grads)[k], value.norm().item())
            conditions[k] = condition(dtype, length, c_moved, 1.0)
            tol[k] = tolerance(dtype, length) * conditions[k]
            formula_tol[k] = tolerance(torch.float32, length) * condition(torch.float32, length, c_moved, 1.0)
        return cls(inputs, grad_outputs, outputs, grads, tol, formula_tol, conditions)


def vjp64(layer: Layer, x64: Tensors, g64: list[torch.Tensor]) -> tuple[Tensors, Tensors]:
    """(outputs, gradients of every floating input) of the reference in float64 under g64."""
    leaves = {k: (v.detach().requires_grad_(True) if v.is_floating_point() else v) for k, v in x64.items()}
    out = outputs_of(layer.reference(**leaves))
    keys = [k for k, v in leaves.items() if v.is_floating_point()]
    grads = torch.autograd.grad(out, [leaves[k] for k in keys], g64, allow_unused=True)
    grads = {k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(keys, grads)}
    return dict(zip(output_names(len(out)), (o.detach() for o in out))), grads


class Jitter(TorchDispatchMode):
    """Every operation's floating result moved by a relative SENSITIVITY_RHO in random signs (not
    a view's nor an in-place one's: those alias their input)."""

    def __init__(self, gen: torch.Generator):
        super().__init__()
        self.gen = gen
        self.rng = random.Random(gen.initial_seed())
        self.pool: dict[tuple, torch.Tensor] = {}

    def move(self, t: torch.Tensor) -> torch.Tensor:
        """t (1 + rho e), e random signs: a window at a random offset into a pool of factors
        drawn once (drawing per operation cost 5x the computation at n = 4096, d = 1024); each
        operation's window is another, so two results that cancel are not moved alike."""
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            return t
        key, m = (t.device, t.dtype), t.numel()
        pool = self.pool.get(key)
        if pool is None or pool.numel() < 2 * m:
            signs = torch.randint(
                0, 2, (max(2 * m, 4096),), generator=self.gen, device=t.device, dtype=torch.int8
            )
            pool = self.pool[key] = signs.to(t.dtype).mul_(2 * SENSITIVITY_RHO).add_(1 - SENSITIVITY_RHO)
        start = self.rng.randrange(pool.numel() - m + 1)
        return t * pool[start : start + m].view(t.shape)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        if schema.is_mutable or any(r.alias_info is not None for r in schema.returns):
            return out
        return tree_map(self.move, out)


def _sensitivity(layer, x64, g64, outputs, grads) -> tuple[dict[str, float], dict[str, float]]:
    """Per output and input gradient, |f(inputs (1 + rho e)) - f| / rho, root mean square over
    the draws: what a relative move of every input and grad_output moves them by."""
    jitter = Jitter(torch.Generator(next(iter(grads.values())).device).manual_seed(0))
    moved = jitter.move

    out_sq, grad_sq = dict.fromkeys(outputs, 0.0), dict.fromkeys(grads, 0.0)
    numbers = sum(v.numel() for v in (*outputs.values(), *grads.values()))
    least, most = SENSITIVITY_DRAWS
    draws = min(most, max(least, math.ceil(SENSITIVITY_NUMBERS / max(1, numbers))))
    for _ in range(draws):
        with jitter:
            outs, gs = vjp64(layer, {k: moved(v) for k, v in x64.items()}, [moved(g) for g in g64])
        for k in outputs:
            out_sq[k] += ((outs[k] - outputs[k]).norm().item() / SENSITIVITY_RHO) ** 2
        for k in grads:
            grad_sq[k] += ((gs[k] - grads[k]).norm().item() / SENSITIVITY_RHO) ** 2
    return (
        {k: math.sqrt(v / draws) for k, v in out_sq.items()},
        {k: math.sqrt(v / draws) for k, v in grad_sq.items()},
    )
