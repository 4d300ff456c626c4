"""The fp32 baseline: measured once when a study is new (its accuracy and per-row answers, its timing, and what the
study ran on), and fp32 timed again first when a study is resumed on another machine or setting."""

from __future__ import annotations

from opsearch.errors import StudyError, TrialFailed
from opsearch.measure import (
    Evaluation,
    check_fp32,
    fingerprint_changes,
    library_versions,
    machine_id,
    pack_labels,
)
from opsearch.quantize import model_file_mb
from opsearch.search._context import StudyContext, Task
from opsearch.store import StudyRecord, set_study_attrs


def measure_baseline(context: StudyContext, study, task: Task, machine: dict) -> None:
    """Evaluate and time fp32, then store the baseline; refused (``StudyError``) when fp32 is no better than the
    majority class. The baseline is stored last: workers take a study with a baseline for a complete one."""
    data, progress = context.data, context.progress
    evaluator = context.config.evaluator
    progress(f"fp32 baseline: {'evaluator ' + evaluator if evaluator else context.metric.title} on the evaluation "
             "split ...")
    try:
        evaluation: Evaluation = task.evaluate(context.fp32_session)
    except TrialFailed as exc:  # the evaluator failed on fp32: nothing to measure losses against
        raise StudyError(f"the fp32 model could not be evaluated: {exc}") from None
    metric = task.metric
    majority = None if evaluator else check_fp32(evaluation, data.eval.labels, context.model.task)
    progress("fp32 baseline: timing ...")
    timing = context.time_fp32()
    set_study_attrs(study, search_space=context.space.to_dict(), graph=context.graph.to_dict(),
                    machine=machine, versions=library_versions(), threads=context.threads.__dict__,
                    workload=context.workload.describe(), task=context.model.task,
                    data={"description": data.description, "eval_rows": len(data.eval), "fit_rows": len(data.fit),
                          "labels": data.label_names, "majority_accuracy": majority})
    set_study_attrs(study, baseline={"metrics": evaluation.metrics, "metric": metric.name,
                                     "timing": timing.to_dict(),
                                     "predictions": pack_labels(evaluation.predictions),
                                     "labels": pack_labels(task.labels),
                                     "accuracy_batch_size": context.accuracy_batch_size(study),
                                     "size_mb": model_file_mb(context.model.onnx_path)})
    chance = "" if majority is None else f" (majority class {majority:.4f})"
    progress(f"fp32 baseline: {metric.title} {evaluation.score:.4f}{chance}, "
             f"{timing.throughput:.1f} samples/s (cv {timing.cv:.1%} over {len(timing.seconds)} rounds)")


def time_fp32_here(context: StudyContext, study, machine: dict) -> None:
    """Resuming elsewhere (another CPU, ONNX Runtime or thread setting) warns and times fp32 here first.

    Speedups stay comparable, since each is paired with fp32 on the machine that measured it; the new
    baseline is stored beside the first, and each trial records the id of the machine it ran on.
    """
    record = StudyRecord.of(study)
    here = machine_id(machine)
    if here in {b["machine_id"] for b in record.baselines} | {machine_id(record.machine)}:
        return
    context.progress("WARNING: this study was measured on another machine or setting ("
                     + "; ".join(fingerprint_changes(record.machine, machine))
                     + "). Speedups are paired with fp32 on each machine, so they stay comparable; "
                     "timing fp32 here before any new trial ...")
    timing = context.time_fp32()
    set_study_attrs(study, baselines=[*record.baselines, {"machine_id": here, "machine": machine,
                                                         "timing": timing.to_dict()}])
    context.progress(f"fp32 here: {timing.throughput:.1f} samples/s (the study's reference: "
                     f"{record.reference_throughput:.1f})")
