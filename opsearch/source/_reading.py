"""Reading a dataset as ``datasets`` does, with checks first: a local CSV, TSV, JSON(L) or Parquet file (its
builder from its suffix; bytes not valid in its encoding and CSV/TSV rows with more or fewer fields than the header
refused, naming the line), a file inside an installed package, or a hub dataset id (``glue/sst2``, ``ID:CONFIG``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from opsearch.errors import DatasetError
from opsearch.source._hub import ensure_hub_reachable
from opsearch.source._model import resolve_local

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def read_dataset(spec: str, split: str | None, *, role: str, encoding: str = "utf-8"):
    """The dataset ``spec`` names and the split read (``role`` says what for in messages: evaluation, fit,
    timing)."""
    import datasets

    datasets.disable_progress_bars()
    path = resolve_local(spec, kind="dataset", error=DatasetError)
    if path is not None:
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None or not path.is_file():
            raise DatasetError(f"dataset {spec!r} is not a CSV, TSV, JSON(L) or Parquet file.")
        if path.stat().st_size == 0:
            raise DatasetError(f"dataset file {spec!r} is empty.")
        kwargs: dict = {}
        if builder in ("csv", "json"):
            text = _decoded(path, spec, encoding)
            kwargs = {"encoding": encoding}
        if builder == "csv" and _count_lines(path, 2) < 2:
            raise DatasetError(f"dataset file {spec!r} has a header but no rows.")
        if builder == "csv":
            # GLUE's TSV files are not quoted.
            tsv = path.suffix.lower() == ".tsv"
            dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
            _check_fields(text, spec, tsv=tsv, **dialect)
            kwargs.update(dialect)
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


def _decoded(path: Path, spec: str, encoding: str) -> str:
    """The file's text; bytes not valid in ``encoding`` are refused, naming the line and the byte offset (never
    replaced: a text with replacement characters is not the text the file holds)."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        before = data[max(line_start, exc.start - 40):exc.start].decode(encoding, errors="replace").lstrip()
        after = f" (after {before!r})" if before else ""
        raise DatasetError(
            f"dataset file {spec!r} is not valid {encoding}: line {line}, byte offset {exc.start}{after}, holds "
            f"byte 0x{data[exc.start]:02x}. Give the file's encoding (--encoding latin-1, or encoding = \"latin-1\" "
            "in a study file; cp1252 and mac_roman are other common ones), or re-save the file as UTF-8.") from None


def _check_fields(text: str, spec: str, *, tsv: bool, **dialect) -> None:
    """Every row has as many fields as the header, as the csv module reads the file with the dialect ``datasets``
    is given (a TSV: tabs, no quoting). Blank lines are skipped, as pandas skips them."""
    # A field may be as long as the file (one long review): the csv module's default cap, 131072 characters, is not.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.reader(io.StringIO(text, newline=""), **dialect)
    header = next(reader, [])
    twice = sorted({name for name in header if name.strip() and header.count(name) > 1})
    if twice:
        raise DatasetError(f"dataset file {spec!r}: its header (line 1) names {', '.join(map(repr, twice))} more than "
                           "once. Give each column a name of its own.")
    first: tuple[int, int, int] | None = None  # (line, last line, fields) of the first ragged row
    ragged, line = 0, reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if len(row) == len(header) or (len(row) <= 1 and not "".join(row).strip()):
            continue
        ragged += 1
        first = first or (start, line, len(row))
    if first is None:
        return
    start, end, fields = first
    spans = f" (the row runs on to line {end}: is a quote left open?)" if end > start else ""
    more = f" ({ragged} rows in all do not match)" if ragged > 1 else ""
    fix = ("a TSV is read unquoted: a text may not hold a tab" if tsv
           else "a text holding a comma, a quote or a line break goes in double quotes, its own quotes doubled")
    raise DatasetError(
        f"dataset file {spec!r}: line {start} has {fields} field{'s' if fields != 1 else ''}, the header has "
        f"{len(header)}{spans}{more}. Fix the row so it has one value per column ({fix}).")


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
