"""The chunked Function summing its chunks in the input's dtype: right in float32 and float64,
and at a few chunks in any dtype, but at 200 chunks its bfloat16 gradient is off by 5 to 10%
and its float16 loss overflows (65504 is float16's largest number). Beside it, for contrast, the
same chunks summed in float32, which agree."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class Float32Accumulator(correct.ChunkedLinearMSE):
    ROWS = 500

    @staticmethod
    def forward(ctx, X, w, b, y):
        half = X.dtype in (correct.torch.float16, correct.torch.bfloat16)  # float64 sums in float64
        loss, grad_w, grad_b = Float32Accumulator.chunks(
            X, w, b, y, correct.torch.float32 if half else X.dtype
        )
        ctx.save_for_backward(grad_w.to(X.dtype), grad_b.to(X.dtype))
        return loss.to(X.dtype)


class HalfAccumulator(Float32Accumulator):
    @staticmethod
    def forward(ctx, X, w, b, y):
        loss, grad_w, grad_b = HalfAccumulator.chunks(X, w, b, y, X.dtype)  # summed in X's dtype
        ctx.save_for_backward(grad_w, grad_b)
        return loss


@register_problem
class LinearFloat32Accumulator(correct.LinearFunction):
    name = "fn_float32_accumulator"

    def function_loss(self, p, data):
        return Float32Accumulator.apply(data["X"], p["w"], p["b"], data["y"])


@register_problem
class LinearHalfAccumulator(correct.LinearFunction):
    name = "fn_half_accumulator"

    def function_loss(self, p, data):
        return HalfAccumulator.apply(data["X"], p["w"], p["b"], data["y"])
