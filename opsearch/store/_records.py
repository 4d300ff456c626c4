"""What opsearch stores with each trial and with the study, as typed records: the keys are named once, here.

Optuna keeps them as user attributes (JSON values), where optuna-dashboard and people reading a study look.
Every writer goes through :func:`set_trial_attrs`, :func:`trial_attrs` or :func:`set_study_attrs`, which
refuse a key the records do not name; every reader goes through :meth:`TrialRecord.of` or
:meth:`StudyRecord.of`, which read what an older opsearch stored in today's shape (``store._migrate``). A key
not written yet (a trial that has not reached that phase, a study without its baseline) reads as the field's
default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import optuna

from opsearch.config import DEFAULT_METRICS, StudyConfig, default_of, settings_of
from opsearch.errors import StudyError
from opsearch.store._migrate import SCHEMA_VERSION, upgrade_study, upgrade_trial

# What a study that stores no settings of opsearch's (one opsearch did not make) is read as optimizing: the
# setting's default.
DEFAULT_OBJECTIVES: tuple[str, ...] = tuple(default_of(settings_of(StudyConfig)["objectives"][0]))


@dataclass(frozen=True)
class TrialRecord:
    """One trial's stored fields (its parameters and objective values are Optuna's own)."""

    schema: int = SCHEMA_VERSION  # the shape it was written in: stamped first, when a worker takes the trial
    worker: dict | None = None  # {"host", "pid"} of the process running it: a dead one's trial is swept at once
    recipe: dict | None = None  # the QuantRecipe measured, as a dict
    label: str = ""  # the recipe in short words
    preset: str = ""  # the preset's name(s), for trials queued as presets
    # A preset read from the graph as likeliest to lead: it runs before the cost model is built and is never pruned
    # by it. False: another preset, predicted and pruned like a draw. None: a study from before the difference
    # (every preset a starting point).
    starting: bool | None = None
    fail_reason: str = ""  # why it failed or was pruned
    graph_hash: str = ""
    quantized_nodes: dict = field(default_factory=dict)  # fp32 operator type -> nodes computed in int8
    # group key (quantize.find_groups) -> the precision the quantized graph gives it ("dynamic", "static 2/3")
    group_precisions: dict = field(default_factory=dict)
    quantize_seconds: float | None = None
    evaluate_seconds: float | None = None
    evaluated_rows: int | None = None  # the evaluation rows it answered: all, or fewer when it stopped early
    stopped_early: str = ""  # why evaluation or timing stopped early (early stopping), e.g. "over the limit after
    # 300 of 872 rows" (then never timed) or "dominated by trial 2 after 5 rounds (...)" (racing)
    dominated_by: int | None = None  # the trial racing found it surely dominated by
    timing_seconds: float | None = None  # the timed section's wall-clock seconds
    metrics: dict = field(default_factory=dict)  # accuracy, f1, precision, recall (and cosine_to_fp32)
    accuracy: float | None = None
    accuracy_loss: float | None = None  # fp32 accuracy minus this trial's, a fraction
    accuracy_loss_ci: list | None = None  # its paired 95% interval [low, high] (fractions), from the predictions
    accuracy_batch_size: int | None = None  # the batch its accuracy was evaluated in (the timed workload's)
    predictions: str = ""  # its class id for every evaluation row, packed (measure.pack_labels)
    timing: dict = field(default_factory=dict)  # the PairedTiming record
    speedup: float | None = None
    size_mb: float | None = None  # the quantized model file (and its external data) on disk, MB
    same_graph_as: int | None = None  # an earlier trial with the same graph, whose measurements this one shares
    timed_window: list | None = None  # wall-clock start and end of the timed section
    machine_id: str = ""
    machine: dict = field(default_factory=dict)  # fingerprint of the machine that timed it
    retry_of: int | None = None  # a cut-off trial whose configuration this one runs again
    retry_reason: str = ""
    nodes_to_exclude: list = field(default_factory=list)  # kept fp32 on top of the parameters (a fallback)
    fallback_of: int | None = None  # the trial a sensitivity fallback derives from
    repeat_of: int | None = None  # the sampler drew this finished trial's configuration again: pruned, not counted
    instead_of: int | None = None  # queued in place of that repeat: an untried configuration near it
    # The cost model's prediction of its speedup over fp32, {"speedup", "low", "high", "raw"}, made before it ran
    # (search._predict); a sampled trial whose "high" could not reach a trial measured with no accuracy loss was
    # pruned untimed, and names that trial here.
    predicted: dict | None = None
    predicted_below: int | None = None
    suggested_near: int | None = None  # queued by the cost model: the untried neighbour of this trial (the answer
    # so far) it predicted fastest
    constraints: list | None = None  # [loss minus limit]: > 0 is infeasible (Optuna keeps its own copy)
    interrupted: list = field(default_factory=list)  # why and in which phase each stop (a signal, a full disk) cut
    # it off; it then went back to the head of the queue, its number kept
    # The reference pair timed again after this trial (store._drift): {"at", "speedup", "speedup_ci", "graph_hash"}.
    drift_check: dict | None = None

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial | optuna.Trial) -> TrialRecord:
        """Its stored fields in today's shape, whichever opsearch wrote them."""
        return _read(cls, upgrade_trial(trial.user_attrs, getattr(trial, "values", None),
                                        what=f"trial {trial.number}"))


@dataclass(frozen=True)
class StudyRecord:
    """The study's stored fields: everything ``resume``, ``report`` and ``plot`` need besides the trials."""

    schema: int = SCHEMA_VERSION  # the shape its fields were written in, stored with its config when it is made
    opsearch_config: dict | None = None  # StudyConfig.to_dict(): every setting; stored first, the baseline last
    search_space: dict = field(default_factory=dict)
    graph: dict = field(default_factory=dict)  # the exported graph's operator inventory
    machine: dict = field(default_factory=dict)  # fingerprint of the machine that timed the baseline
    versions: dict = field(default_factory=dict)
    threads: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    task: str = ""
    data: dict = field(default_factory=dict)  # description, row counts, labels, majority-class accuracy
    # Of the fp32 model: {"metrics", "timing", "predictions" and "labels" (packed class ids; None: not kept, so no
    # loss intervals nor early stopping), "accuracy_batch_size", "size_mb" (None: not measured)}.
    baseline: dict = field(default_factory=dict)
    baselines: list = field(default_factory=list)  # fp32 timed again on other machines: {"machine_id", ...}
    probe: dict | None = None  # the frozen linear probe of an embedding study
    # The front session: {"at", "trials", "ties", "considered" (None: not listed, every trial counts as seen), ...}.
    front_remeasured: dict = field(default_factory=dict)
    cost_models: dict = field(default_factory=dict)  # machine id -> measure.CostModel.to_dict(), built there once
    # The trial whose pair with fp32 is timed again through the study (store._drift): {"trial", "graph_hash"}.
    drift_reference: dict = field(default_factory=dict)

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """Its stored fields in today's shape, whichever opsearch wrote them."""
        return _read(cls, upgrade_study(study.user_attrs, what=f"study {study.study_name!r}"))

    @property
    def made_by_opsearch(self) -> bool:
        """Its config is stored: the first thing opsearch writes into a study it creates."""
        return self.opsearch_config is not None

    @property
    def complete(self) -> bool:
        """Made by opsearch, with its fp32 baseline measured: trials and workers may run."""
        return self.made_by_opsearch and bool(self.baseline)

    def config(self, study_name: str) -> StudyConfig:
        """The settings the study was made with."""
        if self.opsearch_config is None:
            raise StudyError(f"study {study_name!r} was not made by opsearch: it stores no opsearch settings.")
        return StudyConfig.from_dict(self.opsearch_config, source=f"study {study_name!r}")

    @property
    def objectives(self) -> tuple[str, ...]:
        """What the study optimizes, in its values' order (DEFAULT_OBJECTIVES for a study opsearch did not make)."""
        if self.opsearch_config is None:
            return DEFAULT_OBJECTIVES
        return tuple(self.opsearch_config["objectives"])

    @property
    def metric(self) -> str:
        """The metric the study judges by (``accuracy`` and ``accuracy_loss`` in its records are in it)."""
        if self.baseline.get("metric"):  # stored since metrics beyond accuracy: an evaluator's names its own
            return self.baseline["metric"]
        name = (self.opsearch_config or {}).get("metric", "auto")
        return DEFAULT_METRICS.get(self.task, "accuracy") if name == "auto" else name

    @property
    def baseline_accuracy(self) -> float:
        """fp32's score in the study's metric."""
        return float(self.baseline["metrics"][self.metric])

    @property
    def accuracy_batch_size(self) -> int:
        """The batch its baseline's accuracy was evaluated in, as every trial's is (1 without a baseline)."""
        return int(self.baseline["accuracy_batch_size"]) if self.baseline else 1

    @property
    def reference_throughput(self) -> float:
        """The fp32 samples/s every trial's speedup is scaled by."""
        return float(self.baseline["timing"]["throughput"])


def _read(cls, attrs: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in attrs.items() if k in names})


def _checked(cls, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KeyError(f"{cls.__name__} has no field {unknown}: add it to opsearch/store/_records.py")
    return values


def configuration_of(trial: optuna.trial.FrozenTrial) -> dict | None:
    """The configuration a trial runs, whole: its drawn parameters once its recipe is stored (all drawn); before
    that, a queued trial's is what it was queued with (the parameters drawn so far are only some of it), and a
    sampled trial's is not chosen yet (None)."""
    if TrialRecord.of(trial).recipe is not None:
        return trial.params
    return trial.system_attrs.get("fixed_params")


def trial_attrs(**values: Any) -> dict[str, Any]:
    """User attributes for ``enqueue_trial`` (a preset, a retry, a fallback), checked against TrialRecord."""
    return _checked(TrialRecord, values)


def set_trial_attrs(trial: optuna.Trial, **values: Any) -> None:
    for key, value in _checked(TrialRecord, values).items():
        trial.set_user_attr(key, value)


def set_trial_attrs_by_id(storage: optuna.storages.BaseStorage, trial_id: int, **values: Any) -> None:
    """The same for a trial this process does not run (a dead worker's, swept)."""
    for key, value in _checked(TrialRecord, values).items():
        storage.set_trial_user_attr(trial_id, key, value)


def set_study_attrs(study: optuna.Study, **values: Any) -> None:
    for key, value in _checked(StudyRecord, values).items():
        study.set_user_attr(key, value)
