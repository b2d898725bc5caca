"""What a family of cells shares, built once: the problem, its inputs on the device, and the
float64 truth (harness.reference); and the check of a method's gradient against it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import agreement as agr
from . import gpu
from . import twin as tw
from .diagnosis import diagnose
from .methods import Method
from .patterns import Drive, Full, Pattern
from .problems.base import Problem, Tensors, items_of
from .record import one_line, preview
from .reference import Truth, reference_grad
from .weighting import WeightingFinding, find, unweighted, weigh

# what a Function's loss is scaled by to see its backward take grad_output: a power of 2, so
# that a backward that does scales exactly, and any difference is the backward's
GRAD_OUTPUT_WEIGHT = 0.25
# rows of the probe that tells an error entering past the first rows (a chunked Function's later
# chunks) from one in every row: fewer than any chunk a kernel takes
PREFIX_ROWS = 16


@dataclass
class Family:
    """What a family shares: the problem, its inputs on the device, the float64 truth."""

    problem: Problem
    pattern: Pattern
    dtype: torch.dtype
    device: torch.device
    params: Tensors
    data: Tensors
    truth: Truth
    setup_s: float
    drive: Drive  # the pattern's micro-batches over these data, weighted by their items

    @classmethod
    def build(
        cls,
        problem: Problem,
        dtype: torch.dtype,
        pattern: Pattern,
        seed: int,
        device: torch.device,
        checks_loss: bool = False,
    ) -> Family:
        """`checks_loss`: a method of the family is a user's Function, whose forward's loss is
        checked too (its tolerance needs the loss's own condition)."""
        started = time.perf_counter()
        # data depend on (problem, sizes, data set, seed, device) only: every method and dtype of
        # a family, and every run with the same seed, sees the same draw, made on the device by
        # its own generator (CUDA's Philox draws differ from the CPU's Mersenne Twister)
        params, data = problem.make(torch.Generator(device).manual_seed(seed))
        params = {k: v.to(device, dtype) for k, v in params.items()}
        # integer data (class labels) are indices: never cast to the cell's dtype
        data = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in data.items()}
        multiple = pattern.k if pattern.needs_batch else 1
        truth = Truth.of(problem, params, data, dtype, multiple=multiple, of_loss=checks_loss)
        drive = pattern.drive(problem, data)
        gpu.synchronize(device)
        return cls(problem, pattern, dtype, device, params, data, truth, time.perf_counter() - started, drive)

    def stepper(self, method: type[Method]) -> Method:
        return method(self.problem, self.params, self.data)

    def bind(self, stepper: Method):
        """The pattern's step on this stepper, over the family's weighted micro-batches."""
        return self.pattern.bind(stepper, self.drive)

    def sync(self, method: type[Method]) -> Callable[[], None]:
        return lambda: method.synchronize(self.device)

    def check(self, method: type[Method], stepper: Method) -> tuple[agr.Agreement, list]:
        """Agreement of what the stepper's gradient buffer holds, with its verdict. The same
        method's float64 twin (on a subsample of rows when the data are large) tells a wrong
        formula from rounding, and decides too: a formula wrong in float64 is a mismatch whatever
        this dtype's tolerance lets through; one computing in a lower precision somewhere, of the
        finer dtypes only (harness.twin). A float64 cell is its own twin; a method without one
        (a second compile) goes unchecked in float64, and its record says so (f64_checked), as
        does one whose twin cannot run (a Function without float64: f64_note). The twin's
        tolerance is the whole data's condition: never tighter than the subsample's. A user's
        Function also has the loss its forward returns checked, and its backward probed for
        taking grad_output. A gradient that disagrees is held against the wrong weightings it may
        follow (harness.weighting: the drive's or a loop's, not the formula, is then to blame),
        and a formula wrong in float64 is run again on its first rows alone (an error entering
        past them is a later chunk's)."""
        t = self.truth
        grads = stepper.grads()
        a = agr.compare(grads, t.reference.grad, self.pattern.multiplier, t.tol, t.param_tol)
        twin_grads = None
        if self.dtype == torch.float64:
            a.twin = agr.compare(
                grads, t.reference.grad, self.pattern.multiplier, t.formula_tol, t.formula_param_tol
            )
        elif method.float64_twin:
            a.twin_skipped = method.twin_skip_reason(type(self.problem))
            if a.twin_skipped is None:
                try:
                    a.twin, twin_grads = self._twin(method)
                except Exception as exc:  # a kernel with no float64 path: the cell's dtype still judges
                    a.twin_skipped = f"the float64 twin raised {one_line(exc)}"
        if a.twin is not None and not a.twin.within_tol:
            self._judge_twin(method, a)
        if method.custom_function:
            self._check_function(method, a)
        if not a.within_tol or a.formula_wrong:
            a.weighting = self._weighting(method, grads, twin_grads)
            if a.weighting is None and a.formula_wrong and method.hand_written:
                a.right_on_rows = self._prefix(method)
        p = self.problem
        a.diagnosis = diagnose(
            a,
            p.n,
            self.pattern.k,
            d=p.d,
            h=p.h,
            c=p.c,
            layers=p.layers,
            pattern=self.pattern.spec,
            dtype=str(self.dtype).removeprefix("torch."),
            items=self.items() if p.has_items() else None,
        )
        return a, preview(grads)

    def _twin(self, method: type[Method]) -> tuple[agr.Agreement, Tensors]:
        t = self.truth
        grads = self._run64(method, *t.twin)
        return agr.compare(
            grads, t.twin_reference, self.pattern.multiplier, t.formula_tol, t.formula_param_tol
        ), grads

    def _run64(self, method: type[Method], problem: Problem, params: Tensors, data: Tensors) -> Tensors:
        """The method's gradient in float64 under this pattern, twice stepped (as timed)."""
        s64 = method(problem, params, data)
        step64 = self.pattern.bind(s64)
        step64()
        step64()
        return {k: v.detach().clone() for k, v in s64.grads().items()}

    def _judge_twin(self, method: type[Method], a: agr.Agreement) -> None:
        """A formula wrong, or computed in a lower precision somewhere (harness.twin): the latter
        a mismatch of this cell only where its dtype is finer. A float64 cell's twin is the cell,
        on the whole data; the move is made on the twin's rows."""
        problem, params, data = self.truth.twin
        whole = self.dtype == torch.float64
        length = (self.problem if whole else problem).reduction_length()

        def responses(keys: list[str]) -> dict[str, float]:
            def run64(p: Tensors, d: Tensors) -> Tensors:
                return self._run64(method, problem, p, d)

            return tw.response_errors(run64, problem, params, data, self.pattern.multiplier, keys)

        try:
            a.twin_precision = tw.judge(a.twin, tw.rounding(self.truth.reference, length), responses)
        except Exception:  # the moved twin could not run: its error is read as a formula's, as it was
            return
        a.loses_precision = a.twin_precision.binds(self.dtype)

    def _weighting(self, method, grads: Tensors, twin_grads: Tensors | None) -> WeightingFinding | None:
        """Whether a gradient follows a wrong weighting: a split step's micro-batches weighted
        otherwise than by their items (the loss not the mean the drive weights by, or a user's
        loop weighting by 1/k); a Function's rows all given one grad_output. Judged on the float64
        twin where it ran (exact), else on the cell's own gradient and tolerance."""
        t = self.truth
        if twin_grads is not None:
            problem, params, data = t.twin
            grads, truth, tol = twin_grads, t.twin_reference, t.formula_tol
        else:
            problem, params, data = self.problem, self.params, self.data
            exact = self.dtype == torch.float64
            truth, tol = t.reference.grad, (t.formula_tol if exact else t.tol)
        if self.pattern.needs_batch:
            found = find(grads, weigh(problem, params, data, self.pattern), truth, tol, problem.has_items())
            if found is not None:
                return found
        if method.custom_function and self.pattern.multiplier == 1 and not self.pattern.needs_batch:
            return unweighted(problem, params, data, grads, tol)
        return None

    def _prefix(self, method: type[Method]) -> int | None:
        """PREFIX_ROWS when the method's float64 gradient on the first PREFIX_ROWS rows alone
        agrees where on all of them it does not: an error that enters past the first rows (a
        later chunk's rows, labels or mask sliced wrongly); None otherwise."""
        problem, params, data = self.truth.twin
        if not problem.batched or problem.rows(data) <= 2 * PREFIX_ROWS:
            return None
        rows = problem.rows_of(data, 0, PREFIX_ROWS)
        try:
            head = problem.with_rows(PREFIX_ROWS)
            s64 = method(head, params, rows)
            Full().bind(s64)()
            a = agr.compare(s64.grads(), reference_grad(head, params, rows), 1, self.truth.formula_tol)
        except Exception:
            return None
        return PREFIX_ROWS if a.within_tol else None

    def _check_function(self, method: type[Method], a: agr.Agreement) -> None:
        """The loss the Function returns on the whole data against the reference loss; and
        (w * loss).backward() against w times loss.backward()'s gradient."""
        probe = self.stepper(method)
        probe.clear()
        value = probe.evaluate(self.data, 1.0)
        plain = {k: v.detach().clone() for k, v in probe.grads().items()}
        probe.clear()
        probe.evaluate(self.data, GRAD_OUTPUT_WEIGHT)
        a.forward = agr.LossCheck(float(value), self.truth.reference.loss, self.truth.loss_tol)
        a.grad_output = agr.check_grad_output(probe.grads(), plain, GRAD_OUTPUT_WEIGHT, self.truth.tol)

    def items(self) -> float | None:
        """What the loss is a mean over in the family's data (None: no sample axis)."""
        if not self.problem.batched:
            return None
        return self.drive.items if self.pattern.needs_batch else items_of(self.problem, self.data)

    def min_bytes(self) -> int | None:
        return self.problem.min_bytes(torch.empty((), dtype=self.dtype).element_size())
