"""Exporting a trial as a ready model folder: the quantized ONNX model, its tokenizer and config, optimum's
``ort_config.json``, and ``opsearch-trial.json`` with the measurements and the exact recipe that made it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import optuna

from opsearch._files import atomic_folder
from opsearch.errors import OpsearchError, StudyError
from opsearch.quantize import QuantRecipe, quantize
from opsearch.store import StudyRecord, TrialRecord, best_within, trial_rows

TRIAL_FILE = "opsearch-trial.json"
# The tokenizer and config files a model folder may carry beside its ONNX file.
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                "merges.txt", "sentencepiece.bpe.model", "spiece.model")


def choose_trial(study: optuna.Study, *, trial: int | None = None, max_accuracy_loss: float | None = None,
                 by: str = "throughput") -> int:
    """The trial asked for, or the fastest whose accuracy loss is at most ``max_accuracy_loss`` (a fraction; None:
    any loss): the trial the report names best within that limit. ``by`` another objective (``size``, ``p99``,
    ...): the best by that one within the limit instead, as the report names it."""
    rows = trial_rows(study, max_accuracy_loss=max_accuracy_loss)
    if trial is not None:
        if trial not in {r.trial for r in rows}:
            exists = 0 <= trial < len(study.trials)
            what = f"did not complete ({study.trials[trial].state.name})" if exists else "does not exist"
            raise StudyError(f"trial {trial} of study {study.study_name!r} {what}; completed trials: "
                             f"{sorted(r.trial for r in rows)}.")
        return trial
    best = best_within(rows, max_accuracy_loss, objective=by)
    if best is None:
        raise StudyError(f"no completed trial of {study.study_name!r} loses at most {max_accuracy_loss} accuracy; "
                         "raise --max-accuracy-loss or run more trials.")
    return best.trial


def export_trial(study: optuna.Study, number: int, out_dir: str | Path, *, storage: str) -> Path:
    """Quantize the trial's recipe again, check it gives the recorded graph, and write a loadable folder."""
    from opsearch.search import StudyContext

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OpsearchError(f"{str(out_dir)!r} exists and is not empty: choose a new folder.")
    context = StudyContext.stored(storage, study.study_name, progress=lambda line: None)
    measured, stored = TrialRecord.of(study.trials[number]), StudyRecord.of(study)
    recipe = QuantRecipe.from_dict(measured.recipe)
    calibration = context.calibration if recipe.needs_rows else None
    model = context.model
    # Written beside out_dir and renamed into place whole: a failed check or a full disk leaves nothing behind.
    with atomic_folder(out_dir, prefix=".export-", needs_bytes=2 * model.onnx_path.stat().st_size) as folder:
        quantized = quantize(recipe, fp32_path=model.onnx_path, out_dir=folder / ".model", calibration=calibration,
                             cache_dir=context.cache_dir)
        if quantized.graph_hash != measured.graph_hash:
            raise OpsearchError(f"trial {number}'s recipe now gives another graph than the study measured "
                                "(the quantizer or the model changed): its measurements would not describe it.")
        for name in _MODEL_FILES:
            source = model.folder / name
            if source.exists() and not (quantized.path.parent / name).exists():
                shutil.copy2(source, quantized.path.parent / name)
        record = {
            "study": study.study_name, "trial": number, "preset": measured.preset or None,
            "recipe": recipe.to_dict(), "graph_hash": quantized.graph_hash,
            "quantized_nodes": measured.quantized_nodes, "metrics": measured.metrics,
            # The loss (a fraction, its paired 95% interval) in the study's metric, fp32's minus the trial's.
            "metric": stored.metric, "metric_loss": measured.accuracy_loss,
            "accuracy_loss": measured.accuracy_loss, "accuracy_loss_ci": measured.accuracy_loss_ci,
            # The batch its accuracy was evaluated in, as the workload was timed (dynamic int8 answers per batch).
            "accuracy_batch_size": measured.accuracy_batch_size,
            "timing": measured.timing,
            "timing_front_session": stored.front_remeasured.get("trials", {}).get(str(number)),
            **{k: v for k, v in dataclasses.asdict(stored).items()
               if k in ("baseline", "task", "probe", "machine", "versions")},
            "study_config": stored.opsearch_config,
        }
        (quantized.path.parent / TRIAL_FILE).write_text(json.dumps(record, indent=2))
        for item in list(quantized.path.parent.iterdir()):
            item.rename(folder / item.name)
        quantized.path.parent.rmdir()
    return out_dir
