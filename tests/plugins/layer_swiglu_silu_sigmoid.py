"""SwiGLU whose backward takes silu'(a) as sigmoid(a), forgetting the product rule's second
term: silu'(a) = s(a) (1 + a (1 - s(a))). da, hence dx and dW1, are wrong; dW3 is right."""

import torch

from harness import register_layer
from harness.layers.rmsnorm import accumulator
from harness.layers.swiglu import SwiGLU


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class SwiGLUSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w3):
        a, b = x @ w1, x @ w3
        ctx.save_for_backward(x, w1, w3, a, b)
        return (torch.nn.functional.silu(up(a)) * up(b)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, w1, w3, a, b = ctx.saved_tensors
        s = torch.sigmoid(up(a))
        da = (up(dy) * up(b) * s).to(x.dtype)  # silu'(a) taken as sigmoid(a)
        db = (up(dy) * up(a) * s).to(x.dtype)
        need = ctx.needs_input_grad
        return (
            da @ w1.mT + db @ w3.mT if need[0] else None,
            x.mT @ da if need[1] else None,
            x.mT @ db if need[2] else None,
        )


@register_layer
class SwiGLUSigmoidLayer(SwiGLU):
    name = "layer_swiglu_silu_sigmoid"

    def function(self, x, W1, W3):
        return SwiGLUSigmoid.apply(x, W1, W3)
