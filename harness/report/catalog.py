"""What a report knows of a run's methods, patterns and problems: what each declared of itself.

A run's manifest keeps the declarations of the methods, patterns and problems it ran (their
order and colour in reports, which methods are hand-written, which is the baseline, a problem's
expected cheap-gradient ratio), so a run directory renders the same anywhere, with or without
its plugins. A run made before manifests kept them is described by what is registered in this
process. The report makes its run's catalog the current one while it renders
(`with catalog.active(...)`), as matplotlib's rc_context does for styles.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# colours for methods that declare none, in the order they appear
SPARE_COLORS = ["#e377c2", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"]
DEFAULT_ORDER = 100


@dataclass(frozen=True)
class Catalog:
    methods: dict[str, dict] = field(default_factory=dict)
    patterns: dict[str, dict] = field(default_factory=dict)
    problems: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def registered(cls) -> Catalog:
        """Everything registered in this process (built-ins, and plugins imported here)."""
        from ..methods import METHODS
        from ..patterns import PATTERNS
        from ..problems.base import PROBLEMS

        return cls(
            methods={name: m.declared() for name, m in METHODS.items()},
            patterns={name: p.declared() for name, p in PATTERNS.items()},
            problems={name: p.declared() for name, p in PROBLEMS.items()},
        )

    @classmethod
    def of_run(cls, manifest: dict) -> Catalog:
        """The run's own declarations, completed by what is registered here where the manifest
        declares none (a run made before manifests kept them): importing the registries imports
        torch, which a report of a run that declares them does without."""
        declared = all(manifest.get(k) for k in ("methods", "patterns", "problems"))
        here = cls() if declared else cls.registered()
        return cls(
            methods={**here.methods, **(manifest.get("methods") or {})},
            patterns={**here.patterns, **(manifest.get("patterns") or {})},
            problems={**here.problems, **(manifest.get("problems") or {})},
        )

    # -- methods ---------------------------------------------------------------------------------
    def method(self, name: str) -> dict:
        return self.methods.get(name) or {}

    def method_order(self, names: Iterable) -> list[str]:
        """The distinct names given, by their declared order, then by name."""
        present = {n for n in names if isinstance(n, str)}
        return sorted(present, key=lambda m: (self.method(m).get("order", DEFAULT_ORDER), m))

    def hand_written(self, name: str) -> bool:
        """Hand-written methods' overhead is not autograd's; unknown methods count as autograd."""
        return bool(self.method(name).get("hand_written", False))

    def baseline(self, names: Iterable | None = None) -> str | None:
        """The method every `vs_manual` ratio is paired with: among `names`, or declared at all."""
        pool = self.method_order(names) if names is not None else self.method_order(self.methods)
        return next((m for m in pool if self.method(m).get("baseline")), None)

    def style(self, name: str, names: Iterable) -> dict:
        """Matplotlib keywords of a method's line: its colour and marker, the baseline on top."""
        info = self.method(name)
        color = info.get("color")
        if not color:
            colorless = [m for m in self.method_order(names) if not self.method(m).get("color")]
            i = colorless.index(name) if name in colorless else 0
            color = SPARE_COLORS[i % len(SPARE_COLORS)]
        return {
            "color": color,
            "marker": info.get("marker") or "o",
            "label": name,
            "zorder": 3 if info.get("baseline") else 2,
        }

    # -- patterns and problems -------------------------------------------------------------------
    def pattern_key(self, spec: str) -> tuple:
        """Sort key of a pattern spec ('microbatch:4'): declared order, then k."""
        name, _, k = str(spec).partition(":")
        return (self.patterns.get(name, {}).get("order", DEFAULT_ORDER), name, int(k) if k.isdigit() else 0)

    def expected_cost_ratio(self, problem: str) -> tuple[float, str] | None:
        """(ratio, why) that a problem declares for a gradient over its forward, if any."""
        info = self.problems.get(problem) or {}
        ratio = info.get("expected_cost_ratio")
        return (ratio, info.get("expected_cost_ratio_why") or "") if ratio else None


_CURRENT: contextvars.ContextVar[Catalog | None] = contextvars.ContextVar("catalog", default=None)


def current() -> Catalog:
    """The catalog of the run being rendered, or of what is registered here."""
    return _CURRENT.get() or Catalog.registered()


@contextlib.contextmanager
def active(catalog: Catalog) -> Iterator[Catalog]:
    token = _CURRENT.set(catalog)
    try:
        yield catalog
    finally:
        _CURRENT.reset(token)
