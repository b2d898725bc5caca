"""A planted slow-down for benchmarks/aa_compare.py: `linear` replaced on purpose by one whose
manual gradient takes a quarter longer: after the gradient it keeps the CPU busy for a quarter of
the time the gradient took (a quarter more rows would cost more than a quarter at small n, where
each operation's fixed cost dominates). Same data, same loss, same gradient, same cell ids."""

import time

from harness import register_problem
from harness.problems.linear import Linear as BuiltIn

MORE = 0.25


@register_problem(replace=True)
class Linear(BuiltIn):
    name = "linear"

    def manual_grad(self, p, data):
        start = time.perf_counter()
        grad = super().manual_grad(p, data)  # eager CPU operations: done when they return
        until = time.perf_counter() + MORE * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return grad
