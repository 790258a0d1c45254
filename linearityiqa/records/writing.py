"""Every file a script writes is written whole or not at all, and never over one of its inputs.

A file is written to a temporary file beside it (`.<name>.<random>.partial`: the same folder, so
the rename never crosses file systems), flushed to the disk and renamed over its target: an
interrupt, a crash or a full disk leaves the earlier file as it was and no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from linearityiqa.errors import ConfigError, IQAError, OutputError, file_problem


@contextlib.contextmanager
def replacing_path(path: str | os.PathLike, *, what: str, advice: str) -> Iterator[str]:
    """A temporary path (its folder made if needed) to write what replaces `path` when the block ends without error;
    an OSError in the block is one of writing: OutputError "cannot write <what> <path>: <reason>; <advice>"."""
    partial = None
    try:
        path = write_target(path)
        partial = _temporary_beside(path)
        yield partial
        with open(partial, "rb") as written:  # on the disk before it takes the target's name
            os.fsync(written.fileno())
        os.chmod(partial, _mode_for(path))
        os.replace(partial, path)
    except BaseException as error:
        if partial is not None:
            with contextlib.suppress(OSError):
                os.remove(partial)
        if isinstance(error, OSError) and not isinstance(error, IQAError):
            raise _cannot_write(path, what, advice, error) from None
        raise


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike, *, what: str, advice: str, binary: bool = False, newline: str | None = None
) -> Iterator[IO]:
    """A file open for writing (text in UTF-8) that replaces `path` when the block ends without error."""
    with replacing_path(path, what=what, advice=advice) as partial:
        text = {} if binary else {"newline": newline, "encoding": "utf-8"}
        with open(partial, "wb" if binary else "w", **text) as file:
            yield file


def check_writable(path: str | os.PathLike, *, what: str, advice: str) -> None:
    """Fail now, not after the work, when `path` cannot be written (a temporary file is made and removed)."""
    try:
        os.remove(_temporary_beside(write_target(path)))
    except OSError as error:
        raise _cannot_write(path, what, advice, error) from None


def write_target(path: str | os.PathLike) -> str:
    """The file a write replaces: `path`, or the file a symbolic link at `path` leads to (the link stays, as a
    shell's > keeps it); it must be a regular file or not exist yet. A device, a named pipe or a folder is refused
    (an OSError says why): renaming over one would replace it (as root, /dev/null itself)."""
    path = os.fspath(path)
    if path.endswith((os.sep, os.altsep or os.sep)):  # abspath would drop the slash, and the file land beside
        raise IsADirectoryError(errno.EISDIR, "it names a folder (it ends with a slash), not a file")
    target = os.path.realpath(path) if os.path.islink(path) else path
    problem = file_problem(target)
    # "is a folder", "is a named pipe", ...; a path that cannot be reached is _temporary_beside's to name
    if problem is not None and problem.startswith("is "):
        where = "" if target == path else f"it leads to {target}, which "
        raise FileExistsError(errno.EEXIST, f"{where or 'it '}{problem}")
    return target


def _temporary_beside(path: str) -> str:
    """A new empty file in `path`'s folder (made if needed), named after it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be; the OS's words mislead
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of its folder") from None
    # 255 bytes, the longest name of most file systems, less the dots, mkstemp's random part and ".partial"
    prefix = f".{cut_to_bytes(os.path.basename(path), 255 - 2 - 8 - len('.partial'))}."
    handle, partial = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".partial")
    os.close(handle)
    return partial


def cut_to_bytes(name: str, limit: int) -> str:
    """`name` without the characters at its end that make it longer than `limit` bytes as a file name."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def _mode_for(path: str) -> int:
    """The permissions of the file replaced, else the umask's (mkstemp's are the owner's alone)."""
    with contextlib.suppress(OSError):
        return os.stat(path).st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _cannot_write(path: str, what: str, advice: str, error: OSError) -> OutputError:
    reason = error.strerror or str(error)
    return OutputError(f"cannot write {what} {path}: {reason}; {advice}; a file there before is kept")


def refuse_inputs(output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]], *, option: str) -> None:
    """ConfigError if `output` is the same file as one of `inputs` ((what it is, its path) pairs),
    which writing it would destroy; links and other names of one file count as the same file."""
    try:
        target = os.stat(output)
    except OSError:
        return  # nothing there yet: no input can be it
    for what, path in inputs:
        with contextlib.suppress(OSError):
            if os.path.samestat(target, os.stat(path)):
                raise ConfigError(
                    f"{option} {os.fspath(output)} is the {what} {os.fspath(path)} itself, which writing it "
                    f"would destroy: choose another {option}; nothing was written"
                )
