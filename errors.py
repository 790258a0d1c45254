"""Errors that describe a user's mistake rather than a bug.

Scripts catch `IQAError` and print its message as one line, without a traceback.
Each subclass also derives from the matching built-in exception, so library users
can keep catching `ValueError` or `FileNotFoundError` as they would anyway.
"""


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
