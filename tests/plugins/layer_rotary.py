"""Rotary position embedding of x (n, d), d even, a correct Function written as many are: the
wrapper makes the cos and sin tables of the n positions and passes them to the Function as
tensors of its own, whose backward returns gradients for them too (autograd drops them: they
need none, and no input of the layer's is frozen by it). Rows are positions, not independent
samples: the layer does not fold them (rows = ())."""

import torch

from harness import Layer, register_layer

BASE = 10000.0


def tables(n: int, d: int, device, dtype):
    inv = BASE ** (-torch.arange(0, d, 2, device=device, dtype=torch.float64) / d)
    angles = torch.arange(n, device=device, dtype=torch.float64)[:, None] * inv[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x, cos, sin):
    # pairs (x1, x2) of the last dimension turned by each position's angles
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class RotaryFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, dy):
        cos, sin = ctx.saved_tensors
        # a rotation's transpose is the rotation by the opposite angles
        dx = rotate(dy, cos, -sin) if ctx.needs_input_grad[0] else None
        return dx, torch.zeros_like(cos), torch.zeros_like(sin)


@register_layer
class RotaryLayer(Layer):
    """Rotary position embedding: x (n, d), d even."""

    name = "layer_rotary"
    sizes = ("n", "d")
    rows = ()
    reductions = {"y": "d", "x": "d"}

    def make(self, gen):
        return {"x": torch.randn(self.n, 2 * (self.d // 2) or 2, generator=gen, device=gen.device)}

    def function(self, x):
        cos, sin = tables(x.shape[0], x.shape[-1], x.device, x.dtype)
        return RotaryFunction.apply(x, cos, sin)

    def reference(self, x):
        cos, sin = tables(x.shape[0], x.shape[-1], x.device, x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)[..., _interleave(x.shape[-1])]


def _interleave(d: int) -> torch.Tensor:
    """Indices taking [a0 a1 ... b0 b1 ...] to [a0 b0 a1 b1 ...]."""
    half = d // 2
    return torch.stack([torch.arange(half), torch.arange(half) + half], dim=-1).flatten()
