"""One run at a time per output: a second run that would write the same checkpoint or results
is refused while the first is alive, instead of the two overwriting each other's files.

A lock is a file `<output>.lock` holding the owner's process id, made with O_EXCL so that of
two runs starting together only one gets it. A run killed without removing it (SIGKILL, a lost
machine) leaves it behind; the next run finds its process gone and takes the lock over.
"""

import contextlib
import os
from typing import Iterator, Sequence

from errors import ConfigError, OutputError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and another user's
        return True
    return True


def _owner(lock: str) -> int:
    """The process id in a lock file; 0 when the file is empty or garbled (a crash while writing it)."""
    try:
        with open(lock) as file:
            text = file.read().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def _acquire(lock: str) -> None:
    folder = os.path.dirname(os.path.abspath(lock))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:  # a file where the folder should be, a read-only disk
        reason = 'a file is in the way' if isinstance(error, FileExistsError) else error.strerror
        raise OutputError(f"cannot make the folder {folder} for {lock[:-len('.lock')]}: {reason}; "
                          f"choose an output that can be written") from None
    for _ in range(2):  # a second try after clearing a lock its owner left behind
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner and owner != os.getpid() and _alive(owner):
                output = lock[:-len('.lock')]
                raise ConfigError(f"another run (process {owner}) is writing {output}: wait for it to end, or give "
                                  f"this run outputs of its own (--trained_model_file, --results_dir)") from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            continue
        with os.fdopen(handle, 'w') as file:
            file.write(str(os.getpid()))
        return
    raise ConfigError(f"cannot take the lock {lock}: if no run is writing {lock[:-len('.lock')]}, delete the lock")


@contextlib.contextmanager
def run_lock(outputs: Sequence[str]) -> Iterator[None]:
    """Hold `<output>.lock` for each output while the block runs; ConfigError if a live run holds one."""
    held = []
    try:
        for output in outputs:
            lock = output + '.lock'
            _acquire(lock)
            held.append(lock)
        yield
    finally:
        for lock in held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
