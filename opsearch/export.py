"""Exporting a trial as a ready model folder: the quantized ONNX model, its tokenizer and config, optimum's
``ort_config.json``, and ``opsearch-trial.json`` with the measurements and the exact recipe that made it."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import optuna

from opsearch.errors import OpsearchError, StudyError
from opsearch.quantize import QuantRecipe, quantize
from opsearch.report import build_report

TRIAL_FILE = "opsearch-trial.json"


def choose_trial(study: optuna.Study, *, trial: int | None = None, max_accuracy_loss: float | None = None) -> int:
    """The trial asked for, or the fastest whose accuracy loss is at most ``max_accuracy_loss`` (a fraction)."""
    rows = build_report(study).rows
    if trial is not None:
        if trial not in {r.trial for r in rows}:
            raise StudyError(f"trial {trial} of study {study.study_name!r} did not complete; completed trials: "
                             f"{sorted(r.trial for r in rows)}.")
        return trial
    limit = math.inf if max_accuracy_loss is None else 100 * max_accuracy_loss
    eligible = [r for r in rows if r.accuracy_loss_pt <= limit and r.same_graph_as is None]
    if not eligible:
        raise StudyError(f"no completed trial of {study.study_name!r} loses at most {max_accuracy_loss} accuracy; "
                         "raise --max-accuracy-loss or run more trials.")
    return max(eligible, key=lambda r: r.samples_per_s).trial


def export_trial(study: optuna.Study, number: int, out_dir: str | Path, *, storage: str) -> Path:
    """Quantize the trial's recipe again, check it gives the recorded graph, and write a loadable folder."""
    from opsearch.data import load_study_data
    from opsearch.model_source import prepare_model
    from opsearch.runtime import encode_padded
    from opsearch.study import cache_dir_for, stored_config

    frozen = study.trials[number]
    config = stored_config(study)  # settings the study predates read as it searched them
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OpsearchError(f"{str(out_dir)!r} exists and is not empty: choose a new folder.")
    model = prepare_model(config.model, cache_dir=cache_dir_for(storage, study.study_name), task=config.task)
    recipe = QuantRecipe.from_dict(frozen.user_attrs["recipe"])
    calibration = None
    if recipe.mode == "static":
        from transformers import AutoTokenizer

        data = load_study_data(config, id2label=model.id2label, task=model.task)
        calibration = encode_padded(AutoTokenizer.from_pretrained(model.folder),
                                    data.fit.texts[: config.calibration_rows], length=config.calibration_max_length)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir.parent if out_dir.parent.exists() else None) as t:
        quantized = quantize(recipe, fp32_path=model.onnx_path, out_dir=Path(t) / "model", calibration=calibration,
                             cache_dir=cache_dir_for(storage, study.study_name))
        if quantized.graph_hash != frozen.user_attrs["graph_hash"]:
            raise OpsearchError(f"trial {number}'s recipe now gives another graph than the study measured "
                                "(the quantizer or the model changed): its measurements would not describe it.")
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                     "merges.txt", "sentencepiece.bpe.model", "spiece.model"):
            source = model.folder / name
            if source.exists() and not (quantized.path.parent / name).exists():
                shutil.copy2(source, quantized.path.parent / name)
        remeasured = study.user_attrs.get("front_remeasured", {}).get("trials", {}).get(str(number))
        record = {
            "study": study.study_name, "trial": number, "preset": frozen.user_attrs.get("preset"),
            "recipe": recipe.to_dict(), "graph_hash": quantized.graph_hash,
            "quantized_nodes": frozen.user_attrs["quantized_nodes"], "metrics": frozen.user_attrs["metrics"],
            "accuracy_loss": frozen.user_attrs["accuracy_loss"], "timing": frozen.user_attrs["timing"],
            "timing_front_session": remeasured, "baseline": study.user_attrs.get("baseline"),
            "task": study.user_attrs.get("task"), "probe": study.user_attrs.get("probe"),
            "machine": study.user_attrs.get("machine"), "versions": study.user_attrs.get("versions"),
            "study_config": study.user_attrs["opsearch_config"],
        }
        (quantized.path.parent / TRIAL_FILE).write_text(json.dumps(record, indent=2))
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in quantized.path.parent.iterdir():
            shutil.move(str(item), out_dir / item.name)
    return out_dir
