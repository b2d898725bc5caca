"""A loaded config expanded into cells: the grid, its families, and what is skipped and why."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..cell import Cell
from ..layers import get_layer, is_layer
from ..methods import get_method
from ..patterns import parse_pattern
from ..problems import get_problem
from ..schema import SIZE_NAMES
from .config import Config, ConfigError, entry_field, lists_of

_FIRST_SIZES = ("n", "d", "h")


def family_seed(seed: int, problem: str, sizes: dict[str, int | None], data: str) -> int:
    """The data seed of one size of one problem: every dtype, method, pattern and mode of that
    size sees the same draw, and so does every run with the same config seed. Sizes added after
    seeds were first drawn (c) count only where given, so earlier problems keep their draws."""
    later = [sizes[s] for s in SIZE_NAMES if s not in _FIRST_SIZES and sizes.get(s) is not None]
    key = json.dumps([seed, problem, *(sizes.get(s) for s in _FIRST_SIZES), data, *later]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") >> 1  # fits any torch seed


@dataclass
class Grid:
    cells: list[Cell]
    skipped: list[tuple[Cell, str]]

    def declared(self) -> dict:
        """What the grid's methods, patterns and problems declare of themselves (capabilities,
        order and colour in reports): kept in the manifest, so reports read them from the run."""
        cells = self.cells + [c for c, _ in self.skipped]
        patterns = {parse_pattern(c.pattern) for c in cells}
        return {
            "methods": {m: get_method(m).declared() for m in sorted({c.method for c in cells})},
            "patterns": {p.name: p.declared() for p in sorted(patterns, key=lambda p: p.name)},
            "problems": {p: _declared(p) for p in sorted({c.problem for c in cells})},
        }

    @property
    def families(self) -> list[list[Cell]]:
        """Cells that differ only by method, in config order: the unit an executor runs."""
        groups: dict[tuple, list[Cell]] = {}
        for cell in self.cells:
            groups.setdefault(cell.family, []).append(cell)
        return list(groups.values())


def _declared(name: str) -> dict:
    return get_layer(name).declared() if is_layer(name) else get_problem(name).declared()


def resolve_device(
    spec: str, method: str, available: Sequence[str], layer: str | None = None
) -> tuple[str, str | None]:
    """(device, why it cannot run there or None) of one method under a config's device spec.
    `auto` is the best device of the workers that the method runs on: cuda before cpu. A
    layer's Function runs where the layer declares (function_devices), its reference anywhere."""
    if spec == "auto":
        if layer is None:
            runs_on = get_method(method).devices
        else:
            runs_on = get_layer(layer).function_devices if method == "function" else ("cuda", "cpu")
        usable = [d for d in ("cuda", "cpu") if d in available and d in runs_on]
        return (usable[0], None) if usable else (available[0], None)
    if spec not in available:
        return spec, f"no worker has a {spec} device here (workers: {', '.join(available)})"
    return spec, None


def expand(config: Config, available: Sequence[str] = ("cpu",), device: str | None = None) -> Grid:
    """Every cell of the config, each on its device, and the combinations that cannot run, with
    why. `available` are the device types the workers have; `device`, when given, replaces the
    config's `devices` lists (the command's --device)."""
    top = config.experiment
    cells: dict[str, Cell] = {}
    skipped: dict[str, tuple[Cell, str]] = {}
    sections = [("problems", name, entries) for name, entries in top.problems.items()]
    sections += [("layers", name, entries) for name, entries in top.layers.items()]
    for section, name, entries in sections:
        layer = name if section == "layers" else None
        for i, entry in enumerate(entries):
            lists = lists_of(config, entry)
            where = entry_field(config, name, i, section)
            sizes = [getattr(entry, s) or [None] for s in SIZE_NAMES]
            data = getattr(entry, "data", "random")
            for values in itertools.product(*sizes):
                size = dict(zip(SIZE_NAMES, values))
                if layer is None:
                    _check_k(config, where, lists["patterns"], get_problem(name), size["n"])
                seed = family_seed(top.seed, name, size, data)
                specs = [device] if device else lists["devices"]
                for mode, dtype, pattern, spec, method in itertools.product(
                    lists["modes"], lists["dtypes"], lists["patterns"], specs, lists["methods"]
                ):
                    train = mode == "train"
                    on, unavailable = resolve_device(spec, method, available, layer)
                    cell = Cell(
                        problem=name,
                        method=method,
                        pattern=pattern,
                        dtype=dtype,
                        device=on,
                        **size,
                        mode=mode,
                        seed=seed,
                        data=data,
                        steps=entry.steps if train else None,
                        lr=entry.lr if train else None,
                    )
                    try:
                        reason = unavailable or cell.skip_reason()
                    except ValueError as exc:
                        raise ConfigError(config.path, where, exc.args[0]) from None
                    if reason:
                        skipped.setdefault(cell.cell_id, (cell, reason))
                    else:
                        cells.setdefault(cell.cell_id, cell)  # two entries may name one cell
    if not cells:
        first = next(iter(skipped.values()), None)
        why = f": all {len(skipped)} combinations are skipped, e.g. {first[1]}" if first else ""
        raise ConfigError(config.path, "problems", f"empty grid{why}")
    return Grid(list(cells.values()), [s for cid, s in skipped.items() if cid not in cells])


def _check_k(config: Config, where: str, patterns: list[str], problem, n: int | None) -> None:
    # a pattern that splits samples into k micro-batches has no meaning with fewer than k samples
    for spec in patterns:
        pattern = parse_pattern(spec)
        if pattern.needs_batch and problem.batched and n is not None and pattern.k > n:
            raise ConfigError(config.path, f"{where}.n", f"{spec} needs k <= n, got n={n}")
