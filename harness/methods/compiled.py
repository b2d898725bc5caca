"""`torch.compile` of the loss, then `.backward()`: AOTAutograd compiles the backward too."""

from __future__ import annotations

import torch

from .autograd import Autograd
from .base import register_method


@register_method
class Compiled(Autograd):
    """`torch.compile` of the loss, then `.backward()`: AOTAutograd compiles the backward too."""

    name = "compiled"
    compiles = True
    float64_twin = False  # a float64 twin would compile a second graph
    traceable_memory = False  # compiled kernels allocate outside the dispatcher's view
    order, color, marker = 60, "#9467bd", "P"

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        # a sweep sees many shapes and dtypes: raise dynamo's default of 8 recompiles per
        # function, past which it silently falls back to eager and the timings would lie
        config = torch._dynamo.config
        config.cache_size_limit = max(config.cache_size_limit, 256)
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 1024)
        self._loss = torch.compile(problem.loss)

    def loss(self, params, batch):
        return self._loss(params, batch)
