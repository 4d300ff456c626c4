"""Library chatter a user cannot act on: silenced once per process (the CLI's and each trial process's),
and around the quantizer's and optimizer's calls."""

from __future__ import annotations

import contextlib
import io
import logging
import os
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
