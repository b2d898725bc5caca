"""DESIGN.md's layers, read from the source: imports point down (cli -> runs -> report... never
runs -> report), and the core knows nothing of Ray, files' formats, pandas or plots."""

import ast
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports in functions too), as absolute
    dotted names."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module, *(f"{module}.{a.name}" for a in node.names)}
    return names


def test_the_reading_of_imports_sees_a_lazy_relative_import():
    cli = imported(ROOT / "cli.py")
    assert "harness.report.bracket" in cli and "harness.runs.crossover" in cli


def test_runs_never_import_report():
    reaching_up = {
        str(path.relative_to(ROOT.parent)): sorted(
            m for m in imported(path) if m.startswith("harness.report")
        )
        for path in (ROOT / "runs").glob("*.py")
    }
    assert {f: m for f, m in reaching_up.items() if m} == {}


def test_the_core_imports_no_ray_pandas_or_plots():
    core = [
        *ROOT.glob("*.py"),
        *(p for d in ("problems", "methods", "layers") for p in (ROOT / d).glob("*.py")),
    ]
    # cli.py is the command, on top; __init__.py the package's face (harness.load, harness.check)
    core = [p for p in core if p.name not in ("cli.py", "__init__.py")]
    assert len(core) > 20
    banned = ("ray", "pandas", "matplotlib")
    upper = ("harness.runs", "harness.report")
    found = {
        str(p.relative_to(ROOT.parent)): sorted(
            m for m in imported(p) if m.split(".")[0] in banned or m.startswith(upper)
        )
        for p in core
    }
    assert {f: m for f, m in found.items() if m} == {}
