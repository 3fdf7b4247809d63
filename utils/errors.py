"""The project's own error base class.

A :class:`UserError` means bad input (a flag, a file, a dataset, a checkpoint): the command-line entry points
print its message as one line and exit with status 1, without a traceback. Any other exception is a bug and
keeps its traceback. Each layer defines its subclasses next to the code that raises them (``ModelYamlError``,
``DatasetError``, ``CheckpointError``, ``BackendError``, ``ExportError``, ``DownloadError``, ``TrainError``).
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input, reported as one line naming the file, line or flag."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (also a FileNotFoundError for callers that catch that)."""
