"""The errors opsearch raises for bad input: one base class, one subclass per kind of input.

Each message names the bad value and says how to fix it; the CLI prints it without a traceback.
A configuration that fails to quantize or to run is not an error of this tree: it is a failed trial.
"""

from __future__ import annotations


class OpsearchError(Exception):
    """Base class of every error that stops opsearch because of what the user gave it."""


class ConfigError(OpsearchError):
    """A study setting (from a study file or a flag) is missing or out of range.

    ``setting`` names the setting a check refused, with its ``value`` and the ``problem`` ("must be ..."), so that
    the message can be spelled the way the user wrote it: ``--threads 0`` for a flag, ``intra_op_threads = 0`` in
    a study file (see :meth:`respelled`).
    """

    def __init__(self, message: str, *, setting: str | None = None, value: object = None,
                 problem: str | None = None, other: tuple[str, object, str] | None = None) -> None:
        super().__init__(message)
        self.setting, self.value, self.problem = setting, value, problem
        # A refusal of two settings together (max_rounds below rounds) told from the other's side: (setting, value,
        # problem), so that it is named as typed when only that one was.
        self.other = other

    def respelled(self, spelling: str) -> ConfigError:
        """The same error, the setting written as ``spelling`` (e.g. ``--threads 0``)."""
        if self.problem is None:
            return self
        return ConfigError(f"{spelling} {self.problem}", setting=self.setting, value=self.value,
                           problem=self.problem)

    def spelled_by(self, spellings: dict[str, str]) -> ConfigError | None:
        """The error with its setting as the user wrote it (``spellings``: setting to ``--threads 0``), else the
        other setting it is about; None when the user wrote neither."""
        if self.setting in spellings:
            return self.respelled(spellings[self.setting])
        if self.other is not None and self.other[0] in spellings:
            setting, value, problem = self.other
            return ConfigError(f"{spellings[setting]} {problem}", setting=setting, value=value, problem=problem)
        return None


class ModelError(OpsearchError):
    """The model path or id cannot be used: missing, not ONNX, no tokenizer, unreadable."""


class DatasetError(OpsearchError):
    """The dataset cannot be used: missing, empty, wrong columns, unknown labels, one class."""


class HubUnreachableError(OpsearchError):
    """A hub id was given but the Hugging Face Hub cannot be reached from this machine."""


class StudyError(OpsearchError):
    """The study storage or name cannot be used as asked (missing study, different settings)."""


class TrialFailed(Exception):
    """One trial's configuration could not be quantized or gave unusable outputs.

    Not an :class:`OpsearchError`: the study records the reason on the trial and goes on.
    """


class StudyStopped(BaseException):
    """The study stopped before its work was done, for a reason outside the trial: a signal, a full disk.

    The running trial is put back at the head of the queue (nothing measured is lost) and ``opsearch resume``
    continues. A BaseException, not an Exception, so that Optuna does not record the running trial as failed and
    no ``except Exception`` on the way swallows it. ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Interrupted(StudyStopped):
    """SIGINT (Ctrl-C) or SIGTERM."""

    exit_code = 130


class StorageUnreachable(StudyStopped):
    """The database storage stayed away past ``storage_patience``: the study stops as an interrupted one does, and
    ``opsearch resume`` continues once the database is back."""

    exit_code = 130


class DiskFull(StudyStopped):
    """A write failed for want of space: the message names the path, the space free and the space needed."""

    exit_code = 2
