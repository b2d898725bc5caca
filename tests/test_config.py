"""Configs: loading, validation errors in one line, grid expansion, seeds, hashes."""

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runs.config import ConfigError, load_config
from harness.runs.grid import expand, family_seed

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "experiments").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, device: str = "cpu") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        expand(load_config(path), (device,))
    return info.value


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_expand(path):
    config = load_config(path)
    gpu = path.stem == "full" or "cuda" in config.experiment.devices  # a GPU cluster's, or one GPU's
    grid = expand(config, ("cpu", "cuda") if gpu else ("cpu",))
    assert grid.cells
    assert len({c.cell_id for c in grid.cells}) == len(grid.cells)


def test_seed_config_is_the_post():
    grid = expand(load_config(ROOT / "experiments/seed.yaml"))
    by = {(c.problem, c.method): c for c in grid.cells}
    assert by["chain", "manual"].n == 3 and by["chain", "manual"].data == "post"
    assert (by["scalar", "autograd"].steps, by["scalar", "autograd"].lr) == (102, 0.01)
    assert by["weightsum", "manual"].pattern == "zero" and by["weightsum", "manual"].steps == 3
    assert (by["linear1d_post", "numpy"].steps, by["linear1d", "autograd"].steps) == (20, 50)
    assert by["chain", "manual"].mode == "gradient" and by["chain", "manual"].steps is None


def test_family_seed_depends_on_problem_sizes_and_data_only(tmp_path):
    path = write(
        tmp_path,
        "problems: {linear: {n: [8, 16], d: [2]}}\nmethods: [manual, autograd]\n"
        "patterns: [full, nozero:2]\ndtypes: [float32, float64]\n",
    )
    cells = expand(load_config(path)).cells
    seeds = {n: {c.seed for c in cells if c.n == n} for n in (8, 16)}
    assert len(seeds[8]) == len(seeds[16]) == 1  # every dtype, method and pattern of a size
    assert seeds[8] != seeds[16]
    assert seeds[8] == {family_seed(0, "linear", {"n": 8, "d": 2}, "random")}  # the same in every run
    assert family_seed(1, "linear", {"n": 8, "d": 2}, "random") not in seeds[8]


def test_families_differ_only_by_method(tmp_path):
    path = write(tmp_path, "problems: {linear: {n: 8, d: 2}}\nmethods: [manual, autograd, func]\n")
    (family,) = expand(load_config(path)).families
    assert [c.method for c in family] == ["manual", "autograd", "func"]


def test_skipped_combinations_say_why(tmp_path):
    path = write(
        tmp_path,
        "problems: {chain: {n: 8}, linear: {n: 8, d: 2}}\nmethods: [manual, numpy, autograd]\n"
        "patterns: [full, microbatch:2, retain:2]\n",
    )
    grid = expand(load_config(path), ("cpu", "cuda"), device="cuda")
    reasons = {(c.problem, c.method, c.pattern): why for c, why in grid.skipped}
    assert "CPU only" in reasons["linear", "numpy", "full"]
    assert "no sample axis" in reasons["chain", "manual", "microbatch:2"]
    assert "retained" in reasons["linear", "manual", "retain:2"]
    assert ("linear", "autograd", "retain:2") not in reasons


def test_two_entries_of_one_problem_merge_into_families(tmp_path):
    path = write(
        tmp_path,
        "problems:\n  linear:\n    - {n: [8, 16], d: 2}\n    - {n: 16, d: 2, methods: [func]}\n",
    )
    families = expand(load_config(path)).families
    assert [[c.method for c in f] for f in families] == [
        ["manual", "autograd"],
        ["manual", "autograd", "func"],
    ]


def test_hash_is_of_the_resolved_config_not_its_place(tmp_path):
    a = load_config(ROOT / "experiments/seed.yaml")
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    b = load_config(tmp_path / "experiments/seed.yaml")
    assert a.hash == b.hash  # same plugin contents, another path
    (tmp_path / "experiments/seed.yaml").write_text(
        (tmp_path / "experiments/seed.yaml").read_text().replace("seed: 0", "seed: 1")
    )
    assert load_config(tmp_path / "experiments/seed.yaml").hash != a.hash
    # a default written out is the same config
    write(tmp_path, "problems: {chain: {n: 3}}\n", "p.yaml")
    write(tmp_path, "name: p\nproblems: {chain: {n: 3, data: random}}\nmodes: [gradient]\n", "q.yaml")
    p, q = load_config(tmp_path / "p.yaml"), load_config(tmp_path / "q.yaml")
    assert p.hash == q.hash and p.name == "p"


def test_yaml_never_executes_anything(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f'problems: !!python/object/apply:os.system ["touch {marker}"]\n')
    err = error_of(path)
    assert not marker.exists()
    assert str(err).startswith(f"{path}: line 1: invalid YAML")


GOOD = "problems: {linear: {n: [8], d: [2]}}\n"

BAD = [
    # (yaml, field, words in the message)
    ("problems: {linear: {n: [8], d: [2]\n", "line 2", "invalid YAML"),
    ("problems: {chain: {n: 3}}\nproblems: {chain: {n: 4}}\n", "line 2", "given twice"),
    ("- a\n- b\n", "", "expected a mapping"),
    (GOOD + "method: [manual]\n", "method", "unknown key; known: name, seed, problems"),
    ("problems: {linear: {n: [8], d: [2], size: 3}}\n", "problems.linear.size", "unknown key"),
    (GOOD + "timing: {min_run_time: 1}\n", "timing.min_run_time", "unknown key"),
    ("problems: {lineer: {n: [8]}}\n", "problems.lineer", "unknown problem 'lineer'"),
    (GOOD + "methods: [manual, autograd, magic]\n", "methods[2]", "unknown method 'magic'"),
    (GOOD + "patterns: [full, sideways]\n", "patterns[1]", "unknown pattern 'sideways'"),
    (GOOD + "dtypes: [float32, float8]\n", "dtypes[1]", "unknown dtype 'float8'"),
    (GOOD + "modes: [inference]\n", "modes[0]", "unknown mode"),
    ("problems: {linear: {n: [8, 0], d: [2]}}\n", "problems.linear.n", "sizes must be >= 1, got 0"),
    ("problems: {linear: {n: [8], d: [-3]}}\n", "problems.linear.d", "sizes must be >= 1, got -3"),
    ("problems: {linear: {n: [8.5], d: [2]}}\n", "problems.linear.n", "sizes are integers"),
    ("problems: {linear: [{n: 8, d: 2}, {n: 0, d: 2}]}\n", "problems.linear[1].n", ">= 1"),
    (GOOD + "patterns: [microbatch:0]\n", "patterns[0]", "integer k >= 1"),
    ("problems: {linear: {n: [8], d: [2], patterns: [uneven:x]}}\n", "problems.linear.patterns[0]", "k >= 1"),
    ("problems: {linear: {n: [8, 3], d: [2]}}\npatterns: [microbatch:4]\n", "problems.linear.n", "k <= n"),
    ("problems: {}\n", "problems", "empty grid"),
    (GOOD + "methods: []\n", "methods", "empty grid"),
    ("problems: {linear: {n: [], d: [2]}}\n", "problems.linear.n", "empty size list"),
    ("problems: {chain: {n: [4]}}\npatterns: [microbatch:2]\n", "problems", "empty grid: all 2 combinations"),
    ("problems: {linear: {n: [8]}}\n", "problems.linear.d", "missing"),
    ("problems: {chain: {n: [8], d: [2]}}\n", "problems.chain.d", "takes n"),
    ("problems: {chain: {n: [3], data: blog}}\n", "problems.chain.data", "data sets random, post"),
    ("problems: {scalar: {modes: [train]}}\n", "problems.scalar.steps", "train mode needs steps and lr"),
    ("problems: {scalar: {steps: 3, lr: 0.1}}\n", "problems.scalar.steps", "not in modes"),
    ("problems: {scalar: {modes: [train], steps: 0, lr: 0.1}}\n", "problems.scalar.steps", "greater than"),
    (GOOD + "seed: many\n", "seed", "integer"),
    (GOOD + "name: a/b\n", "name", "names a directory"),
    (GOOD + "plugins: [nowhere.py]\n", "plugins[0]", "does not exist"),
    (GOOD + "plugins: [broken.py]\n", "plugins[0]", "failed to import"),
    (GOOD + "plugins: [raising.py]\n", "plugins[0]", "RuntimeError: no GPU today"),
]


@pytest.mark.parametrize(("text", "field", "words"), BAD, ids=[b[1] or b[2] for b in BAD])
def test_a_bad_config_is_one_line_naming_file_and_field(tmp_path, text, field, words):
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "raising.py").write_text("raise RuntimeError('no GPU today\\nreally')\n")
    path = write(tmp_path, text)
    err = str(error_of(path))
    assert "\n" not in err
    assert err.startswith(f"{path}: {field}: " if field else f"{path}: "), err
    assert words in err, err


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_config(tmp_path / "nope.yaml")


def test_plugin_paths_are_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/mine.py").write_text(
        "from harness.problems.chain import Chain\nfrom harness import register_problem\n\n"
        "@register_problem\nclass MyChain(Chain):\n    name = 'my_chain_for_config_test'\n"
    )
    path = write(tmp_path, "plugins: [sub/mine.py]\nproblems: {my_chain_for_config_test: {n: 3}}\n")
    config = load_config(path)
    assert config.plugin_files == [(tmp_path / "sub/mine.py").resolve()]
    assert {c.problem for c in expand(config).cells} == {"my_chain_for_config_test"}


def test_sizes_accept_scientific_notation(tmp_path):
    path = write(tmp_path, "problems: {linear: {n: [1e3, 1.0e4, 100_000], d: 2}}\n")
    assert sorted({c.n for c in expand(load_config(path)).cells}) == [1000, 10000, 100000]


SIZES = st.lists(st.integers(1, 64), min_size=1, max_size=3, unique=True)


def subsets(*names):
    return st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True)


@settings(max_examples=40, deadline=None)
@given(
    n=SIZES,
    d=SIZES,
    methods=subsets("manual", "autograd", "autograd_grad", "func", "numpy"),
    patterns=subsets("full", "zero", "microbatch:2", "uneven:3", "nozero:2", "retain:2"),
    dtypes=subsets("float32", "float64", "bfloat16"),
    seed=st.integers(0, 2**31),
)
def test_every_combination_is_a_cell_or_a_skip_with_a_reason(
    tmp_path_factory, n, d, methods, patterns, dtypes, seed
):
    n = [max(x, 3) for x in n]  # k <= n for every k above: no config error
    n = sorted(set(n))
    text = (
        f"seed: {seed}\nproblems: {{linear: {{n: {n}, d: {d}}}}}\n"
        f"methods: {methods}\npatterns: {patterns}\ndtypes: {dtypes}\n"
    )
    path = write(tmp_path_factory.mktemp("cfg"), text.replace("'", ""))
    try:
        grid = expand(load_config(path))
    except ConfigError as exc:
        assert "empty grid" in str(exc)
        return
    combos = len(n) * len(d) * len(methods) * len(patterns) * len(dtypes)
    assert len(grid.cells) + len(grid.skipped) == combos
    assert all(why for _, why in grid.skipped)
    for family in grid.families:
        assert len({c.family for c in family}) == 1 and len({c.method for c in family}) == len(family)
    again = expand(load_config(path))
    assert [c.cell_id for c in again.cells] == [c.cell_id for c in grid.cells]
    for a, b in itertools.pairwise(grid.cells):
        assert a.cell_id != b.cell_id
