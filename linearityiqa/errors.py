"""Errors that describe a user's mistake rather than a bug, and the readers that turn a file's
failure into one of them where the file enters. Scripts print an `IQAError` as one line, without
a traceback; each derives from the matching built-in exception (ValueError, FileNotFoundError).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zipfile
from typing import Any


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


def first_line(error: BaseException) -> str:
    """The first line of an error's message (library errors can span several), after its type where the
    message has no words of its own (a KeyError of pickle's says only "101")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # PyTorch colours some of its messages
    line = text.splitlines()[0] if text else ""
    return line if re.search(r"[^\W\d_]{2}", line) else f"{type(error).__name__}: {line}".rstrip(": ")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file, in a message's words ("does not exist", "is a folder", ...), or None. Reading
    a named pipe or a device would wait for a writer or never end: they are refused by name, not opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link that leads to no file" if os.path.islink(path) else "does not exist"
    except OSError as error:  # a loop of links, a name too long, a folder that cannot be searched
        if error.errno == errno.ELOOP:
            return "is a symbolic link that leads to no file (a loop of links)"
        return f"cannot be opened ({error.strerror or error})"
    kinds = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket"}
    kind = kinds.get(stat.S_IFMT(mode), "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else None)
    return None if kind is None else f"is {kind}, not a file"


def read_torch_file(
    path: str, *, what: str, option: str, advice: str, expected: str, mmap: bool = False
) -> dict[str, Any]:
    """The dict that a file written by torch.save holds, loaded on the CPU with `weights_only=True` (opening it
    runs no code); any failure to is one line that names the file as `what` and what to do. A file
    in torch's legacy format, which cannot be mapped, is read without `mmap`."""
    import torch  # here: scoring with ONNX imports this module without PyTorch

    problem = file_problem(path)
    if problem == "does not exist":
        raise MissingFileError(f"{what} {path} does not exist: {advice}")
    if problem is not None:
        raise BadFileError(f"{what} {path} {problem}: pass the {what} itself ({option})")
    try:
        # torch.save writes zip archives since PyTorch 1.6; older files cannot be mapped.
        contents = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as error:  # pickle's, zipfile's and torch's words for a file that is not one of torch.save
        raise BadFileError(
            f"cannot read {what} {path} ({first_line(error)}): the file is damaged or not {expected}"
        ) from None
    if not isinstance(contents, dict):
        raise BadFileError(f"{what} {path} holds {value_kind(contents)}, not a dict: use {expected}")
    return contents


def value_kind(value: Any) -> str:
    """What a value is, for a message: "an int", "a list of 2 items", "a tensor of shape (3,)"."""
    import torch  # loaded already: the values described come from torch.load

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    kind = type(value).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    if isinstance(value, (list, tuple, dict)):
        return f"{article} {kind} of {len(value)} item{'' if len(value) == 1 else 's'}"
    return f"{article} {kind}"
