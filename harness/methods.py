"""How a gradient is obtained: one Method each, all behind the same small Stepper interface.

A Stepper owns a copy of the parameters and a gradient buffer. Accumulation patterns drive it
through four verbs, so every pattern means the same thing for every method:

    clear()                     drop the gradient (`p.grad = None`, the default of zero_grad)
    zero()                      zero it in place (`p.grad.zero_()`, the seed post's habit)
    accumulate(batch, weight)   buffer += weight * d loss(batch) / d params
    retained(batch, k)          k backward passes through one retained graph (autograd only)

`manual` and the other hand-written methods accumulate into buffers of their own, exactly as
autograd accumulates into `.grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from .problems.base import Problem, Tensors


class Stepper:
    """Parameters, data and gradient buffers of one method on one device."""

    def __init__(self, problem: Problem, params: Tensors, data: Tensors):
        self.problem = problem
        self.params = {k: v.detach().clone() for k, v in params.items()}
        self.data = data
        self.buffers: dict | None = None

    def batch(self, start: int, stop: int):
        """The samples start:stop of the batched data (views), the rest whole."""
        return {k: (v[start:stop] if k in self.problem.batched else v) for k, v in self.data.items()}

    def clear(self) -> None:
        self.buffers = None

    def zero(self) -> None:
        if self.buffers is not None:
            for g in self.buffers.values():
                g.zero_()

    def grads_of(self, batch) -> dict:
        raise NotImplementedError

    def accumulate(self, batch, weight: float = 1.0) -> None:
        g = self.grads_of(batch)
        if self.buffers is None:
            self.buffers = {k: (v * weight if weight != 1 else v) for k, v in g.items()}
        else:
            for k, v in g.items():
                self.buffers[k].add_(v, alpha=weight)

    def retained(self, batch, k: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no retained graph")

    def grads(self) -> Tensors:
        """The gradient buffer as torch tensors (what agreement compares)."""
        return dict(self.buffers or {})

    def sgd(self, lr: float) -> None:
        """params -= lr * grad, outside any graph (the post's `with torch.no_grad()`)."""
        with torch.no_grad():
            for k, p in self.params.items():
                p.sub_(self.buffers[k], alpha=lr)

    def current_params(self) -> Tensors:
        return self.params


class Method:
    """A way to obtain d loss / d params. Subclasses name themselves and build a Stepper."""

    name: ClassVar[str]
    # hand-written gradients are the ones whose formula can be wrong; autograd's cannot
    hand_written: ClassVar[bool] = False
    # whether it has a retained graph to backpropagate through several times
    retains: ClassVar[bool] = False
    # whether its allocations are torch tensors visible at the dispatcher (see measure.peak_bytes)
    traceable_memory: ClassVar[bool] = True

    def skip_reason(self, problem: type[Problem], dtype: torch.dtype, device: str) -> str | None:
        return None

    def stepper(self, problem: Problem, params: Tensors, data: Tensors) -> Stepper:
        raise NotImplementedError


_METHODS: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a Method runnable by its `name`."""
    _METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}") from None


def method_names() -> list[str]:
    return sorted(_METHODS)


# --- hand-written -----------------------------------------------------------------------------


class ManualStepper(Stepper):
    def grads_of(self, batch):
        return self.problem.manual_grad(self.params, batch)


@register_method
class Manual(Method):
    """The problem's `manual_grad`: torch operations, no autograd."""

    name = "manual"
    hand_written = True

    def stepper(self, problem, params, data):
        return ManualStepper(problem, params, data)


class NumpyStepper(Stepper):
    """Parameters, data and buffers live as numpy arrays, as in the seed post."""

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


@register_method
class Numpy(Method):
    """The problem's `numpy_grad`: a hand-written gradient in numpy, on the CPU."""

    name = "numpy"
    hand_written = True
    traceable_memory = False

    def skip_reason(self, problem, dtype, device):
        if device != "cpu":
            return "numpy runs on the CPU only"
        if dtype == torch.float16:
            # numpy sums float16 in float16 (torch and cuBLAS accumulate in float32): its error
            # grows as sqrt(L) u, 1.3e-2 for the mlp at n = 4096, and would measure numpy's
            # accumulator rather than the gradient
            return "numpy accumulates float16 in float16"
        if dtype not in (torch.float32, torch.float64):
            return f"numpy has no {str(dtype).removeprefix('torch.')}"
        if not problem.has_numpy():
            return f"problem {problem.name!r} has no numpy_grad"
        return None

    def stepper(self, problem, params, data):
        return NumpyStepper(problem, params, data)


# --- autograd ---------------------------------------------------------------------------------


class AutogradStepper(Stepper):
    """`loss.backward()` into `.grad`: the buffers are the parameters' own `.grad`."""

    def __init__(self, problem, params, data, loss_fn: Callable | None = None):
        super().__init__(problem, params, data)
        for p in self.params.values():
            p.requires_grad_(True)
        self.loss_fn = loss_fn or problem.loss

    def clear(self):
        for p in self.params.values():
            p.grad = None

    def zero(self):
        for p in self.params.values():
            if p.grad is not None:
                p.grad.zero_()

    def accumulate(self, batch, weight=1.0):
        loss = self.loss_fn(self.params, batch)
        (loss * weight if weight != 1 else loss).backward()

    def retained(self, batch, k):
        loss = self.loss_fn(self.params, batch)
        for i in range(k):
            loss.backward(retain_graph=i < k - 1)

    def grads(self):
        return {k: p.grad for k, p in self.params.items() if p.grad is not None}

    def sgd(self, lr):
        with torch.no_grad():
            for p in self.params.values():
                p.sub_(p.grad, alpha=lr)

    def current_params(self):
        return {k: p.detach() for k, p in self.params.items()}


@register_method
class Autograd(Method):
    """`loss.backward()`, gradients accumulated by autograd into `.grad`."""

    name = "autograd"
    retains = True

    def stepper(self, problem, params, data):
        return AutogradStepper(problem, params, data)


class AutogradGradStepper(Stepper):
    """`torch.autograd.grad(loss, params)`: gradients returned, accumulated in our buffers."""

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        for p in self.params.values():
            p.requires_grad_(True)
        self.keys = list(self.params)

    def grads_of(self, batch):
        loss = self.problem.loss(self.params, batch)
        return dict(zip(self.keys, torch.autograd.grad(loss, [self.params[k] for k in self.keys])))

    def retained(self, batch, k):
        loss = self.problem.loss(self.params, batch)
        inputs = [self.params[key] for key in self.keys]
        for i in range(k):
            g = torch.autograd.grad(loss, inputs, retain_graph=i < k - 1)
            self._add(dict(zip(self.keys, g)))

    def _add(self, g):
        if self.buffers is None:
            self.buffers = g
        else:
            for k, v in g.items():
                self.buffers[k].add_(v)

    def current_params(self):
        return {k: p.detach() for k, p in self.params.items()}


@register_method
class AutogradGrad(Method):
    """`torch.autograd.grad`: autograd without touching `.grad`."""

    name = "autograd_grad"
    retains = True

    def stepper(self, problem, params, data):
        return AutogradGradStepper(problem, params, data)


class FuncStepper(Stepper):
    """`torch.func.grad(loss)(params, batch)`: the functional transform."""

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        self.grad_fn = torch.func.grad(problem.loss)

    def grads_of(self, batch):
        return self.grad_fn(self.params, batch)


@register_method
class Func(Method):
    """`torch.func.grad`: the gradient as a function transform."""

    name = "func"

    def stepper(self, problem, params, data):
        return FuncStepper(problem, params, data)


@register_method
class Compiled(Method):
    """`torch.compile` of the loss, then `.backward()`: AOTAutograd compiles the backward too."""

    name = "compiled"
    retains = True
    float64_twin = False  # a second compile, for float64: seconds per shape
    traceable_memory = False

    def stepper(self, problem, params, data):
        return AutogradStepper(problem, params, data, loss_fn=_compiled_loss(problem))


def _compiled_loss(problem: Problem) -> Callable:
    # a sweep sees many shapes and dtypes: raise dynamo's default of 8 recompiles per
    # function, past which it silently falls back to eager and the timings would lie
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 256)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 1024)
    return torch.compile(problem.loss)
