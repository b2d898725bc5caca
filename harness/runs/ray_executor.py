"""The Ray executor: one actor per GPU (or per CPU slot), a queue on `ray.wait`, retries, time limits.

Each actor holds one device and runs whole families on it (`run_family`), so a family's methods
stay paired. The driver keeps one or two families in flight per actor and hands each family's
records to `on_records` as soon as it returns. Ray retries nothing (`max_restarts=0`,
`max_task_retries=0`): the driver counts attempts itself, because only it knows which family was
running when an actor died.

What happens on each fault is in ray_queue.py; the actors themselves are in ray_worker.py.

An actor runs the families it is given in order, so the family running on it is always the
oldest one in flight there: that is the one charged with a death or a timeout, and its clock
starts when the one before it returned. (An actor that dies within a moment of finishing a
family can take that family's reply with it; the finished family is then the one charged, and
is run again.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
import ray.exceptions as rex

from ..cell import Cell
from ..measure import TimingOptions
from .executor import OnRecords
from .ray_queue import RunQueue, reason_of
from .ray_worker import Plan, actor_class, plan_workers

REPO_ROOT = Path(__file__).resolve().parents[2]
# what `working_dir` never ships: results and environments can be gigabytes
SHIP_EXCLUDES = ["results/", ".venv/", ".git/", "*.parquet", "*.jsonl", "__pycache__/"]


# --- the driver -------------------------------------------------------------------------------


@dataclass
class _Slot:
    """Worker number `index`: its current actor (replaced when it dies) and what it has in flight."""

    index: int
    actor: object = None
    start_ref: ray.ObjectRef | None = None
    start_began: float = 0.0
    failed_starts: int = 0
    info: dict | None = None  # from Worker.start, once started
    tasks: deque = field(default_factory=deque)
    retired: str | None = None  # why no actor is started here any more

    @property
    def ready(self) -> bool:
        return self.info is not None and self.retired is None


@dataclass
class RunStats:
    """What the last `run` cost: `busy_s` is time inside run_family on the workers."""

    families: int = 0
    cells: int = 0
    wall_s: float = 0.0
    busy_s: float = 0.0
    deaths: int = 0
    timeouts: int = 0
    replaced: int = 0


class RayExecutor:
    """Families on Ray actors, one per GPU or CPU slot. See the module docstring for faults.

    address: "local" (or None) starts a fresh local Ray instance, shut down at `close`; "auto" or
        "ray://host:10001" joins a running cluster. If Ray is already initialised in this process
        (tests), that instance is used and left running.
    num_gpus, num_cpus: resources of a fresh local instance (logical GPUs on a CPU machine run on
        the CPU but are pinned and recorded like real ones); None lets Ray detect them.
    workers: CPU actors when the cluster has no GPU (default one per CPU); with GPUs, at most
        this many GPU actors. threads: torch threads per actor (default its share of the CPUs).
    use_gpus: None: one actor per GPU where the cluster has any; False: CPU actors regardless.
    cell_timeout_s: a family may run cell_timeout_s x (its number of cells) before its actor is
        killed. max_attempts: runs of a family whose actor dies, in all.
    plugins: plugin files every actor imports; the ones this process has loaded with
        `harness.plugins.load_plugin` (the config's) are added at each run.
    working_dir: code shipped to the cluster's workers (Ray's runtime_env working_dir). "auto":
        the repository this harness lives in, when joining a cluster from outside a Ray job (a
        `ray job submit --working-dir .` job has shipped it already); None: nothing, the nodes
        have the harness installed; or a path.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = "local",
        num_gpus: int | None = None,
        workers: int | None = None,
        threads: int | None = None,
        cell_timeout_s: float = 600.0,
        max_attempts: int = 3,
        plugins: Sequence[str | Path] = (),
        working_dir: str | Path | None = "auto",
        num_cpus: int | None = None,
        use_gpus: bool | None = None,
        in_flight: int = 2,
        start_timeout_s: float = 300.0,
        log_to_driver: bool = False,
    ):
        self.address = address or "local"
        self._local = self.address == "local"
        if not self._local and (num_gpus is not None or num_cpus is not None):
            raise ValueError(
                "--num-gpus declares logical GPUs of a fresh local Ray instance; "
                f"the cluster at {self.address} reports its own"
            )
        if cell_timeout_s <= 0 or max_attempts < 1 or in_flight < 1:
            raise ValueError("cell_timeout_s must be positive, max_attempts and in_flight at least 1")
        self.num_gpus, self.num_cpus = num_gpus, num_cpus
        self.workers, self.threads, self.use_gpus = workers, threads, use_gpus
        self.cell_timeout_s, self.max_attempts = cell_timeout_s, max_attempts
        self.in_flight, self.start_timeout_s = in_flight, start_timeout_s
        self.log_to_driver = log_to_driver
        self.plugins = [str(Path(p).resolve()) for p in plugins]
        self.working_dir = self._ship_dir(working_dir)
        self.plan: Plan | None = None
        self.stats = RunStats()
        self._owns_ray = False
        self._slots: list[_Slot] = []
        self._actor_cls = None

    # -- connecting and starting ------------------------------------------------------------

    def _ship_dir(self, working_dir) -> Path | None:
        if working_dir != "auto":
            return Path(working_dir).resolve() if working_dir else None
        if self._local or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
            return None  # a local instance shares this disk; a submitted job shipped it already
        return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None

    def _connect(self) -> None:
        if ray.is_initialized():
            pass
        elif self._local:
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                include_dashboard=False,
                object_store_memory=256 * 2**20,  # records are small; do not claim 30% of RAM
                log_to_driver=self.log_to_driver,
                logging_level="error",  # Ray's notices (token auth, packaging) would crowd the progress bar
            )
            self._owns_ray = True
        else:
            env = None
            if self.working_dir:
                env = {"working_dir": str(self.working_dir), "excludes": SHIP_EXCLUDES}
            ray.init(
                address=self.address,
                runtime_env=env,
                log_to_driver=self.log_to_driver,
                logging_level="error",
            )
            self._owns_ray = True  # disconnects this driver only; the cluster stays up
        if self.plan is None:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            self.plan = plan_workers(nodes, self.workers, self.threads, self.use_gpus)
            self._actor_cls = actor_class(self.plan)

    def _plugin_paths(self) -> list[str]:
        """Every plugin this process has loaded, and the ones given; relative to the shipped
        directory where they live in it, since the workers' copy is elsewhere."""
        loaded = [
            getattr(m, "__file__", None)
            for name, m in list(sys.modules.items())
            if name.startswith("gradbench_plugin_")
        ]
        paths = dict.fromkeys([*self.plugins, *(str(Path(p).resolve()) for p in loaded if p)])
        if self.working_dir is None:
            return list(paths)
        return [
            str(Path(p).relative_to(self.working_dir)) if Path(p).is_relative_to(self.working_dir) else p
            for p in paths
        ]

    def _start(self, slot: _Slot, plugins: list[str]) -> None:
        slot.actor = self._actor_cls.remote(slot.index, self.plan.threads, self.plan.num_gpus > 0, plugins)
        slot.start_ref = slot.actor.start.remote()
        slot.start_began = time.monotonic()
        slot.info = None

    def _ensure_slots(self, plugins: list[str]) -> None:
        self._connect()
        if not self._slots:
            self._slots = [_Slot(index=i) for i in range(self.plan.workers)]
        for slot in self._slots:
            if slot.actor is None and slot.retired is None:
                self._start(slot, plugins)

    def start(self, patience_s: float | None = None) -> list[dict]:
        """Start every worker and wait until each is up or given up; their descriptions. With
        `patience_s`, stop waiting that long after the first is up: the others join the run as
        they come (a GPU another job holds can keep its actor pending for long). `run` does not
        need this; timings of the harness itself, and tests that want every worker used, do."""
        plugins = self._plugin_paths()
        self._ensure_slots(plugins)
        first_up = None
        while any(s.start_ref is not None for s in self._slots):
            self._wait_starts(plugins, timeout=1.0)
            if first_up is None and any(s.ready for s in self._slots):
                first_up = time.monotonic()
            if patience_s is not None and first_up is not None and time.monotonic() - first_up > patience_s:
                break
        return [s.info for s in self._slots if s.info]

    @property
    def device(self) -> str:
        """The device type cells run on ("cuda" or "cpu"), as the workers found it. Waits for
        them (a little), so that `describe` can list them for the manifest."""
        infos = self.start(patience_s=30.0)
        if infos:
            return infos[0]["device"]
        return "cuda" if self.plan.num_gpus else "cpu"

    def describe(self) -> dict:
        """What this executor ran on, for manifest.json."""
        return {
            "executor": self.name,
            "address": self.address,
            "plan": asdict(self.plan) if self.plan else None,
            "cluster_resources": ray.cluster_resources() if ray.is_initialized() else None,
            "workers": [s.info for s in self._slots if s.info],
            "working_dir": str(self.working_dir) if self.working_dir else None,
        }

    # -- running -----------------------------------------------------------------------------

    def run(
        self, families: Iterable[Sequence[Cell]], on_records: OnRecords, timing: TimingOptions, context: dict
    ):
        """Run every family, handing records to `on_records` as each finishes. Families are read
        lazily, so a generator keeps the driver's memory flat. On Ctrl-C: what has finished is
        handed over, the actors are killed, and KeyboardInterrupt propagates."""
        plugins = self._plugin_paths()
        self._ensure_slots(plugins)
        self.stats = RunStats()
        began = time.perf_counter()
        source: Iterator[list[Cell]] = (list(f) for f in families if f)
        run = RunQueue(self, on_records, timing, context, plugins, source)
        try:
            run.loop()
        except KeyboardInterrupt:
            run.salvage()
            self._kill_all()
            raise
        except BaseException:
            self._kill_all()
            raise
        finally:
            self.stats.wall_s = time.perf_counter() - began

    def _wait_starts(self, plugins: list[str], timeout: float) -> None:
        pending = {s.start_ref: s for s in self._slots if s.start_ref is not None}
        if pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            for ref in done:
                self._started(pending[ref], plugins)
        self._expire_starts(plugins)

    def _started(self, slot: _Slot, plugins: list[str]) -> None:
        ref, slot.start_ref = slot.start_ref, None
        try:
            slot.info = ray.get(ref)
            slot.failed_starts = 0
        except rex.RayError as exc:
            self._failed_start(slot, reason_of(exc), plugins)

    def _expire_starts(self, plugins: list[str]) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.start_ref is not None and now - slot.start_began > self.start_timeout_s:
                slot.start_ref = None
                self._failed_start(slot, f"not started after {self.start_timeout_s:.0f} s", plugins)

    def _failed_start(self, slot: _Slot, reason: str, plugins: list[str]) -> None:
        """A worker that cannot start is an environment problem, not a cell's: after
        max_attempts tries its slot is given up, and no family is charged."""
        self._kill(slot)
        slot.failed_starts += 1
        if slot.failed_starts >= self.max_attempts:
            slot.retired = f"worker {slot.index} failed to start {slot.failed_starts} times: {reason}"
        else:
            self._start(slot, plugins)

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            # already gone, or the cluster is: nothing left to stop
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.info, slot.start_ref = None, None, None

    def _kill_all(self) -> None:
        for slot in self._slots:
            self._kill(slot)
        self._slots = []

    def close(self) -> None:
        if ray.is_initialized():
            self._kill_all()
            if self._owns_ray:
                ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
