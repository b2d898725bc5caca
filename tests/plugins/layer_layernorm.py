"""LayerNorm over the last dimension with weight and bias, y = (x - mean) rstd w + b, a correct
Function: rstd = 1 / sqrt(var(x) + eps), the biased variance; half types in float32 inside."""

import torch

from harness import Layer, register_layer

EPS = 1e-5


class LayerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        d = x.shape[-1]
        xf = x.reshape(-1, d).to(torch.promote_types(x.dtype, torch.float32))
        mu = xf.mean(-1, keepdim=True)
        rstd = torch.rsqrt(xf.var(-1, unbiased=False, keepdim=True) + EPS)
        xhat = (xf - mu) * rstd
        ctx.save_for_backward(xhat, w, rstd)
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return (xhat * w.to(xf.dtype) + b.to(xf.dtype)).to(x.dtype).reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        xhat, w, rstd = ctx.saved_tensors
        dy = dy.reshape(xhat.shape).to(xhat.dtype)
        wdy = dy * w.to(xhat.dtype)
        # dx = rstd (w dy - mean(w dy) - xhat mean(w dy xhat))
        dx = rstd * (wdy - wdy.mean(-1, keepdim=True) - xhat * (wdy * xhat).mean(-1, keepdim=True))
        dw = (dy * xhat).sum(0).to(w.dtype) if ctx.needs_input_grad[1] else None
        db = dy.sum(0).to(w.dtype) if ctx.needs_input_grad[2] else None
        return dx.to(ctx.dtype).reshape(ctx.shape) if ctx.needs_input_grad[0] else None, dw, db


@register_layer
class LayerNormLayer(Layer):
    """LayerNorm: x (n, d), weight w and bias b (d,)."""

    name = "layer_layernorm"
    sizes = ("n", "d")
    rows = ("x",)
    reductions = {"y": "d", "x": "d", "w": "n", "b": "n"}

    def make(self, gen):
        x = 3 + 2 * torch.randn(self.n, self.d, generator=gen, device=gen.device)  # a mean to remove
        w = 1 + 0.5 * torch.randn(self.d, generator=gen, device=gen.device)
        b = torch.randn(self.d, generator=gen, device=gen.device)
        return {"x": x, "w": w, "b": b}

    def function(self, x, w, b):
        return LayerNormFunction.apply(x, w, b)

    def reference(self, x, w, b):
        # written out rather than F.layer_norm: the tolerance's condition sees inside each operation
        centred = x - x.mean(-1, keepdim=True)
        return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + EPS) * w + b
