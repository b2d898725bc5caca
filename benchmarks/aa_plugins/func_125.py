"""A planted slow-down of a method that is not the baseline, for benchmarks/aa_compare.py: `func`
replaced on purpose by one that takes a quarter longer: after the gradient it keeps the CPU busy
for a quarter of the time the gradient took. Same gradient, same cell ids."""

import time

from harness import register_method
from harness.methods.autograd import Func as BuiltIn

MORE = 0.25


@register_method(replace=True)
class Func(BuiltIn):
    name = "func"

    def grads_of(self, batch):
        start = time.perf_counter()
        grads = super().grads_of(batch)  # eager CPU operations: done when they return
        until = time.perf_counter() + MORE * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return grads
