"""Library chatter a user cannot act on: silenced once per process (the CLI's and each trial process's),
and around the quantizer's and optimizer's calls."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings


def quiet_libraries() -> None:
    """The export and the quantizer print warnings a user cannot act on; keep the progress readable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Read when transformers and datasets are first imported: a command that needs neither never pays for them.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    for name in ("optimum", "transformers", "onnxruntime", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna  # every command but inspect and bench reads a study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, FailedTrialFilter) for f in handler.filters):
            handler.addFilter(FailedTrialFilter())


class FailedTrialFilter(logging.Filter):
    """Optuna logs a trial that raised opsearch's ``TrialFailed`` with its traceback, then "failed with value
    None"; opsearch prints the trial's one line with its reason itself, so both are left out."""

    _VALUE_NONE = re.compile(r"^Trial \d+ failed with value None\.$")

    def filter(self, record: logging.LogRecord) -> bool:
        from opsearch.errors import TrialFailed

        if record.exc_info and isinstance(record.exc_info[1], TrialFailed):
            return False
        return self._VALUE_NONE.match(record.getMessage()) is None


@contextlib.contextmanager
def quiet():
    """For the length of one call: the quantizer and optimizer print calibration chatter and shape-inference
    dumps on stdout and the root logger that a user cannot act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
