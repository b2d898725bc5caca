"""What a family of cells shares, built once: the problem, its inputs on the device, the float64
reference and tolerances, the smaller float64 inputs of the methods' twins; and the check of a
method's gradient against them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import agreement as agr
from . import gpu
from . import reference as ref
from .diagnosis import diagnose
from .methods import Method
from .patterns import Pattern
from .problems.base import Problem, Tensors
from .record import preview


@dataclass
class Family:
    """What a family shares: the problem, its inputs on the device, the float64 reference, and
    the smaller float64 inputs of the methods' twins (see reference.py)."""

    problem: Problem
    pattern: Pattern
    dtype: torch.dtype
    device: torch.device
    params: Tensors
    data: Tensors
    reference: agr.Reference
    twin: tuple[Problem, Tensors, Tensors]
    twin_reference: Tensors
    tol: float  # of all parameters at once; per parameter in param_tol
    param_tol: dict[str, float]
    formula_tol: float  # of the float64 twin
    formula_param_tol: dict[str, float]
    setup_s: float

    @classmethod
    def build(
        cls, problem: Problem, dtype: torch.dtype, pattern: Pattern, seed: int, device: torch.device
    ) -> Family:
        started = time.perf_counter()
        # data depend on (problem, sizes, data set, seed, device) only: every method and dtype of
        # a family, and every run with the same seed, sees the same draw, made on the device by
        # its own generator (CUDA's Philox draws differ from the CPU's Mersenne Twister)
        params, data = problem.make(torch.Generator(device).manual_seed(seed))
        params = {k: v.to(device, dtype) for k, v in params.items()}
        data = {k: v.to(device, dtype) for k, v in data.items()}
        reference = agr.reference_of(problem, params, data, ref.reference_grad(problem, params, data))
        tol, param_tol = reference.tolerances(dtype, problem.reduction_length())
        formula_tol, formula_param_tol = reference.formula_tolerances()
        twin = ref.twin_inputs(problem, params, data, multiple=pattern.k if pattern.needs_batch else 1)
        same = twin[0] is problem
        gpu.synchronize(device)
        return cls(
            problem=problem,
            pattern=pattern,
            dtype=dtype,
            device=device,
            params=params,
            data=data,
            reference=reference,
            twin=twin,
            # on the whole data, the twin's reference is the reference, up to float64 rounding
            twin_reference=reference.grad if same else ref.reference_grad(*twin),
            tol=tol,
            param_tol=param_tol,
            formula_tol=formula_tol,
            formula_param_tol=formula_param_tol,
            setup_s=time.perf_counter() - started,
        )

    def stepper(self, method: type[Method]) -> Method:
        return method(self.problem, self.params, self.data)

    def sync(self, method: type[Method]) -> Callable[[], None]:
        return lambda: method.synchronize(self.device)

    def _compare(self, grads: Tensors, reference: Tensors, tol: float, param_tol: dict) -> agr.Agreement:
        return agr.compare(grads, reference, self.pattern.multiplier, tol, param_tol)

    def check(self, method: type[Method], stepper: Method) -> tuple[agr.Agreement, list]:
        """Agreement of what the stepper's gradient buffer holds, with its verdict. The same
        method's float64 twin (on a subsample of rows when the data are large) tells a wrong
        formula from rounding, and decides too: a formula wrong in float64 is a mismatch whatever
        this dtype's tolerance lets through. A float64 cell is its own twin; a method without one
        (a second compile) goes unchecked in float64, and its record says so (f64_checked). The
        twin's tolerance is the whole data's condition: never tighter than the subsample's."""
        grads = stepper.grads()
        a = self._compare(grads, self.reference.grad, self.tol, self.param_tol)
        if self.dtype == torch.float64:
            a.twin = self._compare(grads, self.reference.grad, self.formula_tol, self.formula_param_tol)
        elif method.float64_twin:
            s64 = method(*self.twin)
            step64 = self.pattern.bind(s64)
            step64()
            step64()
            a.twin = self._compare(s64.grads(), self.twin_reference, self.formula_tol, self.formula_param_tol)
        p = self.problem
        a.diagnosis = diagnose(a, p.n, self.pattern.k, d=p.d, h=p.h, layers=p.layers)
        return a, preview(grads)

    def min_bytes(self) -> int | None:
        return self.problem.min_bytes(torch.empty((), dtype=self.dtype).element_size())
