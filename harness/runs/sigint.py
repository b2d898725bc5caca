"""Ctrl-C in `gradbench run`: one SIGINT handler for the whole command, never swapped.

The first Ctrl-C raises KeyboardInterrupt where the main thread is, unless a section is held (a
family's records being written, the run directory being made, the parquet files, the executor's
shutdown): then it is raised as the section ends. Later ones are only counted, so that the
cleanup that keeps the finished cells is not torn in turn; the third leaves at once (every
finished family is already fsync'd in records.jsonl). The handler is never swapped, so a signal
cannot fall between two handlers; and it counts, so one whose KeyboardInterrupt a library
swallowed (a bare `except:` inside an import or ray.init) is still seen at the next `check`.
A KeyboardInterrupt raised where Python cannot propagate it (a callback run at fork, a
finalizer) would be printed as "Exception ignored in ..." with a traceback: the block's
unraisable hook drops those quietly, and `check` raises the interrupt at the next safe point.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

LEAVE_AT = 3


class _State:
    count = 0  # SIGINTs received
    raised = False  # the first was raised as KeyboardInterrupt
    taken = False  # and the command caught it (else a library swallowed it)
    held = 0  # depth of held sections


def _handler(signum, frame) -> None:
    _State.count += 1
    if _State.count >= LEAVE_AT:
        os.write(2, b"gradbench: stopped at once; finished cells are in records.jsonl\n")
        os._exit(130)
    if not _State.raised and not _State.held:
        _raise()


def _raise() -> None:
    _State.raised = True
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The handler for the block, counts reset; the previous one back afterwards."""
    _State.count, _State.raised, _State.taken, _State.held = 0, False, False, 0
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook


def _unraisable(hook):
    def quiet(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _State.count:
            _State.raised = False  # not raised anywhere it could be caught: `check` raises it again
            return
        hook(unraisable)

    return quiet


def ensure() -> None:
    """Put the handler back if a library replaced it (and see what it may have swallowed)."""
    if _main_thread() and signal.getsignal(signal.SIGINT) is not _handler:
        signal.signal(signal.SIGINT, _handler)
    check()


def received() -> bool:
    return _State.count > 0


def check() -> None:
    """Raise KeyboardInterrupt for a Ctrl-C that was held, or raised and swallowed, and that
    the command has not `take`n yet."""
    if _State.count and not _State.taken and not _State.held:
        _raise()


def take() -> None:
    """The command has caught the KeyboardInterrupt and is stopping."""
    _State.taken = True


@contextlib.contextmanager
def held(then_raise: bool = True) -> Iterator[None]:
    """No KeyboardInterrupt inside the block; one that came is raised after it (then_raise),
    unless the block itself raised."""
    _State.held += 1
    try:
        yield
    finally:
        _State.held -= 1
    if then_raise:
        check()


def flush_and_leave(code: int) -> None:
    """Exit without the interpreter's teardown, which a half-started library (a Ray core worker
    whose raylet is gone, a half-imported torch) can crash in."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
