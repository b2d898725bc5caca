"""The Ray executor: a Ray instance or cluster, a plan of actors, and the queue driving them.

One actor per GPU (or per CPU slot) holds one device and runs whole families on it, so a
family's methods stay paired. The queue (queue.py) keeps one or two families in flight per actor
and says what happens on each fault; ray_backend.py is how it talks to the actors, ray_worker.py
the actors themselves. Ray is imported only when an executor connects: the command lists
executors without paying for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..cell import Cell
from ..measure import TimingOptions
from ..plugins import loaded_plugins
from .executor import ExecutorKind, OnRecords, Option, register_executor
from .queue import Pool, RunStats, families_of
from .slots import runs

REPO_ROOT = Path(__file__).resolve().parents[2]
# what `working_dir` never ships: results and environments can be gigabytes
SHIP_EXCLUDES = ["results/", ".venv/", ".git/", "*.parquet", "*.jsonl", "__pycache__/"]


class RayExecutor:
    """Families on Ray actors, one per GPU or CPU slot. See queue.py for faults.

    address: "local" (or None) starts a fresh local Ray instance, shut down at `close`; "auto" or
        "ray://host:10001" joins a running cluster. If Ray is already initialised in this process
        (tests), that instance is used and left running.
    num_gpus, num_cpus: resources of a fresh local instance (logical GPUs on a CPU machine run on
        the CPU but are pinned and recorded like real ones); None lets Ray detect them.
    workers: CPU actors when the cluster has no GPU (default one per CPU); with GPUs, at most
        this many GPU actors. threads: torch threads per actor (default its share of the CPUs).
    use_gpus: None: one actor per GPU where the cluster has any; False: CPU actors regardless.
    logical_gpus: the cluster's GPUs are declared, not real (default: when `num_gpus` declares
        them): their actors are pinned and recorded as on GPUs but compute on the CPU.
    cell_timeout_s: a family may run cell_timeout_s x (its number of cells) before its actor is
        killed. max_attempts: runs of a family whose actor dies, in all.
    plugins: plugin files every actor imports, besides the ones this process has loaded.
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
        logical_gpus: bool | None = None,
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
        for label, value in (("workers", workers), ("threads", threads), ("max_attempts", max_attempts)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        if cell_timeout_s <= 0 or in_flight < 1:
            raise ValueError("cell_timeout_s must be positive, in_flight at least 1")
        self.num_gpus, self.num_cpus = num_gpus, num_cpus
        self.workers, self.threads, self.use_gpus = workers, threads, use_gpus
        # GPUs declared to a fresh local instance are logical; so are those of a test cluster
        self.logical_gpus = num_gpus is not None if logical_gpus is None else logical_gpus
        self.cell_timeout_s, self.max_attempts = cell_timeout_s, max_attempts
        self.in_flight, self.start_timeout_s = in_flight, start_timeout_s
        self.log_to_driver = log_to_driver
        self.plugins = [str(Path(p).resolve()) for p in plugins]
        self.working_dir = self._ship_dir(working_dir)
        self.plan = None
        self.pool: Pool | None = None
        self._owns_ray = False

    # -- connecting and starting ------------------------------------------------------------

    def _ship_dir(self, working_dir) -> Path | None:
        if working_dir != "auto":
            return Path(working_dir).resolve() if working_dir else None
        if self._local or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
            return None  # a local instance shares this disk; a submitted job shipped it already
        return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None

    def _connect(self) -> Pool:
        import ray

        from .ray_backend import RayBackend
        from .ray_worker import plan_workers

        if ray.is_initialized():
            pass
        elif self._local:
            self._owns_ray = True  # before init: a Ctrl-C inside it still shuts down what started
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                include_dashboard=False,
                object_store_memory=256 * 2**20,  # records are small; do not claim 30% of RAM
                log_to_driver=self.log_to_driver,
                logging_level="error",  # Ray's notices (token auth, packaging) would crowd the progress bar
            )
        else:
            env = None
            if self.working_dir:
                env = {"working_dir": str(self.working_dir), "excludes": SHIP_EXCLUDES}
            self._owns_ray = True  # disconnects this driver only; the cluster stays up
            ray.init(
                address=self.address, runtime_env=env, log_to_driver=self.log_to_driver, logging_level="error"
            )
        if self.pool is None:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            plan = plan_workers(nodes, self.workers, self.threads, self.use_gpus)
            self.plan = dataclasses.replace(plan, logical_gpus=self.logical_gpus and plan.num_gpus > 0)
            backend = RayBackend(self.plan, self._plugin_paths())
            self.pool = Pool(
                backend,
                self.plan.workers,
                self.cell_timeout_s,
                self.max_attempts,
                self.in_flight,
                self.start_timeout_s,
            )
        self.pool.backend.plugins[:] = self._plugin_paths()  # a plugin loaded since: actors follow
        return self.pool

    def _plugin_paths(self) -> list[str]:
        """The plugins given and the ones this process has loaded; relative to the shipped
        directory where they live in it, since the workers' copy is elsewhere."""
        paths = list(dict.fromkeys([*self.plugins, *loaded_plugins()]))
        if self.working_dir is None:
            return paths
        return [
            str(Path(p).relative_to(self.working_dir)) if Path(p).is_relative_to(self.working_dir) else p
            for p in paths
        ]

    def start(self, patience_s: float | None = 30.0) -> list[dict]:
        """Start every worker and wait until each is up or given up (at most `patience_s` after
        the first is up: the others join the run as they come); the rows of those up."""
        return self._connect().start(patience_s)

    def devices(self) -> list[str]:
        rows = self.pool.rows() if self.pool else []
        return sorted({d for row in rows for d in runs(row)})

    def worker_rows(self) -> list[dict]:
        return list(self.pool.seen) if self.pool else []

    @property
    def stats(self) -> RunStats:
        return self.pool.stats if self.pool else RunStats()

    def describe(self) -> dict:
        """What this executor is, for manifest.json (its workers are in `worker_rows`)."""
        return {
            "executor": self.name,
            "address": self.address,
            "plan": asdict(self.plan) if self.plan else None,
            "working_dir": str(self.working_dir) if self.working_dir else None,
        }

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        families: Iterable[Sequence[Cell]],
        on_records: OnRecords,
        timing: TimingOptions,
        context: dict,
        device: str | None = None,
    ) -> None:
        """Run every family (see Pool.run); `device`, when given, is the worker kind they need."""
        self._connect().run(families_of(families, device, compiler_warm), on_records, timing, context)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.kill_all()
        if self._owns_ray:
            import ray

            ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compiler_warm(cells: Sequence[Cell]) -> str | None:
    """Families with a method that compiles share what a process keeps warm: the compiler."""
    from ..methods import get_method

    return "compiler" if any(get_method(c.method).compiles for c in cells) else None


def _build(args, config) -> RayExecutor:
    try:
        import ray  # noqa: F401  (imported here only to say early that it is missing)
    except ImportError as exc:
        raise ImportError(f"ray is not installed ({exc})") from None
    return RayExecutor(
        address=args.address or "local",
        num_gpus=args.num_gpus,
        workers=args.workers,
        threads=config.experiment.threads,
        cell_timeout_s=config.experiment.cell_timeout_s,
        plugins=[str(p) for p in config.plugin_files],
    )


register_executor(
    ExecutorKind(
        "ray",
        "one worker per GPU or CPU slot of a Ray instance or cluster (default)",
        _build,
        (
            Option("--address", "Ray cluster: auto, ray://host:port"),
            Option("--num-gpus", "logical GPUs of a fresh local Ray instance", int, minimum=0),
            Option("--workers", "CPU workers when the cluster has no GPU", int, minimum=1),
        ),
    )
)
