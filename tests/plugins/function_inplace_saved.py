"""Two Functions through a hidden layer, where the hidden activations the layer's Function saved
are clamped in place before the loss's Function reads them: the layer's backward then reads a
tensor modified after it was saved, which autograd refuses."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


@register_problem
class MLPInplaceSaved(correct.MLPFunctions):
    name = "fn_inplace_saved"

    def function_loss(self, p, data):
        z = correct.TanhLayer.apply(data["X"], p["W1"], p["b1"])
        z.clamp_(-0.999, 0.999)  # "keep tanh' away from 0", in place on what TanhLayer saved
        return correct.LinearMSE.apply(z, p["W2"], p["b2"], data["y"])
