"""Library chatter a user cannot act on, silenced once per process (the CLI's and each trial process's)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """The export and the quantizer print warnings a user cannot act on; keep the progress readable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    for name in ("optimum", "transformers", "onnxruntime", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna
    import transformers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
