"""The queue's fault handling against a fake backend in plain Python: no Ray, no torch work.

A fake family's fate is its first method's name: `ok`; `die` (its worker dies running it);
`die_once` (dies on its first attempt only); `hang` (never returns); `raise` (the family
raises and the worker lives on). A fake worker runs its families in order, as a real one
does: a hung family holds up those queued behind it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from harness.cell import Cell
from harness.runs.backend import Died, Done, Raised
from harness.runs.queue import Family, Pool


class Ticket:
    def __init__(self, worker, family=None):
        self.worker, self.family, self.outcome = worker, family, None


class FakeWorker:
    def __init__(self, number, index, device, start):
        self.number, self.index, self.device, self.start = number, index, device, start
        self.alive, self.queue = True, []


class FakeBackend:
    """start_fate(index, number) -> "ok" | "fail" | "never"; device_of(index) -> "cpu" | "cuda"."""

    def __init__(self, start_fate=lambda index, number: "ok", device_of=lambda index: "cpu"):
        self.start_fate, self.device_of = start_fate, device_of
        self.started, self.killed, self.ran = [], [], Counter()
        self.interrupt_at_wait, self.waits = None, 0

    def start(self, index):
        worker = FakeWorker(len(self.started), index, self.device_of(index), None)
        worker.start = Ticket(worker)
        self.started.append(worker)
        return worker, worker.start

    def submit(self, worker, cells, timing, context):
        ticket = Ticket(worker, (cells, context))
        worker.queue.append(ticket)
        return ticket

    def advance(self):
        for w in self.started:
            if w.start.outcome is None:
                fate = self.start_fate(w.index, w.number)
                if fate == "ok":
                    w.start.outcome = Done({"device": w.device, "pid": 1000 + w.number})
                elif fate == "fail":
                    w.start.outcome, w.alive = Died("RuntimeError in the worker's start: no plugin"), False
                continue
            for ticket in w.queue:
                if ticket.outcome is not None:
                    continue
                if not w.alive:
                    ticket.outcome = Died("ActorDiedError: worker gone")
                    continue
                cells, context = ticket.family
                fate = cells[0].method
                if fate == "hang":
                    break
                if fate == "die" or (fate == "die_once" and context["attempts"] == 1):
                    w.alive = False
                    ticket.outcome = Died("ActorDiedError: exit code 1")
                    continue
                self.ran.update(c.cell_id for c in cells)
                if fate == "raise":
                    ticket.outcome = Raised("ValueError: bad family")
                else:
                    records = [
                        {"cell_id": c.cell_id, "status": "ok", "device": w.device, **context} for c in cells
                    ]
                    ticket.outcome = Done(records, busy_s=0.001)

    def wait(self, tickets, timeout):
        self.waits += 1
        self.advance()
        if self.waits == self.interrupt_at_wait:
            raise KeyboardInterrupt
        done = [t for t in tickets if t.outcome is not None]
        if not done:
            time.sleep(min(timeout, 0.02))
        return done

    def collect(self, ticket):
        return ticket.outcome

    def kill(self, worker):
        worker.alive = False
        self.killed.append(worker.number)
        for ticket in worker.queue:
            ticket.outcome = ticket.outcome or Died("killed")


def family(i, fate="ok", device=None):
    return Family([Cell("linear", fate, n=10 + i, d=2), Cell("linear", "second", n=10 + i, d=2)], device)


def run(pool, families):
    got = []
    pool.run(families, got.extend, None, {"run_id": "r"})
    return got


def by_id(records):
    counts = Counter(r["cell_id"] for r in records)
    assert set(counts.values()) == {1}, "a cell landed twice"
    return {r["cell_id"]: r for r in records}


def ids(families):
    return {c.cell_id for f in families for c in f.cells}


def test_every_family_runs_once_round_robin_over_the_workers():
    backend = FakeBackend()
    families = [family(i) for i in range(6)]
    records = by_id(run(Pool(backend, workers=2), families))
    assert set(records) == ids(families)
    assert {(r["status"], r["attempts"]) for r in records.values()} == {("ok", 1)}
    assert backend.ran == Counter(ids(families))


def test_a_family_that_kills_its_worker_is_retried_up_to_the_limit_then_error():
    backend = FakeBackend()
    pool = Pool(backend, workers=2, max_attempts=3)
    families = [family(0, "die"), *(family(i) for i in range(1, 5))]
    records = by_id(run(pool, families))
    assert set(records) == ids(families)
    for cell in families[0].cells:
        r = records[cell.cell_id]
        assert (r["status"], r["attempts"]) == ("error", 3)
        assert "worker died 3 times" in r["error"] and "exit code 1" in r["error"]
    assert {(records[c].get("status"), records[c]["attempts"]) for c in ids(families[1:])} == {("ok", 1)}
    assert (pool.stats.deaths, pool.stats.replaced) == (3, 3)
    assert len(backend.started) == 2 + 3  # each death replaced its worker


def test_a_family_that_dies_once_succeeds_on_its_second_attempt():
    families = [family(0, "die_once"), family(1)]
    records = by_id(run(Pool(FakeBackend(), workers=1), families))
    assert {records[c]["attempts"] for c in ids(families[:1])} == {2}
    assert {records[c]["status"] for c in records} == {"ok"}


def test_families_queued_behind_a_dead_worker_are_not_charged():
    backend = FakeBackend()
    # one worker holding two: the second waits behind the one that kills the worker
    families = [family(0, "die_once"), family(1), family(2)]
    records = by_id(run(Pool(backend, workers=1, in_flight=2), families))
    assert {records[c]["attempts"] for c in ids(families[1:])} == {1}
    assert {records[c]["attempts"] for c in ids(families[:1])} == {2}
    assert backend.ran == Counter(ids(families))


def test_a_family_past_its_deadline_is_a_timeout_and_the_run_goes_on():
    backend = FakeBackend()
    pool = Pool(backend, workers=2, cell_timeout_s=0.05)
    families = [family(0, "hang"), *(family(i) for i in range(1, 6))]
    began = time.monotonic()
    records = by_id(run(pool, families))
    assert time.monotonic() - began < 5
    assert set(records) == ids(families)
    for cell in families[0].cells:
        r = records[cell.cell_id]
        assert (r["status"], r["attempts"]) == ("timeout", 1)
        assert "limit of 0.1 s (0.05 s x 2 cells)" in r["error"]
    assert {records[c]["status"] for c in ids(families[1:])} == {"ok"}
    assert pool.stats.timeouts == 1 and backend.killed[0] == 0  # the hung worker, killed


def test_a_family_that_raises_is_an_error_without_retry_and_its_worker_lives_on():
    backend = FakeBackend()
    families = [family(0, "raise"), family(1)]
    records = by_id(run(Pool(backend, workers=1), families))
    assert {(records[c]["status"], records[c]["attempts"]) for c in ids(families[:1])} == {("error", 1)}
    assert records[families[0].cells[0].cell_id]["error"] == "ValueError: bad family"
    assert len(backend.started) == 1 and not backend.killed


@pytest.mark.parametrize("fate", ["fail", "never"])
def test_workers_that_never_start_are_retried_then_given_up_and_the_run_ends(fate):
    backend = FakeBackend(start_fate=lambda index, number: fate)
    pool = Pool(backend, workers=2, max_attempts=2, start_timeout_s=0.05)
    families = [family(i) for i in range(3)]
    records = by_id(run(pool, families))
    assert set(records) == ids(families)
    assert {(r["status"], r["attempts"]) for r in records.values()} == {("error", 0)}
    words = "no plugin" if fate == "fail" else "not started after 0 s"
    assert all("failed to start 2 times" in r["error"] and words in r["error"] for r in records.values())
    assert len(backend.started) == 4 and not backend.ran


def test_a_run_goes_on_with_the_workers_that_did_start():
    backend = FakeBackend(start_fate=lambda index, number: "fail" if index == 1 else "ok")
    families = [family(i) for i in range(4)]
    records = by_id(run(Pool(backend, workers=2, max_attempts=2), families))
    assert {r["status"] for r in records.values()} == {"ok"}


def test_ctrl_c_hands_over_the_families_that_finished_and_kills_the_workers():
    backend = FakeBackend()
    backend.interrupt_at_wait = 2  # the first wait sees the workers up, the second is interrupted
    pool = Pool(backend, workers=2, in_flight=2)
    # round-robin: worker 0 holds families 0 (hangs) and 2, worker 1 holds 1 and 3
    families = [family(0, "hang"), *(family(i) for i in range(1, 6))]
    got = []
    with pytest.raises(KeyboardInterrupt):
        pool.run(families, got.extend, None, {"run_id": "r"})
    assert set(by_id(got)) == ids([families[1], families[3]])  # finished, not yet collected
    assert sorted(backend.killed) == [0, 1] and pool.slots == []


def test_families_go_only_to_workers_of_the_device_they_need():
    backend = FakeBackend(device_of=lambda index: "cuda" if index == 1 else "cpu")
    families = [family(i, device=("cuda", "cpu", None)[i % 3]) for i in range(9)]
    records = by_id(run(Pool(backend, workers=2), families))
    assert {r["status"] for r in records.values()} == {"ok"}
    for f in families:
        if f.device:
            assert {records[c.cell_id]["device"] for c in f.cells} == {f.device}


def test_a_family_no_worker_can_run_is_an_error_and_the_rest_run():
    backend = FakeBackend()  # cpu workers only
    families = [family(0, device="cuda"), family(1, device="cpu"), family(2)]
    records = by_id(run(Pool(backend, workers=2), families))
    bad = {records[c]["error"] for c in ids(families[:1])}
    assert bad == {"not run: it needs a cuda worker, the workers have cpu"}
    assert {records[c]["status"] for c in ids(families[1:])} == {"ok"}


def test_families_that_need_something_warm_go_to_the_worker_that_has_it():
    """Compiling families on the worker that compiled first, while the other has other work; at
    the end nothing idles for them; a worker replaced after a death has nothing warm."""

    def workers_of(backend, families):
        ran = {c.cell_id: w.index for w in backend.started for t in w.queue for c in t.family[0]}
        return {ran[c.cell_id] for f in families for c in f.cells}

    backend = FakeBackend()
    warm = [Family(family(i).cells, warm="compiler") for i in range(4)]
    cold = [family(i) for i in range(10, 16)]
    assert len(run(Pool(backend, workers=2), [*warm, *cold])) == 20
    assert workers_of(backend, warm) == {0}
    assert workers_of(backend, cold) == {0, 1}

    backend = FakeBackend()  # only warm families: both workers take them
    warm = [Family(family(i).cells, warm="compiler") for i in range(6)]
    assert len(run(Pool(backend, workers=2), warm)) == 12
    assert workers_of(backend, warm) == {0, 1}
    assert warm[0].again(2).warm == "compiler"
