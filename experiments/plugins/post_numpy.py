"""The seed post's own numpy gradient for f = w x, kept as it was written so runs can catch it.

    # J = MSE = 1/N * (w*x - y)**2
    # dJ/dw = 1/N * 2x(w*x - y)
    def gradient(x, y, y_pred):
        return np.dot(2*x, y_pred - y).mean()

np.dot already sums over the N points and `.mean()` of a scalar is that scalar: the 1/N is
lost and the gradient is N times too large (4x on the post's X = [1, 2, 3, 4]). Its training
still converges, just with an effective learning rate N times the stated one.
"""

import numpy as np

from harness import register_problem
from harness.problems.linear1d import Linear1d


@register_problem
class Linear1dPost(Linear1d):
    """linear1d with the seed post's numpy gradient, which sums where it should average."""

    name = "linear1d_post"

    def numpy_grad(self, p, data):
        x, y = data["x"], data["y"]
        y_pred = p["w"] * x
        return {"w": np.asarray(np.dot(2 * x, y_pred - y).mean()).reshape(1)}
