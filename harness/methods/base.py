"""What a method is: a way to obtain d loss / d params, with what it can do declared beside it.

A Method is built on one problem's parameters and data (a copy of the parameters, a gradient
buffer of its own) and exposes four verbs, which accumulation patterns drive, so that every
pattern means the same thing for every method:

    clear()                     drop the gradient (`p.grad = None`, the default of zero_grad)
    zero()                      zero it in place (`p.grad.zero_()`, the seed post's habit)
    accumulate(batch, weight)   buffer += weight * d loss(batch) / d params
    retained(batch, k)          k backward passes through one retained graph (autograd only)

Hand-written methods accumulate into buffers of their own, exactly as autograd accumulates into
`.grad`. The class attributes below are the method's capabilities: the harness and the reports
read them, and never test a method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from ..problems.base import Problem, Tensors
from ..registry import Registry

DEVICE_WORDS = {"cpu": "the CPU", "cuda": "CUDA GPUs"}


class Method:
    """Parameters, data and gradient buffer of one way to a gradient, on one device.

    Subclasses set `name` and write `grads_of` (a gradient of one batch), or override the verbs.
    """

    name: ClassVar[str]
    # hand-written gradients are the ones whose formula can be wrong; autograd's cannot
    hand_written: ClassVar[bool] = False
    # the method every other one's time is paired with (the `vs_manual` columns)
    baseline: ClassVar[bool] = False
    # whether it has a retained graph to backpropagate through several times
    retains: ClassVar[bool] = False
    # whether its first call compiles: that call is kept apart, in `compile_s`
    compiles: ClassVar[bool] = False
    # whether it can run again in float64 to tell a wrong formula from rounding; a compiled
    # method would pay a second compile for it
    float64_twin: ClassVar[bool] = True
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    # whether its allocations are torch tensors visible at the dispatcher (measure.peak_bytes)
    traceable_memory: ClassVar[bool] = True
    # whether it runs a user's torch.autograd.Function: the loss its forward returns is checked
    # against the reference loss, and its backward probed for taking grad_output (`evaluate`)
    custom_function: ClassVar[bool] = False
    # its place and look in reports: lower `order` first; `color` None takes a spare colour
    order: ClassVar[int] = 100
    color: ClassVar[str | None] = None
    marker: ClassVar[str] = "o"

    def __init__(self, problem: Problem, params: Tensors, data: Tensors):
        self.problem = problem
        self.params = {k: v.detach().clone() for k, v in params.items()}
        self.data = data
        self.buffers: dict | None = None

    # -- capabilities ------------------------------------------------------------------------
    @classmethod
    def skip_reason(cls, problem: type[Problem], dtype: torch.dtype, device: str) -> str | None:
        """Why this method cannot run the problem in `dtype` on `device`, or None."""
        if torch.device(device).type not in cls.devices:
            return f"{cls.name} runs on {' and '.join(DEVICE_WORDS.get(d, d) for d in cls.devices)} only"
        return None

    @classmethod
    def twin_skip_reason(cls, problem: type[Problem]) -> str | None:
        """Why this method cannot run the problem in float64 for its twin, or None."""
        return None

    @classmethod
    def unprofiled(cls, device: str) -> str | None:
        """Why torch.profiler cannot see this method's work on `device` (None: it can)."""
        return None

    @staticmethod
    def synchronize(device: torch.device) -> None:
        """Wait until the work this method queued on `device` is done (timing needs it)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    @classmethod
    def declared(cls) -> dict:
        """The capabilities, as plain data: what a run's manifest keeps for its reports."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "doc": doc[0] if doc else "",
            "hand_written": cls.hand_written,
            "baseline": cls.baseline,
            "compiles": cls.compiles,
            "float64_twin": cls.float64_twin,
            "custom_function": cls.custom_function,
            "devices": list(cls.devices),
            "order": cls.order,
            "color": cls.color,
            "marker": cls.marker,
        }

    # -- the verbs ---------------------------------------------------------------------------
    def wrap_step(self, step: Callable[[], None]) -> Callable[[], None]:
        """A pattern's bound step as this method runs it: as it is, unless the method replays it
        (a captured CUDA graph)."""
        return step

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

    def evaluate(self, batch, weight: float = 1.0) -> torch.Tensor:
        """accumulate(batch, weight), returning the loss evaluated (a `custom_function`'s)."""
        raise NotImplementedError(f"{self.name} returns no loss of its own")

    def retained(self, batch, k: int) -> None:
        raise NotImplementedError(f"{self.name} has no retained graph")

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


METHODS: Registry[type[Method]] = Registry("method")


def _check(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{getattr(cls, '__qualname__', cls)} must subclass harness.Method")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...'")


# `@register_method` or `@register_method(replace=True)`: make a Method runnable by its `name`
register_method = METHODS.decorator(_check)


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def method_names() -> list[str]:
    return METHODS.names()
