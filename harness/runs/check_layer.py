"""`harness.check_layer(function, reference, make, **grid)`: a layer's Function on its own, for a
user's pytest.

    def test_my_rmsnorm():
        harness.check_layer(
            lambda x, g: MyRMSNorm.apply(x, g, 1e-6),
            lambda x, g: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g,
            lambda gen, n, d: {"x": torch.randn(n, d, generator=gen, device=gen.device),
                               "g": torch.randn(d, generator=gen, device=gen.device)},
            n=[7, 64], d=32, dtypes=["float32", "bfloat16"],
        ).assert_ok()

`make(gen, **sizes)` returns the named inputs, float32, on `gen.device`; every floating input is
differentiated. A registered layer's name, or a Layer class, stands for the three. The keys are
the sizes (n, d, h, c: a list or one value), `dtypes`, `devices`, `methods` (function, autograd,
compiled), `seed`, `timing` (None or False: agreement only), `layouts` (those besides the
contiguous one; layouts.LAYOUTS by default), `rows` (the inputs whose leading dimension is rows,
folded as (B, T, ...); by default those whose first dimension is n). The result is
harness.check's CheckResult.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..cell import DEVICES, DTYPES, Cell
from ..gpu import local_devices
from ..layers.base import Layer, get_layer
from ..layers.family import run_layer_family
from ..layers.layouts import LAYOUTS
from ..layers.methods import LAYER_METHODS, layer_skip_reason
from ..measure import TimingOptions
from ..methods import get_method
from ..patterns import parse_pattern
from ..schema import COLUMNS, SIZE_NAMES
from .check import CheckResult, tell

DEFAULT_DTYPES = ["float64", "float32", "bfloat16"]


def check_layer(
    function: Callable | str | type[Layer],
    reference: Callable | None = None,
    make: Callable | None = None,
    *,
    dtypes: list[str] | str | None = None,
    devices: list[str] | str | None = None,
    methods: list[str] | str | None = None,
    seed: int = 0,
    timing: bool | dict | None = None,
    layouts: list[str] | None = None,
    rows: list[str] | None = None,
    **sizes: Any,
) -> CheckResult:
    """Judge `function` against float64 autograd of `reference` over the grid, in this process;
    `rows` names the inputs whose leading dimension is rows, when the first ones of length n are
    not them."""
    cls = _layer(function, reference, make, sizes, rows)
    name = cls.name
    grid = {s: _listed(sizes[s]) for s in SIZE_NAMES if s in sizes}
    missing = [s for s in cls.sizes if s not in grid]
    if missing:
        raise ValueError(f"harness.check_layer({name!r}): sizes: give {', '.join(missing)}")
    for s, values in grid.items():
        if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
            raise ValueError(f"harness.check_layer({name!r}): {s}: sizes are integers >= 1, got {sizes[s]!r}")
    dtypes_, methods_ = _listed(dtypes or DEFAULT_DTYPES), _listed(methods or ["function"])
    devices_ = [d for d in _listed(devices or ["auto"]) for d in (local_devices() if d == "auto" else [d])]
    for key, values, known in (
        ("dtypes", dtypes_, DTYPES),
        ("devices", devices_, DEVICES),
        ("methods", methods_, LAYER_METHODS),
        ("layouts", layouts or [], LAYOUTS),
    ):
        bad = [v for v in values if v not in known]
        if bad:
            raise ValueError(
                f"harness.check_layer({name!r}): {key}: unknown {', '.join(map(str, bad))}; "
                f"known: {', '.join(known)}"
            )
    options = _timing(name, timing)
    records, skipped = [], []
    names = list(grid)
    for values in itertools.product(*grid.values()):
        size = dict(zip(names, values))
        for dtype, device in itertools.product(dtypes_, devices_):
            family = []
            for method in methods_:
                cell = Cell(problem=name, method=method, dtype=dtype, device=device, seed=seed, **size)
                reason = (
                    f"no {device} device here" if device not in local_devices() else None
                ) or layer_skip_reason(cls, method, dtype, device, "full")
                if reason:
                    skipped.append((f"{name} {dtype} {method} on {device}", reason))
                else:
                    family.append(cell)
            if family:
                ran = run_layer_family(
                    family,
                    timing=options,
                    layer=cls,
                    layouts=tuple(LAYOUTS if layouts is None else layouts),
                )
                records.extend(ran)
    tell(records, _declared(cls, methods_))
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    result = CheckResult(name, pd.DataFrame(records, columns=[*COLUMNS, *extra]), skipped)
    for note, cells in result.noted.groupby("diagnosis").size().items():  # right, but worth knowing
        warnings.warn(WastedWork(f"check_layer({name!r}), {cells} cells: {note}"), stacklevel=2)
    return result


class WastedWork(UserWarning):
    """A layer's method that agrees but computes a gradient for an input that needs none."""


def _declared(cls: type[Layer], methods: list[str]) -> dict:
    """What a run manifest keeps of the check's layer and methods, for a listener's run."""
    return {
        "methods": {m: get_method(m).declared() for m in methods},
        "patterns": {"full": parse_pattern("full").declared()},
        "problems": {cls.name: cls.declared()},
    }


def _listed(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _timing(name: str, timing) -> TimingOptions:
    if not timing:
        return TimingOptions(rounds=0)
    if timing is True:
        return TimingOptions()
    try:
        return TimingOptions(**timing)
    except TypeError as exc:
        raise ValueError(f"harness.check_layer({name!r}): timing: {exc}") from None


def _layer(function, reference, make, sizes, rows=None) -> type[Layer]:
    """The Layer class a check runs: a registered one (by name or class), or one made of the
    three callables, named after the Function."""
    if isinstance(function, str) or (isinstance(function, type) and issubclass(function, Layer)):
        if reference is not None or make is not None:
            raise TypeError("harness.check_layer takes a layer, or a function with its reference and make")
        if isinstance(function, str):
            try:
                return get_layer(function)
            except KeyError as exc:
                raise ValueError(f"harness.check_layer({function!r}): {exc.args[0]}") from None
        return function  # registered or not: check_layer runs the class it is given
    if not callable(function) or not callable(reference) or not callable(make):
        raise TypeError("harness.check_layer(function, reference, make, **grid): three callables")
    taken = tuple(s for s in SIZE_NAMES if s in sizes)
    unknown = sorted(set(sizes) - set(SIZE_NAMES))
    if unknown:
        raise ValueError(
            f"harness.check_layer: unknown key {', '.join(unknown)}; sizes are {', '.join(SIZE_NAMES)}, "
            "the rest dtypes, devices, methods, seed, timing, layouts"
        )

    user_function, user_reference, user_make = function, reference, make

    class Checked(Layer):
        name = _name_of(user_function)
        sizes = taken
        rows = ()  # set below: the inputs whose leading dimension is n

        def make(self, gen):
            return user_make(gen, **{s: getattr(self, s) for s in taken})

        def function(self, **inputs):
            return user_function(**inputs)

        def reference(self, **inputs):
            return user_reference(**inputs)

    Checked.rows = tuple(rows) if rows is not None else _rows_of(Checked, taken)
    Checked.__qualname__ = Checked.__name__ = f"check_layer({Checked.name})"
    return Checked


def _name_of(function) -> str:
    owner = getattr(function, "__self__", None)  # MyFunction.apply: the Function's name
    if isinstance(owner, type):
        return owner.__name__
    name = getattr(function, "__name__", type(function).__name__)
    return "layer" if name == "<lambda>" else name


def _rows_of(cls: type[Layer], taken: tuple[str, ...]) -> tuple[str, ...]:
    """The inputs with n rows first, found by making them at a small n (n = 6, foldable as 2 x 3):
    they are folded as (B, T, ...); none when the layer takes no n."""
    if "n" not in taken:
        return ()
    import torch

    probe = {s: 6 if s == "n" else 5 for s in taken}
    try:
        made = cls(**probe).make(torch.Generator().manual_seed(0))
    except Exception:
        return ()
    return tuple(k for k, v in made.items() if v.dim() >= 1 and v.shape[0] == 6)
