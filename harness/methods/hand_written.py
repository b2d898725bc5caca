"""Gradients written by hand: the problem's `manual_grad` in torch, and its `numpy_grad`."""

from __future__ import annotations

import numpy as np
import torch

from .base import Method, register_method


@register_method
class Manual(Method):
    """The problem's `manual_grad`: torch operations, no autograd."""

    name = "manual"
    hand_written = True
    baseline = True
    order, color, marker = 0, "#222222", "o"

    def grads_of(self, batch):
        return self.problem.manual_grad(self.params, batch)


@register_method
class Numpy(Method):
    """The problem's `numpy_grad`: a hand-written gradient in numpy, on the CPU."""

    name = "numpy"
    hand_written = True
    devices = ("cpu",)
    traceable_memory = False  # numpy's arrays are invisible to torch's dispatcher
    order, color, marker = 10, "#2ca02c", "D"

    @classmethod
    def skip_reason(cls, problem, dtype, device):
        if dtype == torch.float16:
            # numpy sums float16 in float16 (torch and cuBLAS accumulate in float32): its error
            # grows as sqrt(L) u, 1.3e-2 for the mlp at n = 4096, and would measure numpy's
            # accumulator rather than the gradient
            return "numpy accumulates float16 in float16"
        if dtype not in (torch.float32, torch.float64):
            return f"numpy has no {str(dtype).removeprefix('torch.')}"
        if not problem.has_numpy():
            return f"problem {problem.name!r} has no numpy_grad"
        return super().skip_reason(problem, dtype, device)

    # parameters, data and buffers live as numpy arrays, as in the seed post
    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        self.params = {k: v.numpy().copy() for k, v in self.params.items()}
        self.data = {k: v.numpy() for k, v in data.items()}

    def grads_of(self, batch):
        return self.problem.numpy_grad(self.params, batch)

    def accumulate(self, batch, weight=1.0):
        g = self.grads_of(batch)
        dtype = next(iter(self.params.values())).dtype
        if self.buffers is None:
            self.buffers = {k: np.asarray(v * weight, dtype=dtype) for k, v in g.items()}
        else:
            for k, v in g.items():
                self.buffers[k] += weight * v

    def zero(self):
        if self.buffers is not None:
            for g in self.buffers.values():
                g[...] = 0

    def grads(self):
        return {k: torch.from_numpy(np.asarray(v)) for k, v in (self.buffers or {}).items()}

    def sgd(self, lr):
        for k in self.params:
            self.params[k] -= lr * self.buffers[k]

    def current_params(self):
        return {k: torch.from_numpy(np.asarray(v)) for k, v in self.params.items()}
