"""A planted slow-down for benchmarks/aa_compare.py: `linear` replaced on purpose by one whose
manual gradient does its work twice. Same data, same loss, same gradient, same cell ids."""

from harness import register_problem
from harness.problems.linear import Linear as BuiltIn


@register_problem(replace=True)
class Linear(BuiltIn):
    name = "linear"

    def manual_grad(self, p, data):
        super().manual_grad(p, data)  # the work done once more, its result dropped
        return super().manual_grad(p, data)
