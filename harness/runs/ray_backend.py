"""Ray as a queue backend (backend.py): a worker is an actor, a ticket an ObjectRef.

The actor is ray_worker.Worker; how many, with what resources, is ray_worker.plan_workers. Ray
retries nothing (`max_restarts=0`, `max_task_retries=0`): the queue counts attempts itself,
because only it knows which family was running when an actor died.
"""

from __future__ import annotations

import contextlib
import re

import ray
import ray.exceptions as rex

from ..cell import Cell
from .backend import Died, Done, Outcome, Raised
from .ray_worker import Plan, actor_class

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RayBackend:
    """Actors of one plan; `plugins` (files every actor imports) may grow between runs."""

    def __init__(self, plan: Plan, plugins: list[str]):
        self.plan, self.plugins = plan, plugins
        self._actor_cls = actor_class(plan)

    def start(self, index: int):
        plan = self.plan
        actor = self._actor_cls.remote(
            index, plan.threads, plan.num_gpus > 0, self.plugins, plan.logical_gpus
        )
        return actor, actor.start.remote()

    def submit(self, worker, cells: list[Cell], timing, context: dict):
        return worker.run.remote(cells, timing, context, self.plugins)

    def wait(self, tickets: list, timeout: float) -> list:
        done, _ = ray.wait(tickets, num_returns=1, timeout=timeout)
        if done and len(tickets) > 1:
            done, _ = ray.wait(tickets, num_returns=len(tickets), timeout=0)
        return done

    def collect(self, ticket) -> Outcome:
        try:
            value = ray.get(ticket)
        except rex.RayTaskError as exc:  # the method raised; the actor lives on
            return Raised(reason_of(exc))
        except rex.RayError as exc:  # the actor is gone: ActorDiedError, OutOfMemoryError, ...
            return Died(reason_of(exc))
        if isinstance(value, tuple):  # a family: its records and the seconds they took there
            return Done(*value)
        return Done(value)

    def kill(self, worker) -> None:
        with contextlib.suppress(Exception):  # already gone, or the cluster is
            ray.kill(worker, no_restart=True)


def reason_of(exc: BaseException) -> str:
    """One line: Ray's messages run to a traceback, or a list of actor fields, in colour."""
    if isinstance(exc, rex.OutOfMemoryError):
        return "the node ran out of memory and Ray's memory monitor killed the worker"
    if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, BaseException):
        return f"{type(exc.cause).__name__}: {exc.cause}"
    lines = [ln.strip() for ln in ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    if isinstance(exc, rex.RayActorError) and exc.actor_init_failed:
        return f"{type(exc).__name__} in the worker's start: {lines[-1] if lines else ''}"
    return f"{type(exc).__name__}: " + " ".join(lines[:1] + [ln for ln in lines[1:] if ln.startswith("pid")])
