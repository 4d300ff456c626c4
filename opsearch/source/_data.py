"""Labelled text for a study: the evaluation split, and the fit split (calibration and probe samples).

DATA is a local CSV, TSV, JSON(L) or Parquet file, a file inside an installed package
(``package:DIST/path``), or a hub dataset id (``glue/sst2`` or ``ID:CONFIG``). Everything is loaded
with ``datasets``; the columns are named or found, and the labels are mapped to the model's classes.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsearch.config import StudyConfig
from opsearch.errors import DatasetError
from opsearch.source._hub import ensure_hub_reachable
from opsearch.source._model import is_local_spec, resolve_local

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("sentence", "text", "sentence1", "content", "review")
LABEL_COLUMNS = ("label", "labels")
_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class LabelledTexts:
    texts: list[str]
    labels: np.ndarray  # class ids, int64

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, n: int) -> LabelledTexts:
        return LabelledTexts(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class StudyData:
    """The evaluation rows and, disjoint from them, the rows calibration and probes may use."""

    eval: LabelledTexts
    fit: LabelledTexts
    label_names: list[str]
    description: str


def load_study_data(config: StudyConfig, *, id2label: dict[int, str] | None, task: str) -> StudyData:
    """Load, split, map labels. The split is seeded by ``config.seed``, so it is the same on every resume."""
    eval_source, eval_split = _load(config.dataset, config.split, role="evaluation")
    text_col, label_col = _columns(eval_source, config)
    rng = np.random.default_rng(config.seed)

    eval_texts, eval_raw = _rows(eval_source, text_col, label_col, config.exclude_labels)
    if config.fit_split and not config.fit_dataset and is_local_spec(config.dataset):
        raise DatasetError(f"fit_split={config.fit_split!r} names a split of a hub dataset, but {config.dataset!r} is "
                           "a local file with no splits: give the fit rows' file as fit_dataset, or drop fit_split "
                           "to hold out fit_size rows of the file.")
    if config.fit_dataset or config.fit_split:
        fit_source, fit_split = _load(config.fit_dataset or config.dataset, config.fit_split or "train", role="fit")
        fit_texts, fit_raw = _rows(fit_source, *_columns(fit_source, config), config.exclude_labels)
        fit_order = rng.permutation(len(fit_texts))
        how = f"fit rows from {config.fit_dataset or config.dataset} [{fit_split}]"
    else:
        fit_size, why = _fit_size(config, task, len(eval_texts))
        order = rng.permutation(len(eval_texts))
        fit_idx, eval_idx = order[:fit_size], order[fit_size:]
        fit_texts, fit_raw = [eval_texts[i] for i in fit_idx], [eval_raw[i] for i in fit_idx]
        eval_texts, eval_raw = [eval_texts[i] for i in eval_idx], [eval_raw[i] for i in eval_idx]
        fit_order = np.arange(len(fit_texts))
        how = (f"{fit_size} rows held out by a shuffle seeded {config.seed} for {why}" if fit_size
               else f"no rows held out ({why})")

    if config.max_samples is not None and len(eval_texts) > config.max_samples:
        keep = np.sort(rng.permutation(len(eval_texts))[: config.max_samples])
        eval_texts, eval_raw = [eval_texts[i] for i in keep], [eval_raw[i] for i in keep]

    mapping, label_names = _label_mapping(eval_raw, config, id2label=id2label, task=task, dataset=config.dataset)
    eval_data = LabelledTexts(eval_texts, np.array([mapping[str(v)] for v in eval_raw], dtype=np.int64))
    fit_known = [i for i in fit_order if str(fit_raw[i]) in mapping]
    fit_data = LabelledTexts([fit_texts[i] for i in fit_known],
                             np.array([mapping[str(fit_raw[i])] for i in fit_known], dtype=np.int64))
    classes = Counter(eval_data.labels.tolist())
    if len(classes) < 2:
        raise DatasetError(f"the evaluation rows of {config.dataset!r} hold one class only ({dict(classes)}): "
                           "accuracy would mean nothing. Use a split with every class.")
    description = (f"{config.dataset} [{eval_split}]: {len(eval_data)} evaluation rows "
                   f"(columns {text_col!r}, {label_col!r}); {how}")
    return StudyData(eval=eval_data, fit=fit_data, label_names=label_names, description=description)


# Without a fit source, at most this share of the rows is held out for calibration and the probe.
MAX_HELD_OUT_SHARE = 0.25


def _fit_size(config: StudyConfig, task: str, rows: int) -> tuple[int, str]:
    """How many of the evaluation file's rows to hold out, and what for: ``fit_size`` when set, else what the study
    needs (static calibration's rows, the embedding probe's), at most a quarter of the rows."""
    if config.fit_size is not None:
        if rows <= config.fit_size + 1:
            raise DatasetError(
                f"dataset {config.dataset!r} has {rows} usable rows, too few to hold out fit_size={config.fit_size} "
                "for calibration/probe and still evaluate: lower fit_size or give fit_dataset.")
        return config.fit_size, "calibration/probes (fit_size)"
    uses = []
    if "static" in config.modes:
        uses.append(("static calibration", config.calibration_rows))
    if task == "embedding":
        uses.append(("the probe", config.probe_samples))
    if not uses:
        return 0, "a dynamic-only classification study needs none"
    needed = max(n for _, n in uses)
    cap = int(rows * MAX_HELD_OUT_SHARE)
    held = min(needed, cap)
    if held < 2:
        raise DatasetError(f"dataset {config.dataset!r} has {rows} usable rows, too few to hold out rows for "
                           f"{' and '.join(u for u, _ in uses)} and still evaluate: give fit_dataset.")
    why = " and ".join(u for u, _ in uses)
    cut = "" if held == needed else f"; {needed} wanted, capped at a quarter of the rows"
    return held, f"{why}{cut}"


def load_texts(spec: str, *, split: str | None = None, text_column: str | None = None) -> list[str]:
    """The text column of a dataset, in order (for timing workloads that need no labels)."""
    dataset, _ = _load(spec, split, role="timing")
    columns = list(dataset.column_names)
    column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if column not in columns:
        raise DatasetError(f"no text column {text_column or list(TEXT_COLUMNS)} in {spec!r}; its columns are "
                           f"{columns}. Pass --text-column with one of them.")
    return [t for t in dataset[column] if isinstance(t, str) and t.strip()]


def _load(spec: str, split: str | None, *, role: str):
    import datasets

    datasets.disable_progress_bars()
    path = resolve_local(spec, kind="dataset", error=DatasetError)
    if path is not None:
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None or not path.is_file():
            raise DatasetError(f"dataset {spec!r} is not a CSV, TSV, JSON(L) or Parquet file.")
        if path.stat().st_size == 0:
            raise DatasetError(f"dataset file {spec!r} is empty.")
        if builder == "csv" and _count_lines(path, 2) < 2:
            raise DatasetError(f"dataset file {spec!r} has a header but no rows.")
        kwargs: dict = {}
        if builder == "csv":
            # GLUE's TSV files are not quoted; some corpora carry bytes that are not UTF-8.
            kwargs = {"encoding_errors": "replace"}
            if path.suffix.lower() == ".tsv":
                kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            loaded = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
        except Exception as exc:  # datasets wraps parser errors in several types
            raise DatasetError(f"dataset file {spec!r} could not be read as {builder}: {exc}") from exc
        if len(loaded) == 0:
            raise DatasetError(f"dataset file {spec!r} has a header but no rows.")
        return loaded, path.name

    ensure_hub_reachable(what=spec, kind="dataset")
    name, config_name = _hub_name(spec)
    try:
        splits = datasets.get_dataset_split_names(name, config_name)
    except Exception:
        name, config_name = spec, None
        splits = datasets.get_dataset_split_names(name)
    chosen = split or next((s for s in ("validation", "test", "train") if s in splits), splits[0])
    if chosen not in splits:
        raise DatasetError(f"dataset {spec!r} has no split {chosen!r} for {role}; its splits are {splits}.")
    return datasets.load_dataset(name, config_name, split=chosen), chosen


def _count_lines(path: Path, at_most: int) -> int:
    with path.open("rb") as f:
        return sum(1 for _, line in zip(range(at_most), f, strict=False) if line.strip())


def _hub_name(spec: str) -> tuple[str, str | None]:
    if ":" in spec:
        name, config_name = spec.split(":", 1)
        return name, config_name
    parts = spec.split("/")
    if len(parts) == 2:
        return parts[0], parts[1]
    return spec, None


def _columns(dataset, config: StudyConfig) -> tuple[str, str]:
    columns = list(dataset.column_names)

    def pick(given: str | None, usual: tuple[str, ...], what: str, flag: str) -> str:
        if given is not None:
            if given not in columns:
                raise DatasetError(f"{what} column {given!r} is not in the dataset; its columns are {columns}. "
                                   f"Pass {flag} with one of them.")
            return given
        for name in usual:
            if name in columns:
                return name
        raise DatasetError(f"no {what} column found (looked for {list(usual)}); the dataset's columns are "
                           f"{columns}. Pass {flag} with one of them.")

    return (pick(config.text_column, TEXT_COLUMNS, "text", "--text-column"),
            pick(config.label_column, LABEL_COLUMNS, "label", "--label-column"))


def _rows(dataset, text_col: str, label_col: str, exclude: list[str]) -> tuple[list[str], list]:
    texts, labels = dataset[text_col], dataset[label_col]
    names = getattr(dataset.features.get(label_col), "names", None)
    if names:  # ClassLabel: keep the ids, which follow the dataset's names
        labels = [names[v] if 0 <= v < len(names) else v for v in labels]
    excluded = set(exclude)
    keep = [i for i, (t, y) in enumerate(zip(texts, labels, strict=True))
            if isinstance(t, str) and t.strip() and y is not None and str(y) not in excluded and y != -1]
    if not keep:
        raise DatasetError(f"no row has both a text in {text_col!r} and a label in {label_col!r} "
                           "(unlabelled test splits carry label -1: use the validation split).")
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _label_mapping(raw: list, config: StudyConfig, *, id2label: dict[int, str] | None, task: str,
                   dataset: str) -> tuple[dict[str, int], list[str]]:
    """Map each label value (as a string) to a class id, and name the classes."""
    values = sorted({str(v) for v in raw})
    if config.label_map is not None:
        missing = [v for v in values if v not in config.label_map]
        if missing:
            raise DatasetError(f"labels {missing} of {dataset!r} are not in label_map {config.label_map}: "
                               "add them, or list them in exclude_labels.")
        mapping = dict(config.label_map)
    elif task == "classification" and id2label:
        by_name = {name.lower(): i for i, name in id2label.items()}
        if all(v.lower() in by_name for v in values):
            mapping = {v: by_name[v.lower()] for v in values}
        elif all(_is_int(v) and int(v) in id2label for v in values):
            mapping = {v: int(v) for v in values}
        else:
            raise DatasetError(
                f"labels {values} of {dataset!r} do not match the model's classes {id2label}: "
                "give --label-map, e.g. --label-map negative=0,positive=1."
            )
    elif all(_is_int(v) for v in values):
        mapping = {v: int(v) for v in values}
    else:
        mapping = {v: i for i, v in enumerate(values)}
    n_classes = max(mapping.values()) + 1
    if task == "classification" and id2label:
        names = [id2label.get(i, str(i)) for i in range(max(n_classes, len(id2label)))]
    else:
        inverse = {i: v for v, i in mapping.items()}
        names = [inverse.get(i, str(i)) for i in range(n_classes)]
    return mapping, names


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
