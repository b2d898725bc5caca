"""Gradient-accumulation patterns: how one step drives a Method, and what it should give.

    full            clear, one evaluation                          expect 1 x the gradient
    zero            zero in place, one evaluation                  expect 1 x
    microbatch:k    clear, k equal micro-batches, loss scaled 1/k  expect 1 x
    uneven:k        clear, k unequal micro-batches, weighted n_i/N expect 1 x
    nozero:k        clear, k evaluations without zeroing           expect k x (the forgotten zero)
    retain:k        clear, k backward passes of one retained graph expect k x

Scaling by 1/k is exact only for equal micro-batches of a mean over rows; unequal ones need
n_i/N, or the gradient is biased (the transformers gradient-accumulation bug). And a loss that
is a mean over something else (the valid targets of a token loss: Problem.items) needs each
micro-batch weighted by its share of those, items_i / items, whatever its rows: every pattern
that splits samples does so (`drive`: a plan's weights, written for a mean over rows, carried
over to items), and a micro-batch with no items is not evaluated (its share is nothing; its own
mean, 0/0, would be NaN). For a mean over rows these weights are the n_i/N and 1/k above, to the
last bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from .methods.base import Method
from .problems.base import Problem, items_of
from .registry import Registry

Plan = list[tuple[int, int, float]]  # micro-batches as (start, stop, weight)


@dataclass(frozen=True)
class Drive:
    """What one step of a pattern evaluates: the micro-batches that hold items, each with its
    weight items_i / items; and what every micro-batch of the plan held (`held`, empty ones too),
    what the record keeps."""

    plan: Plan
    held: tuple[float, ...]
    items: float

    @property
    def empty(self) -> int:
        """Micro-batches with no items: left out of the step."""
        return sum(1 for h in self.held if not h)


class Pattern:
    """One accumulation pattern with its k. Subclasses set `name` and write `step`."""

    name: ClassVar[str]
    order: ClassVar[int] = 100  # its place in reports, lower first
    takes_k: ClassVar[bool] = False
    needs_batch: ClassVar[bool] = False  # splits the samples: needs a problem with `batched` data
    needs_retain: ClassVar[bool] = False

    def __init__(self, k: int = 1):
        self.k = k

    @classmethod
    def declared(cls) -> dict:
        """What reports need to know of it, as plain data (kept in a run's manifest)."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {"doc": doc[0] if doc else "", "order": cls.order, "takes_k": cls.takes_k}

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.k}" if self.takes_k else self.name

    @property
    def multiplier(self) -> int:
        """What the step gives, in units of the true gradient."""
        return 1

    def plan(self, rows: int) -> Plan:
        return [(0, rows, 1.0)]

    def skip_reason(self, problem: Problem, method: type[Method]) -> str | None:
        if self.needs_batch and not problem.batched:
            return f"{self.spec} splits samples; {problem.name!r} has no sample axis"
        if self.needs_batch and problem.n is not None and self.k > problem.n:
            return f"{self.spec} needs k <= n, got n={problem.n}"
        if self.needs_retain and not method.retains:
            return f"{self.spec} needs a retained autograd graph; {method.name!r} has none"
        return None

    def step(self, stepper: Method, batches: list) -> None:
        raise NotImplementedError

    def drive(self, problem: Problem, data) -> Drive:
        """The micro-batches of `plan` over these data, weighted by their items (Problem.items)
        where the pattern splits samples; counted once, outside any timed step."""
        rows = problem.rows(data)
        plan = self.plan(rows)
        if not self.needs_batch:
            return Drive(plan, (), math.nan)
        total = items_of(problem, data)
        held = tuple(items_of(problem, problem.rows_of(data, a, b)) for a, b, _ in plan)
        # the plan weighs a micro-batch as for a mean over rows (n_i/N, or 1/k when equal); its
        # weight carried over to items is w (I_i/I) / (n_i/N): I_i/I for the built-in patterns,
        # w itself (to the last bit) where the items are the rows
        weighted = [(a, b, w * (h / total) / ((b - a) / rows)) for (a, b, w), h in zip(plan, held) if h]
        return Drive(weighted, held, total)

    def bind(self, stepper: Method, drive: Drive | None = None) -> Callable[[], None]:
        """A no-argument step with the micro-batches sliced once, for timing; `drive` is what
        `drive` gave for the stepper's data (counted here when not given)."""
        rows = stepper.problem.rows(stepper.data)
        drive = drive or self.drive(stepper.problem, stepper.data)
        batches = [
            (stepper.batch(a, b) if (a, b) != (0, rows) else stepper.data, w) for a, b, w in drive.plan
        ]
        return stepper.wrap_step(lambda: self.step(stepper, batches))


PATTERNS: Registry[type[Pattern]] = Registry("pattern")


def _check(cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Pattern)):
        raise TypeError(f"{getattr(cls, '__qualname__', cls)} must subclass harness.Pattern")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name or ":" in cls.name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...' without ':'")


# `@register_pattern` or `@register_pattern(replace=True)`: usable by its `name` (`name:k` if takes_k)
register_pattern = PATTERNS.decorator(_check)


def parse_pattern(spec: str) -> Pattern:
    """'microbatch:4' -> Pattern; raises ValueError with the reason on anything else."""
    name, _, k = spec.partition(":")
    if name not in PATTERNS:
        raise ValueError(f"unknown pattern {spec!r}; known: {', '.join(pattern_names())}")
    cls = PATTERNS.get(name)
    if not cls.takes_k:
        if k:
            raise ValueError(f"pattern {name!r} takes no k, got {spec!r}")
        return cls()
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"pattern {spec!r} needs an integer k >= 1, as in {name}:4")
    return cls(int(k))


def pattern_names() -> list[str]:
    return sorted(f"{n}:k" if c.takes_k else n for n, c in PATTERNS.items())


@register_pattern
class Full(Pattern):
    name = "full"
    order = 0

    def step(self, s, batches):
        s.clear()
        for b, w in batches:
            s.accumulate(b, w)


@register_pattern
class Zero(Pattern):
    name = "zero"
    order = 10

    def step(self, s, batches):
        s.zero()
        for b, w in batches:
            s.accumulate(b, w)


@register_pattern
class Microbatch(Full):
    name = "microbatch"
    order = 20
    takes_k = True
    needs_batch = True

    def skip_reason(self, problem, method):
        reason = super().skip_reason(problem, method)
        if reason is None and problem.n % self.k:
            return f"{self.spec} needs n divisible by k, got n={problem.n} (uneven:{self.k} splits any n)"
        return reason

    # equal micro-batches of a mean loss: each weighted 1/k
    def plan(self, rows):
        m = rows // self.k
        return [(i * m, (i + 1) * m, 1.0 / self.k) for i in range(self.k)]


@register_pattern
class Uneven(Full):
    name = "uneven"
    order = 30
    takes_k = True
    needs_batch = True

    # micro-batch i holds 1 + (n - k)(i + 1) / (1 + 2 + ... + k) rows (the last the rest),
    # so sizes grow with i and none is empty; each is weighted n_i / N
    def plan(self, rows):
        total = self.k * (self.k + 1) // 2
        sizes = [1 + (rows - self.k) * (i + 1) // total for i in range(self.k - 1)]
        sizes.append(rows - sum(sizes))
        starts = [sum(sizes[:i]) for i in range(self.k)]
        return [(a, a + m, m / rows) for a, m in zip(starts, sizes)]


@register_pattern
class NoZero(Pattern):
    name = "nozero"
    order = 40
    takes_k = True

    @property
    def multiplier(self):
        return self.k

    def step(self, s, batches):
        s.clear()
        for _ in range(self.k):
            for b, w in batches:
                s.accumulate(b, w)


@register_pattern
class Retain(Pattern):
    name = "retain"
    order = 50
    takes_k = True
    needs_retain = True

    @property
    def multiplier(self):
        return self.k

    def step(self, s, batches):
        s.clear()
        for b, _ in batches:
            s.retained(b, self.k)
