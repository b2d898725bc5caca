"""Experiment configs: YAML loaded safely, validated by pydantic, expanded into cells.

A config names problems, each with its own size grid, and crosses them with methods, patterns,
dtypes and modes. A problem entry may override those lists where one experiment needs other
methods than the rest (the seed post's numpy descent), and may be a list of entries when one
problem needs two grids. Every mistake a user can make is a `ConfigError` whose text is one line
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from ..cell import DEVICES, DTYPES, MODES
from ..layers import get_layer, is_layer
from ..layers.methods import LAYER_METHODS as LAYER_METHOD_NAMES
from ..layers.methods import get_layer_method
from ..measure import TimingOptions
from ..methods import get_method, method_names
from ..patterns import parse_pattern
from ..plugins import PluginError, load_plugin
from ..problems import get_problem
from ..schema import SIZE_NAMES
from .yamlfile import ConfigError, read_yaml

# --- models ---------------------------------------------------------------------------------


def _as_sizes(value: Any) -> list[int] | None:
    """[1000, 1e5, '1e8'] -> ints; a single size may stand without brackets."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("empty size list: give at least one size")
    sizes = []
    for v in values:
        if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.\d*)?[eE]\d+\s*", v):
            v = float(v)  # YAML 1.1 reads 1e8 as a string
        if isinstance(v, float) and math.isfinite(v) and v == int(v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"sizes are integers, got {v!r}")
        if v < 1:
            raise ValueError(f"sizes must be >= 1, got {v}")
        sizes.append(v)
    return sizes


Sizes = Annotated[list[int] | None, BeforeValidator(_as_sizes)]
Names = list[str] | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timing(_Model):
    """harness.measure.TimingOptions, field for field."""

    min_run_time_s: float = Field(TimingOptions.min_run_time_s, gt=0)
    rounds: int = Field(TimingOptions.rounds, ge=0)  # 0: check agreement, time nothing
    warmup: int = Field(TimingOptions.warmup, ge=1)
    flush_l2: bool = TimingOptions.flush_l2  # zero 256 MB before every timed call: cold-cache times
    profile: bool = TimingOptions.profile  # one profiled step per method after the timing

    def options(self) -> TimingOptions:
        return TimingOptions(**self.model_dump())


class ProblemGrid(_Model):
    """One problem's sizes and data set; lists left out take the config's top-level ones."""

    n: Sizes = None
    d: Sizes = None
    h: Sizes = None
    c: Sizes = None
    data: str = "random"
    methods: Names = None
    patterns: Names = None
    dtypes: Names = None
    modes: Names = None
    devices: Names = None
    steps: int | None = Field(None, ge=1)  # train mode
    lr: float | None = Field(None, gt=0)  # train mode


class LayerGrid(_Model):
    """One layer's sizes (harness.layers); lists left out take the config's top-level dtypes and
    devices, and the methods LAYER_METHODS. A layer runs in the pattern full and mode gradient."""

    n: Sizes = None
    d: Sizes = None
    h: Sizes = None
    c: Sizes = None
    methods: Names = None
    dtypes: Names = None
    devices: Names = None


# a layer's methods unless its entry names them: its Function and its reference differentiated;
# `compiled` (the reference under torch.compile) compiles once per shape and dtype, so it is asked for
LAYER_METHODS = ["function", "autograd"]


def _entries(value: Any) -> Any:
    # `linear: {n: [..]}` is one entry; `linear: [{..}, {..}]` several; `scalar:` none needed
    if isinstance(value, dict):
        return {k: ([{}] if v is None else v if isinstance(v, list) else [v]) for k, v in value.items()}
    return value


class Experiment(_Model):
    name: str | None = None  # defaults to the file's stem
    seed: int = 0
    problems: Annotated[dict[str, list[ProblemGrid]], BeforeValidator(_entries)] = {}
    # layers (a Function beside its reference, harness.layers) beside the problems
    layers: Annotated[dict[str, list[LayerGrid]], BeforeValidator(_entries)] = {}
    methods: list[str] = ["manual", "autograd"]
    patterns: list[str] = ["full"]
    dtypes: list[str] = ["float32"]
    modes: list[str] = ["gradient"]
    # cpu, cuda, or auto: cuda where the workers have a GPU, else cpu; a method that runs on the
    # CPU only (numpy) runs there in a GPU run
    devices: list[str] = ["auto"]
    timing: Timing = Timing()
    plugins: list[str] = []  # paths relative to the config file
    cell_timeout_s: float = Field(600.0, gt=0)  # per cell, enforced by executors that can
    threads: int | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"a name is letters, digits, '_', '.', '-' (it names a directory), got {v!r}")
        return v


_KNOWN = {
    "timing": list(Timing.model_fields),
    "problems": list(ProblemGrid.model_fields),
    "layers": list(LayerGrid.model_fields),
    None: list(Experiment.model_fields),
}


def _from_pydantic(path: Path, raw: dict, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = list(err["loc"])
    # a problem given as one mapping is shown without the list index it was wrapped in
    section = raw.get(loc[0]) if loc and loc[0] in ("problems", "layers") else None
    if len(loc) >= 3 and loc[2] == 0 and isinstance(section, dict) and not isinstance(section[loc[1]], list):
        del loc[2]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if err["type"] == "extra_forbidden":
        known = _KNOWN.get(loc[0] if len(loc) > 1 else None, _KNOWN[None])
        return ConfigError(path, where, f"unknown key; known: {', '.join(known)}")
    return ConfigError(path, where, err["msg"].removeprefix("Value error, "))


# --- a loaded config ------------------------------------------------------------------------


@dataclass
class Config:
    path: Path
    experiment: Experiment
    plugin_files: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.experiment.name or self.path.stem

    def timing(self) -> TimingOptions:
        return self.experiment.timing.options()

    def resolved(self) -> dict:
        """The config with every default filled in: what config.yaml of a run holds."""
        data = self.experiment.model_dump(mode="json")
        data["name"] = self.name
        data["plugins"] = [str(p) for p in self.plugin_files]
        data["problems"] = {}
        for name, entries in self.experiment.problems.items():
            dumped = [e.model_dump(mode="json", exclude_none=True, exclude_defaults=True) for e in entries]
            data["problems"][name] = dumped[0] if len(dumped) == 1 else dumped
        if self.experiment.layers:
            data["layers"] = {}
            for name, entries in self.experiment.layers.items():
                dumped = [e.model_dump(mode="json", exclude_none=True) for e in entries]
                data["layers"][name] = dumped[0] if len(dumped) == 1 else dumped
        else:  # a config without layers keeps the hash it had before they existed
            del data["layers"]
        return data

    @property
    def hash(self) -> str:
        """Short hash of the resolved config; plugins count by their contents, not their path,
        so the same files give the same hash from any checkout."""
        data = self.resolved()
        data["plugins"] = [hashlib.sha256(p.read_bytes()).hexdigest() for p in self.plugin_files]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def load_config(path: str | Path) -> Config:
    """Read, validate and load the plugins of a config; raises ConfigError."""
    path = Path(path)
    return config_of(read_yaml(path), path)


def config_of(raw: Any, path: str | Path) -> Config:
    """A config from its parsed keys, validated as a file's would be; `path` names it in errors
    and is where its plugins' paths are relative to."""
    path = Path(path)
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise ConfigError(path, "", f"expected a mapping of keys (name, problems, ...), got {got}")
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise _from_pydantic(path, raw, exc) from None
    plugin_files = []
    for i, plugin in enumerate(experiment.plugins):
        file = (path.parent / plugin).resolve()
        try:
            load_plugin(file)  # registers its problems before names are checked
        except PluginError as exc:
            raise ConfigError(path, f"plugins[{i}]", str(exc)) from None
        plugin_files.append(file)
    config = Config(path, experiment, plugin_files)
    _check_names(config)
    return config


def entry_field(config: Config, name: str, i: int, section: str = "problems") -> str:
    entries = getattr(config.experiment, section)[name]
    return f"{section}.{name}" if len(entries) == 1 else f"{section}.{name}[{i}]"


LISTS = ("methods", "patterns", "dtypes", "modes", "devices")  # top-level lists an entry may override


def lists_of(config: Config, entry: ProblemGrid | LayerGrid) -> dict[str, list[str]]:
    """An entry's lists, its own or the config's; a layer's methods are LAYER_METHODS unless given,
    its pattern full and its mode gradient."""
    top = config.experiment
    lists = {
        key: getattr(entry, key, None) if getattr(entry, key, None) is not None else getattr(top, key)
        for key in LISTS
    }
    if isinstance(entry, LayerGrid):
        lists.update(methods=entry.methods or LAYER_METHODS, patterns=["full"], modes=["gradient"])
    return lists


def _check_names(config: Config) -> None:
    path, top = config.path, config.experiment
    known = {
        "methods": (method_names(), get_method),
        "dtypes": (list(DTYPES), None),
        "modes": (list(MODES), None),
        "devices": (["auto", *DEVICES], None),
    }
    for key in LISTS:
        _check_list(path, key, getattr(top, key), known)
    if not top.problems and not top.layers:
        raise ConfigError(path, "problems", "empty grid: no problems (nor layers)")
    _check_layers(config)
    for name, entries in top.problems.items():
        if is_layer(name):
            raise ConfigError(path, f"problems.{name}", f"{name!r} is a layer: name it under layers")
        try:
            problem = get_problem(name)
        except KeyError as exc:
            raise ConfigError(path, f"problems.{name}", exc.args[0]) from None
        if not entries:
            raise ConfigError(path, f"problems.{name}", "empty grid: an empty list of entries")
        for i, entry in enumerate(entries):
            where = entry_field(config, name, i)
            for key in LISTS:
                if getattr(entry, key) is not None:
                    _check_list(path, f"{where}.{key}", getattr(entry, key), known)
            _check_sizes(path, where, entry, f"problem {name!r}", problem.sizes)
            if entry.data not in problem.datasets:
                raise ConfigError(
                    path, f"{where}.data", f"problem {name!r} has data sets {', '.join(problem.datasets)}"
                )
            trains = "train" in lists_of(config, entry)["modes"]
            if trains and (entry.steps is None or entry.lr is None):
                raise ConfigError(path, f"{where}.steps", "train mode needs steps and lr")
            if not trains and (entry.steps is not None or entry.lr is not None):
                raise ConfigError(path, f"{where}.steps", "steps and lr are for train mode, not in modes")


def _check_layers(config: Config) -> None:
    path, top = config.path, config.experiment
    known = {"dtypes": (list(DTYPES), None), "devices": (["auto", *DEVICES], None)}
    known["methods"] = (list(LAYER_METHOD_NAMES), get_layer_method)
    for name, entries in top.layers.items():
        if name in top.problems:
            raise ConfigError(path, f"layers.{name}", "named under problems too: one section each")
        try:
            layer = get_layer(name)
        except KeyError as exc:
            raise ConfigError(path, f"layers.{name}", exc.args[0]) from None
        if not entries:
            raise ConfigError(path, f"layers.{name}", "empty grid: an empty list of entries")
        for i, entry in enumerate(entries):
            where = entry_field(config, name, i, "layers")
            for key in ("methods", "dtypes", "devices"):
                if getattr(entry, key) is not None:
                    _check_list(path, f"{where}.{key}", getattr(entry, key), known)
            _check_sizes(path, where, entry, f"layer {name!r}", layer.sizes)


def _check_sizes(path: Path, where: str, entry, what: str, sizes: tuple[str, ...]) -> None:
    """An entry gives exactly the sizes `what` (a problem, a layer) takes."""
    for size in SIZE_NAMES:
        given = getattr(entry, size) is not None
        if given and size not in sizes:
            raise ConfigError(path, f"{where}.{size}", f"{what} takes {', '.join(sizes) or 'no sizes'}")
        if not given and size in sizes:
            raise ConfigError(path, f"{where}.{size}", f"missing: {what} needs {size}")


def _check_list(path: Path, where: str, values: list[str], known: dict) -> None:
    kind = where.rsplit(".", 1)[-1]
    if not values:
        raise ConfigError(path, where, f"empty grid: no {kind}")
    for i, value in enumerate(values):
        try:
            if kind == "patterns":
                parse_pattern(value)
            elif known[kind][1]:
                known[kind][1](value)
            elif value not in known[kind][0]:
                raise ValueError(f"unknown {kind[:-1]} {value!r}; known: {', '.join(known[kind][0])}")
        except (KeyError, ValueError) as exc:
            raise ConfigError(path, f"{where}[{i}]", exc.args[0]) from None
