"""Errors that describe a user's mistake rather than a bug, all of them defined here.

Scripts print an `IQAError`'s message as one line, without a traceback (cli/scripts.py).
Each subclass also derives from the matching built-in exception, so library users can keep
catching `ValueError` or `FileNotFoundError` as they would anyway.
"""

from __future__ import annotations

import errno
import os
import re
import stat


class IQAError(Exception):
    """Base class: the message alone tells the user what is wrong and what to do."""


class ConfigError(IQAError, ValueError):
    """An option or argument has a value the project cannot use."""


class MissingFileError(IQAError, FileNotFoundError):
    """A file the user has to provide is not where it is expected."""


class BadFileError(IQAError, ValueError):
    """A file exists but its content cannot be used."""


class OutputError(IQAError, OSError):
    """A file cannot be written: the disk is full, the folder read-only or not a folder."""


class TrainingDiverged(IQAError):
    """The training loss stopped being a finite number."""


class RunFailed(IQAError):
    """A run that `python -m reproduce` started ended with an error that its script has reported."""


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


def first_line(error: BaseException) -> str:
    """The first line of an error's message (library errors can span several), after its type where the
    message has no words of its own (a KeyError of pickle's says only "101")."""
    text = _TERMINAL_CODES.sub("", str(error)).strip()  # PyTorch colours some of its messages
    line = text.splitlines()[0] if text else ""
    return line if re.search(r"[^\W\d_]{2}", line) else f"{type(error).__name__}: {line}".rstrip(": ")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file one can read, in a message's words ("does not exist",
    "is a folder", ...), or None when it is one. Reading a named pipe or a device would wait for
    a writer or never end, so they are refused by name, not opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link that leads to no file" if os.path.islink(path) else "does not exist"
    except OSError as error:  # a loop of links, a name too long, a folder that cannot be searched
        if error.errno == errno.ELOOP:
            return "is a symbolic link that leads to no file (a loop of links)"
        return f"cannot be opened ({error.strerror or error})"
    for test, kind in _NOT_FILES:
        if test(mode):
            return f"is {kind}, not a file"
    return None


_NOT_FILES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)
