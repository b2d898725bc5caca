"""Hand-written gradient bugs, planted on purpose: each must be flagged with its diagnosis.

Written as a user would write plugins: problems, a method and patterns registered by decorator.
"""

from harness import Pattern, register_method, register_pattern, register_problem
from harness.methods import Autograd
from harness.problems.linear import Linear
from harness.problems.mlp import MLP


@register_problem
class LinearSumForMean(Linear):
    """dJ/dw = 2 X^T r: the 1/N of the mean forgotten (the seed post's bug)."""

    name = "bug_sum_for_mean"

    def manual_grad(self, p, data):
        X = data["X"]
        r = 2 * (X @ p["w"] + p["b"] - data["y"])
        return {"w": X.T @ r, "b": r.sum().reshape(1)}


@register_problem
class LinearMissingTwo(Linear):
    """dJ/dw = 1/N X^T r: d/dr r^2 = r, the 2 lost."""

    name = "bug_missing_two"

    def manual_grad(self, p, data):
        X = data["X"]
        r = (X @ p["w"] + p["b"] - data["y"]) / X.shape[0]
        return {"w": X.T @ r, "b": r.sum().reshape(1)}


@register_problem
class LinearWrongSign(Linear):
    """dJ/dw = 2/N X^T (y - Xw - b): the residual the wrong way round."""

    name = "bug_wrong_sign"

    def manual_grad(self, p, data):
        X = data["X"]
        r = (data["y"] - X @ p["w"] - p["b"]) * (2 / X.shape[0])
        return {"w": X.T @ r, "b": r.sum().reshape(1)}


@register_problem
class MLPDerivativeAtOutput(MLP):
    """tanh' taken at the output z = tanh(a) instead of at the pre-activation a."""

    name = "bug_mlp_activation"

    def manual_grad(self, p, data):
        X = data["X"]
        z = (X @ p["W1"] + p["b1"]).tanh()
        g = (z @ p["W2"] + p["b2"] - data["y"]) * (2 / X.shape[0])
        da = g[:, None] * p["W2"][None, :] * (1 - z.tanh() ** 2)  # should be 1 - z^2
        return {"W1": X.T @ da, "b1": da.sum(0), "W2": z.T @ g, "b2": g.sum().reshape(1)}


@register_pattern
class ForgottenZero(Pattern):
    """k training steps' worth of backward passes, meant to be zeroed in between but not."""

    name = "forgotten_zero"
    takes_k = True

    def step(self, s, batches):
        s.clear()
        for _ in range(self.k):
            for b, w in batches:
                s.accumulate(b, w)  # a zero() belonged here


@register_pattern
class UnscaledMicrobatches(Pattern):
    """k equal micro-batches of a mean loss summed without the 1/k."""

    name = "unscaled_microbatch"
    takes_k = True
    needs_batch = True

    def plan(self, rows):
        m = rows // self.k
        return [(i * m, (i + 1) * m, 1.0) for i in range(self.k)]  # weight should be 1/k

    def step(self, s, batches):
        s.clear()
        for b, w in batches:
            s.accumulate(b, w)


@register_method
class DoubleBackward(Autograd):
    """loss.backward(retain_graph=True) followed by loss.backward()."""

    name = "double_backward"

    def accumulate(self, batch, weight=1.0):
        loss = self.loss(self.params, batch) * weight
        loss.backward(retain_graph=True)
        loss.backward()  # a second backward through the retained graph adds the gradient again
