"""The study configuration: one validated dataclass that a study file and command-line flags compile into.

Each field is declared once with :func:`setting`: its default, help, choices and check. The CLI's flags and
help text, the identity of a stored study, and the value a study made before a setting existed takes for it (filled
in by opsearch.store when it reads such a study) are derived from those declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import tomllib
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from opsearch.config._choices import (
    ACTIVATION_TYPES,
    CALIBRATED_MODES,
    CALIBRATION_METHODS,
    ENUMERATE,
    ESTIMATORS,
    EXCLUDE_FRAGILE,
    FORMATS,
    FUSIONS,
    ISOLATION,
    METRICS,
    MODES,
    OBJECTIVES,
    SAMPLERS,
    TASKS,
)
from opsearch.config._setting import (
    DATA,
    IDENTITY,
    ISOLATION_GROUP,
    REQUIRED,
    RUNTIME,
    SEARCH,
    TIMING,
    check_value,
    fraction,
    names_with_role,
    positive,
    setting,
    settings_of,
    value_types,
    whole,
)
from opsearch.config._values import (
    accuracy_limit,
    check_duration,
    check_encoding,
    check_evaluator,
    check_label_map,
    check_limit,
    check_study_name,
    duration_seconds,
    parse_label_map,
    parse_number,
    parse_strengths,
    required_value,
)
from opsearch.errors import ConfigError

DEFAULT_RUN_DIR = Path("opsearch-runs")
# The study `opsearch run` runs with no arguments, shipped inside the package.
DEFAULT_STUDY = "default.toml"

# Values that name a local path rather than a hub id. Hub ids never start with "." or "/".
_PATH_PREFIXES = ("./", "../", "/", "~")
_PACKAGE_PREFIX = "package:"


@dataclass
class StudyConfig:
    """Everything that defines a study. Field names follow optimum where optimum has one.

    ``None`` means "derive it": the split from what the dataset has, the columns from their usual names,
    the storage and study name from the model and dataset, the threads from the machine's cores.
    """

    model: str = setting(REQUIRED, "checkpoint folder, .onnx file or folder, package:DIST/path, or hub id",
                         group=DATA, role=IDENTITY, check=required_value, default_help="the default study's")
    dataset: str = setting(REQUIRED, "CSV/TSV/JSON/Parquet file, package:DIST/path, or hub id (glue/sst2)", group=DATA,
                           role=IDENTITY, check=required_value, default_help="the default study's")
    task: str = setting("auto", "classification: the model's own head (one text, or a pair with "
                        "--text-pair-column); regression: a head with one output and number labels; multi-label: a "
                        "sigmoid per label, a list of labels per row; token-classification: a tag per word; "
                        "question-answering: an answer's span in a context read in windows; embedding: "
                        "pooled encoder output scored by a linear probe fitted once on fp32 embeddings; auto: read "
                        "the model's config", group=DATA, role=IDENTITY, choices=TASKS)
    metric: str = setting("auto", "what the study judges by, its loss in points of it: accuracy, f1_macro, "
                          "f1_micro, f1_weighted, mcc (classes); spearman, pearson (regression); f1_*, accuracy "
                          "(multi-label); entity_f1, accuracy (token-classification); squad_f1, exact_match "
                          "(question-answering)", group=DATA,
                          role=IDENTITY, choices=METRICS,
                          default_help="accuracy; spearman for regression, f1_micro for multi-label, entity_f1 for "
                          "token-classification, squad_f1 for question-answering",
                          legacy="auto")
    split: str | None = setting(None, "evaluation split of a hub dataset", group=DATA, role=IDENTITY,
                                default_help="validation, else test, else train")
    text_column: str | None = setting(None, "the text column", group=DATA, role=IDENTITY,
                                      default_help="the first of sentence, text, sentence1, content, review")
    # Your own evaluation (opsearch.measure's evaluators): stored by name, so resume and workers load it again.
    evaluator: str | None = setting(None, "your own evaluation, MODULE:FUNCTION or FILE.py:FUNCTION: called with the "
                                    "candidate model, it returns per-row scores or opsearch.Predictions (see "
                                    "docs/library.md)", group=DATA, role=IDENTITY, check=check_evaluator, legacy=None,
                                    metavar="MODULE:FUNCTION", default_help="the task's metric")
    text_pair_column: str | None = setting(None, "the second text of a pair (an NLI premise's hypothesis, a "
                                           "reranker's passage), given to the tokenizer as text_pair", group=DATA,
                                           role=IDENTITY, legacy=None,
                                           default_help="sentence2 when the text column is sentence1, else none")
    label_column: str | None = setting(None, "the label column", group=DATA, role=IDENTITY,
                                       default_help="label, else labels")
    label_map: dict[str, int] | None = setting(None, "map dataset labels to class ids", group=DATA, role=IDENTITY,
                                               parse=parse_label_map, metavar="NAME=ID,...",
                                               check=check_label_map,
                                               default_help="names matched to the model's id2label")
    exclude_labels: list[str] = setting([], "labels whose rows are left out (e.g. neutral)", group=DATA,
                                        role=IDENTITY, many=True, may_be_empty=True)
    # Where calibration (static) and probe (embedding) samples come from. Without a fit source, rows of the
    # evaluation source are held out once, by a seeded shuffle, and never evaluated.
    fit_dataset: str | None = setting(None, "where calibration and probe rows come from", group=DATA,
                                      role=IDENTITY, default_help="rows held out of the evaluation data")
    fit_split: str | None = setting(None, "split of a hub fit dataset", group=DATA, role=IDENTITY,
                                    default_help="train")
    fit_size: int | None = setting(None, "rows held out of the evaluation data for calibration and the probe",
                                   group=DATA, role=IDENTITY, check=whole(1),
                                   default_help="what the study needs, at most a quarter of the rows")
    max_samples: int | None = setting(None, "cap the evaluation rows (a seeded random subset)", group=DATA,
                                      role=IDENTITY, check=whole(2), default_help="every row")
    max_length: int = setting(256, "tokens per text: longer texts are truncated", group=DATA, role=IDENTITY,
                              check=whole(1))
    # Bytes not valid in it are refused, naming the line: never replaced. Studies stored before this setting
    # read their files as UTF-8 (with invalid bytes replaced, a file that had any is refused now).
    encoding: str = setting("utf-8", "the encoding of local CSV, TSV and JSON files (the fit file's too), e.g. "
                            "latin-1, cp1252, mac_roman", group=DATA, role=IDENTITY, check=check_encoding,
                            legacy="utf-8")
    probe_samples: int = setting(4000, "fit rows the embedding probe is fitted on", group=DATA, role=IDENTITY,
                                 check=whole(1))

    trials: int = setting(20, "how many trials to run now (at most, with --timeout)", group=SEARCH, check=whole(0))
    timeout: float | str | None = setting(
        None, "a time budget for this run, the front session included: 10m, 90s, 1h30m or seconds; trials stop "
        "starting once another and the front session would not fit", group=SEARCH, role=RUNTIME,
        check=check_duration, parse=parse_number, metavar="DURATION", default_help="none")
    modes: list[str] = setting(["dynamic", "static", "weight_only"], "quantization modes searched (mixed: a "
                               "precision per layer and role, opt-in)", group=SEARCH, role=IDENTITY,
                               choices=MODES, many=True)
    all_operators: bool = setting(False, "offer every operator type in the graph, not only the quantizable ones",
                                  group=SEARCH, role=IDENTITY)
    # Graph fusion (optimum's ORTOptimizer) before quantization, searched: "none" is the exported graph.
    fusions: list[str] = setting(["none", "O2"], "graph fusion levels searched before quantization", group=SEARCH,
                                 role=IDENTITY, choices=FUSIONS, many=True, legacy=["none"])
    formats: list[str] = setting(list(FORMATS), "static formats searched", group=SEARCH, role=IDENTITY,
                                 choices=FORMATS, many=True, legacy=["QOperator"])
    # QInt8 activations only with QInt8 weights.
    activation_types: list[str] = setting(list(ACTIVATION_TYPES), "static activation types searched", group=SEARCH,
                                          role=IDENTITY, choices=ACTIVATION_TYPES, many=True, legacy=["QUInt8"])
    calibration_method: str | list[str] = setting("minmax", "static calibration, or a comma list to search",
                                                  group=SEARCH, role=IDENTITY, choices=CALIBRATION_METHODS,
                                                  one_or_many=True)
    calibration_samples: int | list[int] = setting(64, "calibration rows, or a comma list to search", group=SEARCH,
                                                   role=IDENTITY, one_or_many=True, check=whole(1))
    # Calibration inputs are padded to one length: percentile and entropy calibration need equal shapes.
    calibration_max_length: int = setting(128, "tokens each calibration input is padded or cut to", group=SEARCH,
                                          role=IDENTITY, check=whole(1))
    exclude_fragile: bool | str = setting("search", "static: keep layer norms, GELU and residual/mask/embedding "
                                          "Adds in fp32 (on, off or search)", group=SEARCH, role=IDENTITY,
                                          choices=EXCLUDE_FRAGILE, legacy=False, metavar="{on,off,search}",
                                          parse=lambda text: {"on": True, "off": False}.get(text, text))
    # SmoothQuant (quantize._smooth): each role's projections may have their input activations' outlier channels
    # migrated into the weights before quantizing, at one of these strengths or not at all (searched per role).
    smoothing: list[float] = setting([], "smoothing strengths searched for each role's projections (qkv, attn_out, "
                                     "ffn_in, ffn_out) beside none, e.g. 0.5,0.75,0.85: the activations' outlier "
                                     "channels moved into the weights before quantizing (SmoothQuant); off: none",
                                     group=SEARCH, role=IDENTITY, many=True, may_be_empty=True,
                                     check=fraction("0.5"), parse=parse_strengths, metavar="A,B|off", legacy=[],
                                     default_help="off")
    max_accuracy_loss: float | str | None = setting(
        None, "a constraint for the sampler: 0.01 (1 point of the study's metric, accuracy by default) or 1%rel (of "
        "fp32's score)",
        group=SEARCH, check=check_limit, parse=parse_number, metavar="LIMIT", legacy=None, default_help="none")
    objectives: list[str] = setting(["throughput", "accuracy_loss"], "what the study optimizes, two or more: "
                                    "throughput, accuracy_loss, size (the model file, MB), p50/p95/p99 (latency of "
                                    "single calls, ms); the front is taken over all of them", group=SEARCH,
                                    role=IDENTITY, choices=OBJECTIVES, many=True, min_items=2,
                                    legacy=["throughput", "accuracy_loss"])
    sampler: str = setting("tpe", "how trials are chosen", group=SEARCH, choices=SAMPLERS, legacy="tpe")
    enumerate: str = setting("auto", "queue every recipe once instead of sampling (auto: when the space holds no "
                             "more recipes than trials)", group=SEARCH, choices=ENUMERATE, legacy="off")
    # Early stopping (see the README's "Cheaper studies"): a trial's evaluation stops once it is surely over
    # max_accuracy_loss or broken, and its timing once it is surely dominated by a trial measured before it.
    early_stop: bool = setting(True, "stop evaluating a trial surely over the limit or broken, and timing one surely "
                               "dominated", group=SEARCH, role=RUNTIME, flag="--no-early-stop", negate=True,
                               legacy=False)
    # Predictions (docs/search.md, "Predicted speed"): a cost model of this machine, measured once after the
    # starting points, prunes untimed a sampled configuration whose predicted speedup cannot reach a trial measured
    # with no accuracy loss, and ends the study when the sampler keeps drawing only such.
    predict: bool = setting(True, "prune sampled configurations a measured cost model says cannot reach the front, "
                            "and stop when none left can", group=SEARCH, role=RUNTIME, flag="--no-predict",
                            negate=True, legacy=False)
    sweep_operators: bool = setting(False, "also queue each dynamic operator type alone, first", group=SEARCH,
                                    legacy=False)
    seed: int = setting(0, "seeds the sampler and the data split: the same seed suggests the same configurations",
                        group=SEARCH, role=IDENTITY, check=whole(0))
    storage: str | None = setting(None, "Optuna storage URL", group=SEARCH,
                                  default_help="sqlite:///opsearch-runs/STUDY_NAME.db")
    study_name: str | None = setting(None, "the study's name in its storage", group=SEARCH,
                                     check=check_study_name, default_help="MODEL-DATASET")
    storage_patience: float | str = setting(
        "10m", "how long run, resume and worker wait for a database storage that went away (a server restart, a "
        "dropped connection) before stopping as an interrupted study: 10m, 90s or seconds", group=SEARCH,
        role=RUNTIME, check=check_duration, parse=parse_number, metavar="DURATION")

    # Timing: each round runs the candidate and the fp32 model once over the same workload, in shuffled order.
    rounds: int = setting(10, "paired timing rounds measured per trial (fewer for one early stopping finds surely "
                          "dominated)", group=TIMING, check=whole(1))
    max_rounds: int = setting(30, "upper bound on rounds when the interval stays wide", group=TIMING, check=whole(1))
    warmup_rounds: int = setting(2, "rounds run first and discarded", group=TIMING, check=whole(0))
    timing_samples: int = setting(150, "texts per timing round", group=TIMING, check=whole(1))
    ci_target: float = setting(0.02, "add rounds until the speedup's 95% interval is within +-this (relative)",
                               group=TIMING, check=fraction("0.02 for +-2%"))
    margin: float = setting(0.02, "the smallest speed difference worth naming (relative): two speeds whose 95% "
                            "interval lies within +-margin are no different, and one is faster only when its interval "
                            "clears the margin; 0: any difference the interval shows", group=TIMING, role=RUNTIME,
                            check=fraction("0.02 for 2%", zero=True), legacy=0.0)
    speedup_estimator: str = setting(
        "floor", "floor: ratio of each side's summed fastest time per text over rounds, more reproducible between "
        "runs; median: median of per-round ratios, the machine's typical interference included", group=TIMING,
        choices=ESTIMATORS, legacy="median")
    sessions_per_model: int = setting(3, "sessions per model that rounds rotate over, averaging out each "
                                      "session's memory-layout luck", group=TIMING, check=whole(1))
    max_seconds: float = setting(120.0, "stop adding rounds to one trial after this many seconds", group=TIMING,
                                 check=positive("seconds"))
    batch_size: int = setting(1, "1: unpadded texts one by one; N: padded batches", group=TIMING, role=IDENTITY,
                              check=whole(1), legacy=1)
    end_to_end: bool = setting(False, "time tokenization too, as a pipeline user sees it", group=TIMING,
                               role=IDENTITY, legacy=False)
    remeasure_front: bool = setting(True, "time the front again side by side at the end", group=TIMING,
                                    flag="--no-remeasure", negate=True)
    intra_op_threads: int | None = setting(None, "ONNX Runtime intra-op threads", group=TIMING, flag="--threads",
                                           check=whole(1), default_help="physical cores")
    inter_op_threads: int = setting(1, "ONNX Runtime inter-op threads", group=TIMING, check=whole(1))
    allow_spinning: bool = setting(False, "let ONNX Runtime threads spin between runs", group=TIMING, flag="--spin")

    # Where trials run: "process" puts them in a spawned child, so a crash, a hang or a memory blow-up fails
    # that trial only; "none" runs them in this process (quicker to start, for debugging).
    isolation: str = setting("process", "process: each trial runs in a child process, so a crash, hang or memory "
                             "blow-up fails that trial only; none: in this process (for debugging)",
                             group=ISOLATION_GROUP, role=RUNTIME, choices=ISOLATION)
    trial_timeout: float = setting(1800.0, "kill a trial stuck this long in one phase (quantizing, evaluating, "
                                   "timing)", group=ISOLATION_GROUP, role=RUNTIME, check=positive("seconds"),
                                   metavar="SECONDS")
    trial_memory_mb: float | None = setting(None, "kill a trial whose process grows past this many MB",
                                            group=ISOLATION_GROUP, role=RUNTIME, check=positive("megabytes"),
                                            metavar="MB", default_help="half of this machine's memory")

    def __post_init__(self) -> None:
        kinds = _value_types(type(self))
        for name, (_, info) in settings_of(type(self)).items():
            setattr(self, name, check_value(name, getattr(self, name), info, kinds[name]))
        if self.max_rounds < self.rounds:
            problem = f"is below rounds={self.rounds}: raise max_rounds or lower rounds."
            raise ConfigError(f"max_rounds={self.max_rounds!r} {problem}", setting="max_rounds", value=self.max_rounds,
                              problem=problem, other=("rounds", self.rounds, f"is above max_rounds={self.max_rounds}: "
                                                      "lower rounds or raise max_rounds."))
        if self.label_map is not None:
            self.label_map = {str(k): int(v) for k, v in self.label_map.items()}

    # Loading ---------------------------------------------------------------------------------------------

    @classmethod
    def default(cls) -> StudyConfig:
        """The study `opsearch run` runs with no arguments: real assets from PyPI, no hub, a few minutes."""
        with resources.as_file(resources.files("opsearch.config") / DEFAULT_STUDY) as path:
            return cls.from_toml(path)

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
        known, keys = set(settings_of(cls)), {}  # keys: each setting's key as written (fit-size or fit_size)
        for key in raw:
            name = key.replace("-", "_")
            if name in known and keys.setdefault(name, key) != key:
                raise ConfigError(f"study file {str(path)!r} sets {name} twice, as {keys[name]} and {key}: keep one.")
        written = {name: f"{key} = {raw[key]!r} in {path.name}" for name, key in keys.items()}
        raw = {k.replace("-", "_") if k.replace("-", "_") in known else k: v for k, v in raw.items()}
        for key in ("model", "dataset", "fit_dataset"):
            if isinstance(raw.get(key), str):
                raw[key] = resolve_relative(raw[key], path.parent)
        if isinstance(raw.get("storage"), str) and raw["storage"].startswith("sqlite:///"):
            db = raw["storage"][len("sqlite:///"):]
            raw["storage"] = "sqlite:///" + resolve_relative(db if db.startswith("/") else "./" + db, path.parent)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=f"study file {str(path)!r}",
                             spelled={k: s for k, s in written.items() if k not in overrides})

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "the settings",
                  spelled: dict[str, str] | None = None) -> StudyConfig:
        """A config from plain values. ``spelled`` maps settings to how the user wrote them (``--threads 0``), so
        that a refused value is named that way."""
        known = set(settings_of(cls))
        unknown = sorted(set(raw) - known)
        if unknown:
            hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, n=1))
                     else repr(k) for k in unknown]
            raise ConfigError(f"{source} has unknown setting(s) {', '.join(hints)}; known settings: "
                              f"{sorted(known)}.")
        for required in ("model", "dataset"):
            if required not in raw:
                raise ConfigError(f"{source} does not say which {required} to use: set `{required} = ...`.")
        try:
            return cls(**raw)
        except ConfigError as exc:
            respelled = exc.spelled_by(spelled or {})
            if respelled is not None:
                raise respelled from None
            raise ConfigError(f"{source}: {exc}", setting=exc.setting, value=exc.value, problem=exc.problem,
                              other=exc.other) from None
        except TypeError as exc:  # a value of a type no check expects (a table where a number belongs)
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    def identity_changes(self, stored: dict[str, Any]) -> list[str]:
        """The settings that define what a study measures and that differ from a stored study's (``stored``, as
        ``StudyRecord.opsearch_config`` reads it: every setting there), as 'name: old -> new'."""
        new = self.to_dict()
        return [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in names_with_role(type(self), IDENTITY)
                if stored.get(k) != new.get(k)]

    # Derived values ---------------------------------------------------------------------------------------

    @property
    def calibrates(self) -> bool:
        """True when a searched mode calibrates activation ranges on fit rows (CALIBRATED_MODES: static, and mixed:
        its static groups and its ranges pass)."""
        return any(mode in CALIBRATED_MODES for mode in self.modes)

    @property
    def needs_calibration(self) -> bool:
        """True when the study reads calibration rows: a mode calibrates, or smoothing takes the activations'
        channel maxima on them."""
        return self.calibrates or bool(self.smoothing)

    @property
    def calibration_rows(self) -> int:
        """How many calibration inputs to prepare: the most any searched recipe uses."""
        return max(as_list(self.calibration_samples))

    def accuracy_limit(self, baseline_accuracy: float) -> float | None:
        """``max_accuracy_loss`` as a fraction of accuracy, given the fp32 accuracy; None without a limit."""
        return accuracy_limit(self.max_accuracy_loss, baseline_accuracy)

    @property
    def storage_patience_seconds(self) -> float:
        """``storage_patience`` in seconds."""
        return duration_seconds(self.storage_patience)

    @property
    def timeout_seconds(self) -> float | None:
        """``timeout`` in seconds (None: no budget)."""
        return duration_seconds(self.timeout)

    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        return f"{_stem(self.model)}-{_stem(self.dataset)}"

    def resolved_storage(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{DEFAULT_RUN_DIR / (self.resolved_study_name() + '.db')}"


@functools.cache
def _value_types(cls) -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(cls)
    return {name: value_types(hints[name]) for name in settings_of(cls)}


# Settings a resumed study or a worker may change: how trials run here, not what the study measures.
RUNTIME_FIELDS = names_with_role(StudyConfig, RUNTIME)


def resolve_relative(value: str, base: Path) -> str:
    """A path-like value in a study file is relative to that file; hub ids and package assets stay as they are."""
    if value.startswith(_PACKAGE_PREFIX) or not value.startswith(_PATH_PREFIXES[:2]):
        return value
    return str((base / value).resolve())


def as_list(value: Any) -> list:
    """A setting that takes one value or a list, as a list."""
    return list(value) if isinstance(value, list | tuple) else [value]


def _stem(value: str) -> str:
    name = value.rstrip("/").split("/")[-1]
    name = re.sub(r"\.(csv|tsv|json|jsonl|parquet|onnx)$", "", name)
    return re.sub(r"[^\w.\-]", "-", name) or "study"
