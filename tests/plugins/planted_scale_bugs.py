"""Hand-written gradient bugs that are subtle: a small formula error, a factor on one parameter,
a wrong divisor, a 1% scale. Each must be flagged and named."""

from harness import register_problem
from harness.problems.linear import Linear
from harness.problems.mlp import MLP

DECAY = 2e-5


@register_problem
class LinearStrayDecay(Linear):
    """dJ/dw = 2/N X^T r + 2e-5 w: a weight decay the loss does not have (1e-5 relative)."""

    name = "bug_stray_decay"

    def manual_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2 / X.shape[0])
        return {"w": X.T @ g + DECAY * p["w"], "b": g.sum().reshape(1)}


@register_problem
class MLPDoubledOutputWeights(MLP):
    """dJ/dW2 = 2 z^T g: the output layer's weight gradient doubled, the rest right."""

    name = "bug_mlp_w2_doubled"

    def manual_grad(self, p, data):
        grads = super().manual_grad(p, data)
        return {**grads, "W2": 2 * grads["W2"]}


@register_problem
class LinearDividedByNMinusOne(Linear):
    """dJ/dw = 2/(N-1) X^T r: the unbiased-variance habit where the loss is a mean over N."""

    name = "bug_n_minus_one"

    def manual_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2 / (X.shape[0] - 1))
        return {"w": X.T @ g, "b": g.sum().reshape(1)}


@register_problem
class LinearOnePercent(Linear):
    """dJ/dw = 2.02/N X^T r: every entry 1% too large, the direction right."""

    name = "bug_one_percent"

    def manual_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2.02 / X.shape[0])
        return {"w": X.T @ g, "b": g.sum().reshape(1)}
