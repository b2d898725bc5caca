"""Functions with no float64 path, as a Triton kernel has none: one says so (function_dtypes),
one only raises when given float64. Both are correct in the dtypes they run."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class Float32Kernel(correct.LinearMSE):
    @staticmethod
    def forward(ctx, X, w, b, y):
        if X.dtype == correct.torch.float64:
            raise TypeError("kernel compiled for float32, bfloat16 and float16 only")
        return correct.LinearMSE.forward(ctx, X, w, b, y)


@register_problem
class LinearDeclaredNoFloat64(correct.LinearFunction):
    name = "fn_declared_no_float64"
    function_dtypes = ("float32", "bfloat16", "float16")


@register_problem
class LinearRaisesInFloat64(correct.LinearFunction):
    name = "fn_raises_in_float64"

    def function_loss(self, p, data):
        return Float32Kernel.apply(data["X"], p["w"], p["b"], data["y"])
