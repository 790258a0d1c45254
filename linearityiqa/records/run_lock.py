"""One run at a time per output: a second run that would write the same checkpoint or results
is refused while the first is alive, instead of the two overwriting each other's files.

A lock is a file `<output>.lock` made with O_EXCL (of two runs starting together one gets it),
holding the owner's process id, start time and host. One left by a killed run is taken over on
its host when the process is gone, or when its id now belongs to a younger process (ids are
reused); a lock of another host cannot be checked from here and holds until it is deleted.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from linearityiqa.errors import ConfigError

UNKNOWN_START = "-"  # written where the system gives no start time


class Owner(NamedTuple):
    """Who holds a lock: a process id, its start time (empty where /proc has none) and its host."""

    pid: int
    start: str = ""
    host: str = ""

    def __str__(self) -> str:
        return f"process {self.pid}" + (f" on {self.host}" if self.host != socket.gethostname() else "")


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux's /proc), or '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            # the command name, field 2, is in parentheses and may hold spaces; start time is field 22
            return file.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(owner: Owner) -> bool:
    if owner.host and owner.host != socket.gethostname():
        return True  # another machine's process cannot be looked at from here
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and another user's
        pass
    return not owner.start or owner.start == _start_time(owner.pid)


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(pid, _start_time(pid), socket.gethostname())


def _owner(lock: str) -> Owner:
    """Who holds a lock file; pid 0 when it is empty or garbled (a crash while writing it).
    A lock of an earlier version holds the process id alone."""
    fields: list[str] = []  # a lock removed meanwhile holds no one
    with contextlib.suppress(FileNotFoundError), open(lock) as file:
        fields = file.read().split()
    if not fields or not fields[0].isdigit():
        return Owner(0)
    start = fields[1] if len(fields) > 1 and fields[1] != UNKNOWN_START else ""
    return Owner(int(fields[0]), start, " ".join(fields[2:]))


# what a run whose output another run is writing can do instead of waiting
TRAINING_ADVICE = "give this run outputs of its own (--trained_model_file, --results_dir)"


def _acquire(lock: str, advice: str) -> None:
    # the callers' check_writable has made the folder, or named what keeps it from being made
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    for _ in range(2):  # a second try after clearing a lock its owner left behind
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner.pid and owner != this_process() and _alive(owner):
                output = lock[: -len(".lock")]
                raise ConfigError(
                    f"another run ({owner}) is writing {output}: wait for it to end, or {advice}; "
                    f"if no run is writing it, delete {lock}"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            continue
        with os.fdopen(handle, "w") as file:
            owner = this_process()
            file.write(f"{owner.pid} {owner.start or UNKNOWN_START} {owner.host}")
        return
    raise ConfigError(f"cannot take the lock {lock}: if no run is writing {lock[: -len('.lock')]}, delete the lock")


@contextlib.contextmanager
def run_lock(outputs: Sequence[str], *, advice: str = TRAINING_ADVICE) -> Iterator[None]:
    """Hold `<output>.lock` for each output while the block runs; ConfigError if a live run holds
    one, whose message ends with `advice`, what to do instead of waiting."""
    held = []
    try:
        for output in outputs:
            lock = output + ".lock"
            _acquire(lock, advice)
            held.append(lock)
        yield
    finally:
        for lock in held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
