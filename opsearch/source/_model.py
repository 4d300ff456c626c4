"""From what the user names as MODEL to one fp32 ONNX model folder with its tokenizer.

MODEL is a local Hugging Face checkpoint folder (exported to ONNX once, into the study's cache),
a local ONNX model (a .onnx file or a folder holding one, with its tokenizer beside it),
an asset inside an installed Python package (``package:DIST/path/inside``), or a hub id.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opsearch._files import atomic_folder
from opsearch.errors import ModelError, OpsearchError
from opsearch.source._hub import ensure_hub_reachable

logger = logging.getLogger(__name__)

_PACKAGE_PREFIX = "package:"
EXPORT_MARKER = "opsearch-export.json"


@dataclass(frozen=True)
class PreparedModel:
    """An fp32 ONNX model ready to quantize: its file, the folder with its tokenizer, and how to read it."""

    onnx_path: Path
    task: str
    id2label: dict[int, str] = field(default_factory=dict)
    # Sentence-embedding models: how token states become one vector (sentence-transformers' settings).
    pooling: str = "mean"
    normalize: bool = False
    source: str = ""

    @property
    def folder(self) -> Path:
        return self.onnx_path.parent


def resolve_local(spec: str, *, kind: str, error: type[OpsearchError]) -> Path | None:
    """The local file or folder a MODEL or DATA spec names, or None for a hub id; ``error`` if it is missing."""
    if spec.startswith(_PACKAGE_PREFIX):
        try:
            return resolve_package_asset(spec, kind=kind)
        except OpsearchError as exc:
            raise error(str(exc)) from None
    if not is_local_spec(spec):
        return None
    path = Path(spec).expanduser()
    if not path.exists():
        noun, hub = ("model path", "hub id") if kind == "model" else (f"{kind} file", "hub dataset id")
        raise error(f"{noun} {spec!r} does not exist. Check the path, or give a {hub}.")
    return path


def resolve_package_asset(spec: str, *, kind: str = "model") -> Path:
    """``package:DIST/path`` -> the installed file or folder, found through the distribution's file list.

    The package is never imported (some asset packages no longer import on current Python stacks).
    """
    dist_name, _, inner = spec[len(_PACKAGE_PREFIX):].partition("/")
    error = ModelError if kind == "model" else OpsearchError
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise error(
            f"{kind} {spec!r} lives in the Python package {dist_name!r}, which is not installed. "
            f"Install it (pip install {dist_name}, or pip install 'opsearch[demo]' for the default study)."
        ) from None
    inner = inner.strip("/")
    for file in dist.files or []:
        posix = file.as_posix()
        if posix == inner or posix.startswith(inner + "/"):
            located = Path(str(dist.locate_file(inner)))
            if located.exists():
                return located
    raise error(f"{kind} {spec!r}: the package {dist_name!r} is installed but holds no {inner!r}.")


def is_local_spec(spec: str) -> bool:
    return spec.startswith(_PACKAGE_PREFIX) or spec.startswith((".", "/", "~")) or Path(spec).exists()


def prepare_model(spec: str, *, cache_dir: Path, task: str = "auto", notify: Callable[[str], None] = logger.warning,
                  need_tokenizer: bool = True, evaluator: bool = False) -> PreparedModel:
    """Resolve MODEL to an fp32 ONNX model, exporting a checkpoint once into ``cache_dir`` (``notify`` hears
    when a damaged export is made again).

    ``task="auto"`` reads the checkpoint's architecture (``*ForSequenceClassification`` is a classifier,
    anything else an encoder whose pooled output is probed) or the ONNX model's output names. A study with its
    own ``evaluator`` takes any ONNX model, with or without a tokenizer (outputs that name no task: read as a
    classifier's, which only decides how the data's labels are read).
    """
    path = resolve_local(spec, kind="model", error=ModelError)
    if path is not None and path.is_file():
        if path.suffix != ".onnx":
            raise ModelError(f"model file {spec!r} is not an .onnx file: give an ONNX model or a checkpoint folder.")
        onnx_path = path
    elif path is not None and _onnx_files(path):
        onnx_path = _pick_onnx(path)
    elif path is not None and (path / "config.json").is_file():
        task = _task_from_checkpoint(path, task)
        onnx_path = _export(str(path), cache_dir=cache_dir, task=task, notify=notify)
    elif path is not None:
        raise ModelError(
            f"model folder {spec!r} holds neither an .onnx file nor a Hugging Face checkpoint (config.json). "
            "Give a folder saved with save_pretrained, or an exported ONNX model with its tokenizer."
        )
    else:
        ensure_hub_reachable(what=spec, kind="model")
        task = _task_from_hub(spec, task)
        onnx_path = _export(spec, cache_dir=cache_dir, task=task, notify=notify)

    _check_onnx(onnx_path, spec)
    if need_tokenizer and not evaluator:  # listing a graph's operators (opsearch inspect) needs none
        _check_tokenizer(onnx_path.parent, spec)
    config = _read_json(onnx_path.parent / "config.json")
    if task == "auto":
        try:
            task = _task_from_outputs(onnx_path, config)
        except ModelError:
            if not evaluator:
                raise
            task = "classification"
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    pooling, normalize = _pooling_settings(path if path is not None and path.is_dir() else onnx_path.parent)
    return PreparedModel(onnx_path=onnx_path, task=task, id2label=id2label, pooling=pooling,
                         normalize=normalize, source=spec)


def _onnx_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.onnx")) if folder.is_dir() else []


def _pick_onnx(folder: Path) -> Path:
    files = _onnx_files(folder)
    preferred = [f for f in files if f.name == "model.onnx"]
    if len(files) > 1 and not preferred:
        raise ModelError(f"model folder {str(folder)!r} holds several ONNX files {[f.name for f in files]}: "
                         "pass the one to use as MODEL.")
    return preferred[0] if preferred else files[0]


def _task_from_checkpoint(folder: Path, task: str) -> str:
    if task != "auto":
        return task
    return task_of_config(_read_json(folder / "config.json"))


def _task_from_hub(model_id: str, task: str) -> str:
    if task != "auto":
        return task
    from transformers import AutoConfig

    return task_of_config(AutoConfig.from_pretrained(model_id).to_dict())


def task_of_config(config: dict) -> str:
    """The task a checkpoint's config says: a token classifier, an extractive question answerer, a sequence
    classifier (a regressor when its ``problem_type`` says regression, or it has one label and no problem type, as
    transformers reads it, a multi-label one when it says so), else an encoder."""
    architectures = config.get("architectures") or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return "token-classification"
    if any(a.endswith("ForQuestionAnswering") for a in architectures):
        return "question-answering"
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return "embedding"
    problem = config.get("problem_type")
    if problem == "multi_label_classification":
        return "multi-label"
    labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    return "regression" if problem == "regression" or (problem is None and labels == 1) else "classification"


def _task_from_outputs(onnx_path: Path, config: dict) -> str:
    """An exported model's task: its checkpoint config beside it where that says, else its output names."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    outputs = [o.name for o in graph.output]
    if config.get("architectures") and ("logits" in outputs or "start_logits" in outputs):
        return task_of_config(config)
    if "start_logits" in outputs and "end_logits" in outputs:
        return "question-answering"
    if "logits" in outputs:
        rank = len(next(o for o in graph.output if o.name == "logits").type.tensor_type.shape.dim)
        return "token-classification" if rank == 3 else "classification"
    if "last_hidden_state" in outputs:
        return "embedding"
    raise ModelError(f"ONNX model {str(onnx_path)!r} has outputs {outputs}; opsearch reads 'logits' "
                     "(a classifier or a tagger), 'start_logits' and 'end_logits' (a question answerer) or "
                     "'last_hidden_state' (an encoder). Set --task, or re-export.")


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _export(source: str, *, cache_dir: Path, task: str, notify: Callable[[str], None] = logger.warning) -> Path:
    """Export with optimum once; a finished export is marked and reused, a half-written one never is."""
    target = cache_dir / "fp32"
    marker = target / EXPORT_MARKER
    record = {"source": source, "task": task, "fingerprint": _source_fingerprint(source)}
    if marker.is_file() and (target / "model.onnx").is_file():
        stored = _read_json(marker)
        if {k: stored.get(k) for k in record} == record:
            if stored.get("sha256") in (None, _sha256(target / "model.onnx")):  # None: written before checksums
                logger.info("reusing the ONNX export in %s", target)
                return target / "model.onnx"
            notify(f"the cached ONNX export {str(target / 'model.onnx')!r} is damaged (its checksum changed "
                   "since it was written): exporting again")
    from transformers import AutoTokenizer

    logger.info("exporting %s to ONNX (once per study) ...", source)
    with atomic_folder(target, prefix=".export-", needs_bytes=_export_size(source)) as tmp:
        model_cls = ort_model_class(task)
        try:
            model = model_cls.from_pretrained(source, export=True)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"model {source!r} could not be exported to ONNX: {exc}") from exc
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # The checksum lets a later run tell a damaged cache (disk full, a crash mid-copy) from a good one.
        (tmp / EXPORT_MARKER).write_text(json.dumps({**record, "sha256": _sha256(tmp / "model.onnx")}, indent=2))
    return target / "model.onnx"


def ort_model_name(task: str) -> str:
    """The name of optimum's ``ORTModelFor...`` class a task's model exports through and loads back in."""
    if task in ("classification", "regression", "multi-label"):
        return "ORTModelForSequenceClassification"
    if task == "token-classification":
        return "ORTModelForTokenClassification"
    if task == "question-answering":
        return "ORTModelForQuestionAnswering"
    return "ORTModelForFeatureExtraction"


def ort_model_class(task: str):
    import optimum.onnxruntime

    return getattr(optimum.onnxruntime, ort_model_name(task))


def _export_size(source: str) -> int | None:
    """About what an export of a local checkpoint takes: its files' size (the weights dominate); None for a hub id."""
    path = Path(source)
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if path.is_dir() else None


def _source_fingerprint(source: str) -> str:
    path = Path(source)
    if not path.is_dir():
        return "hub"
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(path.iterdir()) if p.is_file()]
    return ";".join(parts)


def _check_onnx(onnx_path: Path, spec: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(onnx_path))
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelError(f"model {spec!r}: {str(onnx_path)!r} is not a valid ONNX model ({exc}). "
                         "Re-export it, or delete the cache folder to export again.") from exc


def plain_onnx(spec: str) -> bool:
    """Whether MODEL names a local ONNX model (a file, or a folder of them) with no tokenizer beside it: only an
    evaluator can read its inputs, and nothing can calibrate it."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".onnx":
        return not has_tokenizer(path.parent)
    return bool(_onnx_files(path)) and not has_tokenizer(path)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))


def _check_tokenizer(folder: Path, spec: str) -> None:
    if not has_tokenizer(folder):
        raise ModelError(f"model {spec!r}: no tokenizer next to the ONNX model in {str(folder)!r}. "
                         "Save the tokenizer there (tokenizer.save_pretrained(folder)).")


def _pooling_settings(folder: Path) -> tuple[str, bool]:
    pooling_cfg = _read_json(folder / "1_Pooling" / "config.json")
    modules = _read_json(folder / "modules.json", default=[])
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))
    if pooling_cfg.get("pooling_mode_cls_token"):
        return "cls", normalize
    if pooling_cfg.get("pooling_mode_max_tokens"):
        return "max", normalize
    return "mean", normalize


def _read_json(path: Path, default=None):
    if not path.is_file():
        return {} if default is None else default
    return json.loads(path.read_text())
