"""Errors that describe a user's mistake rather than a bug, all of them defined here.

Scripts print an `IQAError`'s message as one line, without a traceback (cli/scripts.py).
Each subclass also derives from the matching built-in exception, so library users can keep
catching `ValueError` or `FileNotFoundError` as they would anyway.
"""

from __future__ import annotations


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
