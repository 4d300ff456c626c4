"""MiniLM SST-2 judged by your own evaluation through the Python API: an evaluator that computes Matthews'
correlation from the candidate's logits (Intel Neural Compressor's ``eval_func``, Olive's custom metric).

    python studies/minilm_sst2_mcc.py [TRIALS]

It runs studies/minilm-sst2.toml's study under another name, with ``evaluator=mcc``: the study stores the evaluator
as ``studies/minilm_sst2_mcc.py:mcc``, so ``opsearch resume`` and ``opsearch worker`` load it again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import matthews_corrcoef

from opsearch import Predictions, StudyConfig, build_report, format_report, run_study


def mcc(candidate) -> Predictions:
    """The candidate's class per evaluation row (the argmax of its logits), scored by MCC against the labels."""
    logits = np.concatenate(candidate.run("logits"))
    return Predictions(logits.argmax(axis=1), candidate.labels, matthews_corrcoef, name="MCC (evaluator)")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    config = StudyConfig.from_toml(here / "minilm-sst2.toml", study_name="minilm-sst2-mcc",
                                   max_accuracy_loss=0.02, timeout="6m")
    study = run_study(config, n_trials=int(sys.argv[1]) if len(sys.argv) > 1 else None, evaluator=mcc)
    print(format_report(build_report(study, max_accuracy_loss=config.max_accuracy_loss)))
