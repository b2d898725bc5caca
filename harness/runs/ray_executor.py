"""The Ray executor: one actor per GPU (or per CPU slot), a queue on `ray.wait`, retries, time limits.

Each actor holds one device and runs whole families on it (`run_family`), so a family's methods
stay paired. The driver keeps one or two families in flight per actor and hands each family's
records to `on_records` as soon as it returns. Ray retries nothing (`max_restarts=0`,
`max_task_retries=0`): the driver counts attempts itself, because only it knows which family was
running when an actor died.

    actor died (killed, segfault, host OOM)  -> family requeued, actor replaced; after
                                                `max_attempts` deaths its cells are `error`
    exception in a cell                      -> `error`, by run_family; the actor lives on
    CUDA out of memory                       -> `oom`, by run_family, cache emptied; actor kept
    family past cell_timeout_s x its cells   -> actor killed and replaced; cells `timeout`

An actor runs the families it is given in order, so the family running on it is always the
oldest one in flight there: that is the one charged with a death or a timeout, and its clock
starts when the one before it returned. (An actor that dies within a moment of finishing a
family can take that family's reply with it; the finished family is then the one charged, and
is run again.)
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
import ray.exceptions as rex

from ..cell import Cell, run_family
from ..measure import TimingOptions
from ..plugins import load_plugin
from .executor import OnRecords, failed_records

REPO_ROOT = Path(__file__).resolve().parents[2]
# what `working_dir` never ships: results and environments can be gigabytes
SHIP_EXCLUDES = ["results/", ".venv/", ".git/", "*.parquet", "*.jsonl", "__pycache__/"]
WARMUP = TimingOptions(min_run_time_s=1e-3, rounds=1, warmup=1)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RESOURCE_STEP = 1e-4  # Ray's granularity for fractional resources


# --- the actor ---------------------------------------------------------------------------------


class Worker:
    """One process, one device: runs families there. Ray makes it an actor (see `_actor_class`)."""

    def __init__(self, index: int, threads: int, use_gpu: bool, plugins: Sequence[str]):
        import torch

        self.index = index
        self.threads = threads
        # Ray sets OMP_NUM_THREADS to the actor's CPUs (1 when fractional): say what is meant
        torch.set_num_threads(threads)
        for path in plugins:
            load_plugin(path)
        gpu_ids = ray.get_gpu_ids() if use_gpu else []
        # since Ray 2.60 a CPU actor inherits the node's CUDA_VISIBLE_DEVICES: only a GPU actor
        # may touch CUDA, and a logical GPU on a CPU machine runs on the CPU
        self.device = "cuda:0" if gpu_ids and torch.cuda.is_available() else "cpu"
        self.where = {
            "gpu_id": str(gpu_ids[0]) if gpu_ids else None,  # ints, or strings: normalise
            "node": ray.get_runtime_context().get_node_id(),
            "worker": index,
        }

    def start(self) -> dict:
        """Warm up, then say where this worker is. The first family in a fresh process pays about
        a second of lazy imports (and on a GPU the CUDA context): not something to time or to
        charge to its time limit."""
        import torch

        from ..env import cuda_info, device_name

        tiny = [Cell("linear", m, n=8, d=2) for m in ("manual", "autograd")]
        run_family(tiny, self.device, self.threads, WARMUP)
        return {
            **self.where,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
            "device": torch.device(self.device).type,
            "device_name": device_name(torch.device(self.device)),
            "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            **(cuda_info() if self.device != "cpu" else {}),
        }

    def run(
        self, cells: list[Cell], timing: TimingOptions, context: dict, plugins: Sequence[str]
    ) -> tuple[list[dict], float]:
        """The family's records, and the seconds run_family took here (the harness's overhead is
        the driver's wall time beyond that)."""
        for path in plugins:  # a no-op once loaded; a plugin loaded after this actor started
            load_plugin(path)
        started = time.perf_counter()
        records = run_family(cells, self.device, self.threads, timing, {**context, **self.where})
        return records, time.perf_counter() - started


def _actor_class(plan: Plan):
    return ray.remote(Worker).options(
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
        max_restarts=0,  # a dead actor stays dead: the driver replaces it and counts attempts
        max_task_retries=0,
    )


# --- how many actors, with what ---------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    workers: int
    num_gpus: int  # per actor: 1, or 0 for CPU actors
    num_cpus: float  # per actor, reserved with Ray
    threads: int  # torch threads per actor


def _floor_resource(x: float) -> float:
    return math.floor(x / RESOURCE_STEP + 1e-9) * RESOURCE_STEP


def plan_workers(
    nodes: Sequence[dict],
    workers: int | None = None,
    threads: int | None = None,
    use_gpus: bool | None = None,
) -> Plan:
    """Actors for a cluster whose alive nodes have these resources ({"CPU": 16, "GPU": 8, ...}).

    With GPUs: one actor per GPU (at most `workers`), each reserving its node's CPUs per GPU, so
    that every GPU's actor fits (`num_gpus=1` alone reserves a whole CPU: on 2 CPUs and 4 GPUs
    only two actors would start). Without: `workers` CPU actors (default one per CPU), each with
    `threads` torch threads (default the CPUs divided among them).
    """
    cpus = sum(n.get("CPU", 0) for n in nodes)
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    if use_gpus is None:
        use_gpus = gpus > 0
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if use_gpus:
        if gpus == 0:
            raise ValueError("asked for GPU workers, but the Ray cluster has no GPU")
        share = min(n.get("CPU", 0) / n["GPU"] for n in nodes if n.get("GPU", 0) >= 1)
        return Plan(
            workers=min(workers or gpus, gpus),
            num_gpus=1,
            num_cpus=_floor_resource(share),
            threads=threads or max(1, int(share)),
        )
    count = workers or max(1, int(cpus))
    share = cpus / count
    threads = threads or max(1, int(share))
    return Plan(workers=count, num_gpus=0, num_cpus=_floor_resource(min(threads, share)), threads=threads)


# --- the driver -------------------------------------------------------------------------------


@dataclass
class _Task:
    cells: list[Cell]
    attempt: int
    ref: ray.ObjectRef | None = None
    started: float | None = None  # when the driver reckons it began running on its actor


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
            self._actor_cls = _actor_class(self.plan)

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
        requeued: deque[_Task] = deque()
        run = _Run(self, on_records, timing, context, plugins, source, requeued)
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
            self._failed_start(slot, _reason(exc), plugins)

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


class _Run:
    """The queue of one `run`: families from `source` (requeued ones first) onto ready slots."""

    def __init__(self, ex: RayExecutor, on_records, timing, context, plugins, source, requeued):
        self.ex, self.on_records, self.timing, self.context = ex, on_records, timing, context
        self.plugins, self.source, self.requeued = plugins, source, requeued
        self.exhausted = False

    def next_family(self) -> _Task | None:
        if self.requeued:
            return self.requeued.popleft()
        if not self.exhausted:
            cells = next(self.source, None)
            if cells is not None:
                return _Task(cells, attempt=1)
            self.exhausted = True
        return None

    def loop(self) -> None:
        ex = self.ex
        while True:
            self.fill()
            busy = [s for s in ex._slots if s.tasks]
            starting = [s for s in ex._slots if s.start_ref is not None]
            if not busy:
                if self.exhausted and not self.requeued:
                    return
                if not starting:  # work left and no worker left to do it
                    self.give_up()
                    return
            heads = {s.tasks[0].ref: s for s in busy}
            starts = {s.start_ref: s for s in starting}
            waitables = [*heads, *starts]
            # wake for the nearest deadline, and at least every second so Ctrl-C is seen
            done, _ = ray.wait(waitables, num_returns=1, timeout=min(1.0, self.next_deadline()))
            if done:
                done, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
            for ref in done:
                if ref in heads:
                    self.finished(heads[ref])
                else:
                    ex._started(starts[ref], self.plugins)
            self.expire()

    def fill(self) -> None:
        """Round-robin, so that every worker has one family before any has two."""
        for depth in range(1, self.ex.in_flight + 1):
            for slot in self.ex._slots:
                if slot.ready and len(slot.tasks) < depth:
                    task = self.next_family()
                    if task is None:
                        return
                    self.submit(slot, task)

    def submit(self, slot: _Slot, task: _Task) -> None:
        context = {**self.context, "attempts": task.attempt}
        task.ref = slot.actor.run.remote(task.cells, self.timing, context, self.plugins)
        task.started = time.monotonic() if not slot.tasks else None
        slot.tasks.append(task)

    def limit_s(self, task: _Task) -> float:
        return self.ex.cell_timeout_s * len(task.cells)

    def next_deadline(self) -> float:
        now, ex = time.monotonic(), self.ex
        waits = [t.started + self.limit_s(t) - now for s in ex._slots if s.tasks for t in [s.tasks[0]]]
        waits += [s.start_began + ex.start_timeout_s - now for s in ex._slots if s.start_ref is not None]
        return max(0.0, min(waits, default=1.0))

    def finished(self, slot: _Slot) -> None:
        task = slot.tasks.popleft()
        try:
            records, busy_s = ray.get(task.ref)
        except rex.RayTaskError as exc:  # run_family itself raised (a bad family): no retry
            self.deliver(
                task, failed_records(task.cells, "error", _reason(exc), self.where(slot), task.attempt)
            )
        except rex.RayError as exc:  # the actor is gone: ActorDiedError, OutOfMemoryError, ...
            self.lost(slot, task, exc)
            return
        else:
            self.ex.stats.busy_s += busy_s
            self.deliver(task, records)
        if slot.tasks:
            slot.tasks[0].started = time.monotonic()

    def deliver(self, task: _Task, records: list[dict]) -> None:
        self.ex.stats.families += 1
        self.ex.stats.cells += len(records)
        self.on_records(records)

    def where(self, slot: _Slot) -> dict:
        info = slot.info or {}
        keys = ("gpu_id", "node", "device", "device_name", "threads")
        return {**self.context, "worker": slot.index, **{k: info.get(k) for k in keys}}

    def lost(self, slot: _Slot, task: _Task, exc: BaseException) -> None:
        """The actor died running `task`: the families queued behind it are innocent and go back
        unchanged; `task` goes back with one more attempt, or is given up."""
        self.ex.stats.deaths += 1
        where = self.where(slot)
        self.replace(slot)
        if task.attempt >= self.ex.max_attempts:
            msg = f"worker died {task.attempt} times running this family; last: {_reason(exc)}"
            self.deliver(task, failed_records(task.cells, "error", msg, where, task.attempt))
        else:
            self.requeued.appendleft(_Task(task.cells, task.attempt + 1))

    def expire(self) -> None:
        now = time.monotonic()
        for slot in self.ex._slots:
            if slot.tasks and now - slot.tasks[0].started > self.limit_s(slot.tasks[0]):
                task = slot.tasks.popleft()
                self.ex.stats.timeouts += 1
                limit = self.limit_s(task)
                msg = (
                    f"family ran past its limit of {limit:g} s ({self.ex.cell_timeout_s:g} s x "
                    f"{len(task.cells)} cells); its worker was killed"
                )
                where = self.where(slot)
                self.replace(slot)
                self.deliver(task, failed_records(task.cells, "timeout", msg, where, task.attempt))
        self.ex._expire_starts(self.plugins)

    def replace(self, slot: _Slot) -> None:
        """Kill the slot's actor, requeue what waited behind on it, start a fresh one."""
        for waiting in reversed(slot.tasks):
            self.requeued.appendleft(_Task(waiting.cells, waiting.attempt))
        slot.tasks.clear()
        self.ex._kill(slot)
        self.ex.stats.replaced += 1
        self.ex._start(slot, self.plugins)

    def give_up(self) -> None:
        """No worker could start: every family left is recorded as failed, so the run ends."""
        why = "; ".join(s.retired for s in self.ex._slots if s.retired) or "no worker"
        while (task := self.next_family()) is not None:
            self.deliver(task, failed_records(task.cells, "error", f"not run: {why}", self.context, 0))

    def salvage(self) -> None:
        """On Ctrl-C: hand over the families that finished but were not yet collected."""
        for slot in self.ex._slots:
            while slot.tasks:
                done, _ = ray.wait([slot.tasks[0].ref], timeout=0)
                if not done:
                    break
                task = slot.tasks.popleft()
                try:
                    records, _ = ray.get(task.ref)
                except rex.RayError:
                    break
                self.deliver(task, records)


def _reason(exc: BaseException) -> str:
    """One line: Ray's messages run to a traceback, or a list of actor fields, in colour."""
    if isinstance(exc, rex.OutOfMemoryError):
        return "the node ran out of memory and Ray's memory monitor killed the worker"
    if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, BaseException):
        return f"{type(exc.cause).__name__}: {exc.cause}"
    lines = [ln.strip() for ln in ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    if isinstance(exc, rex.RayActorError) and exc.actor_init_failed:
        return f"{type(exc).__name__} in the worker's start: {lines[-1] if lines else ''}"
    return f"{type(exc).__name__}: " + " ".join(lines[:1] + [ln for ln in lines[1:] if ln.startswith("pid")])
