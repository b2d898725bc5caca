"""Autograd and its forms: `.backward()` into `.grad`, `torch.autograd.grad`, `torch.func.grad`."""

from __future__ import annotations

import torch

from .base import Method, register_method


class Tracked(Method):
    """Parameters that autograd tracks (`requires_grad`), read back detached: what every form of
    autograd that differentiates through the parameters starts from."""

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        for p in self.params.values():
            p.requires_grad_(True)

    def current_params(self):
        return {k: p.detach() for k, p in self.params.items()}


@register_method
class Autograd(Tracked):
    """`loss.backward()`, gradients accumulated by autograd into `.grad`."""

    name = "autograd"
    retains = True
    order, color, marker = 30, "#1f77b4", "s"
    # the buffers are the parameters' own `.grad`

    def loss(self, params, batch) -> torch.Tensor:
        """The loss whose graph `.backward()` walks; a compiled method compiles it."""
        return self.problem.loss(params, batch)

    def clear(self):
        for p in self.params.values():
            p.grad = None

    def zero(self):
        for p in self.params.values():
            if p.grad is not None:
                p.grad.zero_()

    def accumulate(self, batch, weight=1.0):
        loss = self.loss(self.params, batch)
        (loss * weight if weight != 1 else loss).backward()

    def retained(self, batch, k):
        loss = self.loss(self.params, batch)
        for i in range(k):
            loss.backward(retain_graph=i < k - 1)

    def grads(self):
        return {k: p.grad for k, p in self.params.items() if p.grad is not None}

    def sgd(self, lr):
        with torch.no_grad():
            for p in self.params.values():
                p.sub_(p.grad, alpha=lr)


@register_method
class AutogradGrad(Tracked):
    """`torch.autograd.grad`: autograd without touching `.grad`; returned, accumulated in our buffers."""

    name = "autograd_grad"
    retains = True
    order, color, marker = 40, "#17becf", "v"

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        self.keys = list(self.params)

    def grads_of(self, batch):
        loss = self.problem.loss(self.params, batch)
        return dict(zip(self.keys, torch.autograd.grad(loss, [self.params[k] for k in self.keys])))

    def retained(self, batch, k):
        loss = self.problem.loss(self.params, batch)
        inputs = [self.params[key] for key in self.keys]
        for i in range(k):
            g = dict(zip(self.keys, torch.autograd.grad(loss, inputs, retain_graph=i < k - 1)))
            if self.buffers is None:
                self.buffers = g
            else:
                for name, v in g.items():
                    self.buffers[name].add_(v)


@register_method
class Func(Method):
    """`torch.func.grad`: the gradient as a function transform."""

    name = "func"
    order, color, marker = 50, "#ff7f0e", "^"

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        self.grad_fn = torch.func.grad(problem.loss)

    def grads_of(self, batch):
        return self.grad_fn(self.params, batch)
