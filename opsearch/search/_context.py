"""One study's inputs, each prepared once and only when first asked for: the fp32 model, the data, the tokenizer
and feeds, the calibration inputs, the threads, the timed workload, the search space and the accuracy task.

``run``, ``resume``, ``worker``, ``remeasure``, ``sensitivity`` and ``export`` all prepare a study through
:class:`StudyContext`, so that what a trial measured and what a later command rebuilds cannot drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
import optuna

from opsearch._files import atomic_write_text
from opsearch.config import CALIBRATED_MODES, RUNTIME_FIELDS, StudyConfig, default_of, settings_of
from opsearch.errors import StudyError
from opsearch.measure import (
    ClassificationTask,
    EmbeddingTask,
    EvaluatorTask,
    LinearProbe,
    Metric,
    MultiLabelTask,
    QuestionAnsweringTask,
    RegressionTask,
    SingleTiming,
    ThreadSettings,
    TimingProtocol,
    TokenClassificationTask,
    Workload,
    default_lock_path,
    embed,
    encode,
    encode_padded,
    make_session,
    measure_single,
    metric_for,
    synthetic_inputs,
    timing_lock,
)
from opsearch.quantize import (
    FusionFailed,
    GraphGroups,
    GraphInfo,
    GroupRanges,
    find_groups,
    fused_model,
    inspect_model,
    measure_ranges,
)
from opsearch.search._space import SearchSpace
from opsearch.source import (
    QUESTION_TASKS,
    TAG_TASKS,
    LabelledTexts,
    PreparedModel,
    StudyData,
    has_tokenizer,
    load_study_data,
    plain_onnx,
    prepare_model,
)
from opsearch.store import StudyRecord, cache_dir_for, load_existing, set_study_attrs

Progress = Callable[[str], None]
# Calibration rows the ranges pass runs on: enough to see each layer's range, few enough to cost seconds.
RANGE_ROWS = 32
Task = (ClassificationTask | RegressionTask | MultiLabelTask | TokenClassificationTask | QuestionAnsweringTask
        | EmbeddingTask | EvaluatorTask)


class StudyContext:
    """A study's settings and where it lives, with its inputs prepared on first use (see the module's docstring)."""

    def __init__(self, config: StudyConfig, *, progress: Progress = print) -> None:
        if (config.evaluator is not None and config.modes == default_of(settings_of(StudyConfig)["modes"][0])
                and config.calibrates and plain_onnx(config.model)):
            # The default modes on a model nothing can calibrate: the modes it can take, not a refusal. Made here,
            # before the study is opened, so a stored study holds the modes it searched.
            config = config.replace(modes=[m for m in config.modes if m not in CALIBRATED_MODES])
            progress(f"modes: {', '.join(config.modes)} (static needs calibration inputs, which only the model's "
                     "tokenizer makes, and there is none beside it; --modes chooses)")
        self.config = config
        self.progress = progress
        self.study_name = config.resolved_study_name()
        self.storage = config.resolved_storage()
        self.cache_dir: Path = cache_dir_for(self.storage, self.study_name)
        self.threads = ThreadSettings.resolve(config.intra_op_threads, config.inter_op_threads,
                                              config.allow_spinning)
        self.protocol = TimingProtocol.from_config(config)  # how everything this study times is timed
        self.lock_path: Path | None = default_lock_path()

    @classmethod
    def stored(cls, storage: str, study_name: str, *, progress: Progress = print, **overrides) -> StudyContext:
        """A stored study's context, with the settings it was made with (``overrides``: RUNTIME_FIELDS only)."""
        return cls(load_config(storage, study_name, **overrides), progress=progress)

    # Inputs ---------------------------------------------------------------------------------------------------

    @cached_property
    def model(self) -> PreparedModel:
        started = time.perf_counter()
        cfg = self.config
        model = prepare_model(cfg.model, cache_dir=self.cache_dir, task=cfg.task, notify=self.progress,
                              evaluator=cfg.evaluator is not None)
        if not has_tokenizer(model.folder):  # a plain ONNX model, evaluated by the user's evaluator
            needs = [what for what, needed in (("static calibration", cfg.calibrates),
                                               ("the mixed mode's ranges pass", "mixed" in cfg.modes),
                                               ("--smoothing", bool(cfg.smoothing)),
                                               ("--end-to-end", cfg.end_to_end)) if needed]
            if needs:
                raise StudyError(f"{' and '.join(needs)} need the model's tokenizer, and there is none beside "
                                 f"{str(model.onnx_path)!r}: save it there (tokenizer.save_pretrained(folder)), or "
                                 "search --modes dynamic,weight_only" + (" --smoothing off" if cfg.smoothing else "")
                                 + ".")
            self.progress("model: no tokenizer beside it: your evaluator scores it, and it is timed on inputs of "
                          f"its own signature ({cfg.max_length} tokens a row, drawn at random)")
        self.progress(f"model: {model.onnx_path} ({model.task}), ready in {time.perf_counter() - started:.1f} s")
        return model

    @cached_property
    def metric(self) -> Metric:
        """What the study judges by (``--metric``; auto: the task's usual one)."""
        tags = tuple(self.data.label_names) if self.model.task in TAG_TASKS else ()
        return metric_for(self.config.metric, self.model.task, tags)

    @cached_property
    def data(self) -> StudyData:
        data = load_study_data(self.config, id2label=self.model.id2label, task=self.model.task,
                               tokenizer=self.tokenizer)
        self.progress(f"data: {data.description}")
        return data

    @cached_property
    def graph(self) -> GraphInfo:
        return inspect_model(self.model.onnx_path)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        if not has_tokenizer(self.model.folder):
            return None  # a plain ONNX model with an evaluator (see ``model``)
        tokenizer = AutoTokenizer.from_pretrained(self.model.folder)
        if self.model.task in TAG_TASKS + QUESTION_TASKS and not tokenizer.is_fast:
            raise StudyError(f"a {self.model.task} study reads words and spans through a fast tokenizer, and the "
                             f"one in {str(self.model.folder)!r} is not: save it with a tokenizer.json "
                             "(AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)).")
        return tokenizer

    @cached_property
    def workload(self) -> Workload:
        cfg = self.config
        if self.tokenizer is None:
            inputs = synthetic_inputs(self.model.onnx_path, rows=cfg.timing_samples, batch_size=cfg.batch_size,
                                      length=cfg.max_length, seed=cfg.seed)
            return Workload([], None, batch_size=cfg.batch_size, max_length=cfg.max_length, inputs=inputs)
        return Workload(self.data.eval.texts[: cfg.timing_samples], self.tokenizer, batch_size=cfg.batch_size,
                        max_length=cfg.max_length, end_to_end=cfg.end_to_end)

    @cached_property
    def calibration(self) -> dict[str, np.ndarray] | None:
        """Static calibration's inputs, all padded to one length; None for a study without static mode."""
        if not self.config.needs_calibration:
            return None
        return encode_padded(self.tokenizer, self.data.fit.texts[: self.config.calibration_rows],
                             length=self.config.calibration_max_length)

    @cached_property
    def ranges(self) -> GroupRanges | None:
        """The ranges pass (``quantize.measure_ranges``) on the calibration rows, made once per study and kept in
        its cache (workers and resumed runs read it); None for a study without the mixed mode."""
        if "mixed" not in self.config.modes:
            return None
        path = self.cache_dir / "ranges.json"
        source = self.model.onnx_path.stat()
        stamp = {"model": [source.st_size, source.st_mtime_ns], "rows": RANGE_ROWS,
                 "length": self.config.calibration_max_length}
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("stamp") == stamp:
                return GroupRanges.from_dict(stored["ranges"])
        started = time.perf_counter()
        self.progress(f"ranges: each group's activation range and int8 error on {RANGE_ROWS} calibration rows ...")
        ranges = measure_ranges(self.model.onnx_path, self.calibration, rows=RANGE_ROWS,
                                threads=self.threads.intra_op_threads)
        worst = ", ".join(f"{key} {ranges.errors()[key]['static']:.1%}" for key in ranges.ranking("static")[:3])
        self.progress(f"ranges: {len(ranges.groups)} groups in {time.perf_counter() - started:.1f} s; worst under "
                      f"static int8: {worst} (see `opsearch inspect --ranges`)")
        atomic_write_text(path, json.dumps({"stamp": stamp, "ranges": ranges.to_dict()}))
        return ranges

    @cached_property
    def space(self) -> SearchSpace:
        space = _search_space(self.config, self.graph, self.model, self.cache_dir, self.progress,
                              ranges=self.ranges)
        self.progress("search space: " + "; ".join(f"{m}: {', '.join(ops)}" for m, ops in space.operators.items())
                      + f" ({space.size()} recipes)")
        return space

    def accuracy_batch_size(self, study: optuna.Study) -> int:
        """Accuracy is evaluated in the timed workload's batches (dynamic quantization computes its activation
        scales per batch, so batching changes the answers); a measured study keeps its baseline's batch."""
        record = StudyRecord.of(study)
        return record.accuracy_batch_size if record.complete else self.config.batch_size

    def task(self, study: optuna.Study, *, rows: LabelledTexts | None = None, fit_probe: bool = False) -> Task:
        """The accuracy task on ``rows`` (None: the evaluation split), batched as the timed workload is (same order,
        same padding): the user's evaluator when the study names one, else the model's task. An embedding study
        scores through the probe stored with it; ``fit_probe`` fits and stores one when the study has none yet (a
        new study)."""
        rows = self.data.eval if rows is None else rows
        feeds = [] if self.tokenizer is None else encode(self.tokenizer, rows.texts, max_length=self.config.max_length,
                                                         batch_size=self.accuracy_batch_size(study))
        if self.config.evaluator is not None:
            return EvaluatorTask(self.config.evaluator, texts=rows.texts, labels=rows.labels, feeds=feeds)
        if self.model.task == "classification":
            return ClassificationTask(feeds, rows.labels, metric=self.metric)
        if self.model.task == "regression":
            return RegressionTask(feeds, rows.labels, metric=self.metric)
        if self.model.task == "multi-label":
            return MultiLabelTask(feeds, rows.labels, metric=self.metric)
        if self.model.task in TAG_TASKS:
            return TokenClassificationTask(feeds, rows.labels, metric=self.metric)
        if self.model.task in QUESTION_TASKS:
            return QuestionAnsweringTask(feeds, rows.texts, rows.answers, metric=self.metric)
        probe = self._probe(study, fit=fit_probe)
        return EmbeddingTask(feeds, rows.labels, probe=probe, pooling=self.model.pooling,
                             normalize=self.model.normalize, metric=self.metric)

    def _probe(self, study: optuna.Study, *, fit: bool) -> LinearProbe:
        stored = StudyRecord.of(study).probe
        if stored is not None:
            probe = LinearProbe.from_dict(stored)
            self.progress(f"probe: reusing the study's frozen probe (fitted on {probe.n_fit} fp32 embeddings)")
            return probe
        if not fit:
            raise StudyError(f"study {self.study_name!r} is an embedding study without its probe: its baseline "
                             "never finished; start it again with `opsearch run`.")
        cfg = self.config
        rows = self.data.fit.take(cfg.probe_samples)
        if len(set(rows.labels.tolist())) < 2:
            raise StudyError("the probe's fit rows hold one class only: raise fit_size or probe_samples, or give "
                             "fit_dataset.")
        self.progress(f"probe: embedding {len(rows)} fit rows with the fp32 model ...")
        started = time.perf_counter()
        x = embed(self.fp32_session, encode(self.tokenizer, rows.texts, max_length=cfg.max_length),
                  pooling=self.model.pooling, normalize=self.model.normalize)
        probe = LinearProbe.fit(x, rows.labels, seed=cfg.seed)
        set_study_attrs(study, probe=probe.to_dict())
        self.progress(f"probe: fitted in {time.perf_counter() - started:.1f} s (accuracy on its fit rows "
                      f"{probe.fit_accuracy:.4f}), frozen with the study")
        return probe

    # Sessions and fp32 timing ------------------------------------------------------------------------------------

    @cached_property
    def fp32_session(self):
        """The fp32 model's session this process evaluates with (the baseline, the probe, the cosine)."""
        return make_session(self.model.onnx_path, self.threads)

    @contextmanager
    def fp32_timing_sessions(self) -> Iterator[list]:
        """The fp32 sessions timing rounds rotate over (``sessions_per_model``), open only while this process
        times fp32: trials open fp32 sessions of their own (in a child process by default), so holding these
        through a search would only double the fp32 model's memory."""
        sessions = [self.fp32_session, *(make_session(self.model.onnx_path, self.threads)
                                         for _ in range(self.protocol.sessions_per_model - 1))]
        try:
            yield sessions
        finally:
            sessions.clear()  # a caller still holding the list holds no session

    def time_fp32(self) -> SingleTiming:
        """fp32 alone over the workload, under the machine's timing lock: the study's reference throughput."""
        with self.fp32_timing_sessions() as fp32, timing_lock(self.lock_path, holder=self.study_name,
                                                              on_wait=self.progress):
            return measure_single(self.workload.runner(fp32), protocol=self.protocol,
                                  samples_per_round=self.workload.samples)


def load_config(storage: str, study_name: str, *, measured: bool = True, **overrides) -> StudyConfig:
    """The config a stored study was made with, pointed at ``storage`` (``overrides``: RUNTIME_FIELDS only).

    ``measured``: the study's fp32 baseline must be complete (a worker's, a report's need); ``resume`` continues a
    study stopped before that."""
    study = load_existing(storage, study_name)
    record = StudyRecord.of(study)
    if not record.made_by_opsearch:
        raise StudyError(f"study {study_name!r} in {storage!r} was not made by opsearch: it stores no opsearch "
                         "settings. Start a study of your own with `opsearch run --study-name NEW`.")
    if measured and not record.complete:
        raise StudyError(f"study {study_name!r} in {storage!r} has no fp32 baseline yet: its `opsearch run` is "
                         "still measuring it, or was stopped before it finished; continue it with `opsearch resume "
                         f"--storage {storage} --study-name {study_name}`.")
    bad = sorted(set(overrides) - set(RUNTIME_FIELDS))
    if bad:
        raise StudyError(f"{bad} cannot change in a stored study (only {list(RUNTIME_FIELDS)} can): start a new "
                         "study with `opsearch run --study-name NEW` instead.")
    return record.config(study_name).replace(storage=storage, study_name=study_name, **overrides)


def _search_space(config: StudyConfig, graph: GraphInfo, model: PreparedModel, cache_dir: Path,
                  progress: Progress, *, ranges: GroupRanges | None = None) -> SearchSpace:
    """The space over the exported graph and each fusion level the optimizer can make of it (made once)."""
    fused: dict[str, GraphInfo] = {}
    groups: dict[str, GraphGroups] = {}
    mixed = "mixed" in config.modes
    if mixed and "none" in config.fusions:
        groups["none"] = _groups_of(model.onnx_path)
    for level in config.fusions:
        if level == "none":
            continue
        started = time.perf_counter()
        try:
            path = fused_model(model.onnx_path, level, cache_dir=cache_dir)
            fused[level] = inspect_model(path)
            if mixed:
                groups[level] = _groups_of(path)
        except FusionFailed as exc:
            progress(f"WARNING: {exc}; fusion {level} is left out of the search")
            continue
        progress(f"fusion {level}: {sum(o.count for o in fused[level].operators)} nodes (from "
                 f"{sum(o.count for o in graph.operators)}), made in {time.perf_counter() - started:.1f} s")
    levels = [level for level in config.fusions if level == "none" or level in fused]
    if not levels:
        raise StudyError(f"no fusion level of {config.fusions} could be made for this model: add \"none\" to "
                         "fusions to search the exported graph.")
    exclude = [False, True] if config.exclude_fragile == "search" else [bool(config.exclude_fragile)]
    return SearchSpace.from_graph(graph, modes=config.modes, all_operators=config.all_operators,
                                  calibration_method=config.calibration_method,
                                  calibration_samples=config.calibration_samples, fusions=levels, fused=fused,
                                  formats=config.formats, activation_types=config.activation_types,
                                  exclude_fragile=exclude, groups=groups,
                                  sensitivity=ranges.errors() if ranges is not None else None,
                                  smoothing=config.smoothing)


def _groups_of(path: Path) -> GraphGroups:
    import onnx

    return find_groups(onnx.load(str(path), load_external_data=False))
