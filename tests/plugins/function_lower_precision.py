"""Functions whose float64 twin errs by float32's rounding, and one whose formula is off by a
relative 1e-5: the twin must tell them apart.

- `.float()` on the inputs, meant to upcast bfloat16 (where it makes the sums more accurate),
  downcasts float64: right in float32 (a no-op) and bfloat16, float32's rounding in float64.
- the chunks summed in a float32 accumulator whatever the inputs' dtype (the correct chunked
  Function keeps float64 sums in float64).
- a weight-decay term left in the gradient, 1e-5 of its size: a formula wrong by about float32's
  rounding of a sum of 4096 terms.
"""

import sys
from pathlib import Path

import torch

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]

DECAY = 1e-5  # the stray term's size, relative to the gradient


class UpcastLinearMSE(torch.autograd.Function):
    """mean((X w + b - y)^2) with its residual made in float32 and the gradient cast back."""

    @staticmethod
    def forward(ctx, X, w, b, y):
        r = X.float() @ w.float() + b.float() - y.float()
        ctx.save_for_backward(X, r)
        return (r * r).mean().to(X.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        X, r = ctx.saved_tensors
        g = (r * (2 / X.shape[0])).to(X.dtype) * grad_output
        return None, X.T @ g, g.sum().reshape(1), None


class Float32ChunkedLinearMSE(correct.ChunkedLinearMSE):
    """The chunked Function with its chunks summed in float32 in every dtype."""

    @staticmethod
    def forward(ctx, X, w, b, y):
        loss, grad_w, grad_b = Float32ChunkedLinearMSE.chunks(X, w, b, y, torch.float32)
        ctx.save_for_backward(grad_w.to(X.dtype), grad_b.to(X.dtype))
        return loss.to(X.dtype)


class DecayedLinearMSE(correct.LinearMSE):
    """The plain Function with DECAY |dJ/dw| w / |w| added to dJ/dw."""

    @staticmethod
    def backward(ctx, grad_output):
        grad_X, grad_w, grad_b, _ = correct.LinearMSE.backward(ctx, grad_output)
        _, w, _ = ctx.saved_tensors
        return grad_X, grad_w + DECAY * grad_w.norm() * w / w.norm(), grad_b, None


@register_problem
class LinearUpcast(correct.LinearFunction):
    name = "fn_upcast"

    def function_loss(self, p, data):
        return UpcastLinearMSE.apply(data["X"], p["w"], p["b"], data["y"])


@register_problem
class LinearFloat32Chunks(correct.LinearFunction):
    name = "fn_float32_chunks"

    def function_loss(self, p, data):
        return Float32ChunkedLinearMSE.apply(data["X"], p["w"], p["b"], data["y"])


@register_problem
class LinearDecayed(correct.LinearFunction):
    name = "fn_decayed"

    def function_loss(self, p, data):
        return DecayedLinearMSE.apply(data["X"], p["w"], p["b"], data["y"])
