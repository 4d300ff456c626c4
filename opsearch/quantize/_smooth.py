"""Smoothing: activation outliers migrated into the weights before quantizing (SmoothQuant, Xiao et al., ICML 2023).

A few input channels of a transformer's projections carry values far outside the rest (Bondarenko et al., EMNLP
2021): one per-tensor int8 scale set by them leaves the other channels a few steps each. For a projection
``Y = X W`` (``X``: [..., in], ``W``: [in, out]) and any positive factors ``s`` (one per input channel),
``Y = (X / s) (s W)``: dividing channel ``j`` of the activation by ``s_j`` and multiplying row ``j`` of the weight by
it computes the same function, and moves the channel's range from the activation (one scale per tensor) to the
weight (one scale per output channel with per_channel, and row ``j`` is spread over every output). The factors are
SmoothQuant's, ``s_j = max|X_j|^a / max|W_j|^(1-a)`` with the strength ``a`` in (0, 1): 0.5 balances the two ranges,
larger moves more onto the weights.

Where the division goes: a ``LayerNormalization`` whose output reads into nothing but the smoothed projections takes
it into its scale and bias (free); otherwise (a post-LN encoder's LayerNorm also feeds the residual, the FFN output
projection reads through GELU, the attention output through a reshape) one element-wise ``Mul`` by ``1/s`` is
inserted before the projections that read the activation, and it runs in fp32 at inference. Projections of one
activation (a layer's Q, K and V) share one set of factors, from the largest row over their weights. Node names are
kept, so groups, exclusions and reports read the smoothed graph as they read the original.

Written with onnx and numpy; the activations' channel maxima come from the fp32 graph on calibration rows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opsearch._files import atomic_folder
from opsearch.quantize._activations import activation_stats, calibration_batches, expose, exposed_session
from opsearch.quantize._fusion import source_stamp
from opsearch.quantize._groups import find_groups

if TYPE_CHECKING:
    import onnx

# The projections smoothing can take, by role (quantize.ROLES): each reads one activation with a constant weight.
SMOOTH_ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")
SMOOTHED_OPS = frozenset({"MatMul", "Gemm", "Attention"})  # the operator types of those projections
SMOOTH_ROWS = 64  # calibration rows the channel maxima are taken over
STRENGTHS = (0.5, 0.75, 0.85)  # the strengths the ranges pass tries (SmoothQuant's paper uses 0.5 to 0.85)
_FACTOR_RANGE = (1e-4, 1e4)  # factors are clipped to this: a dead channel (max 0) is left alone (factor 1)
_MARKER = "opsearch-smoothing.json"


@dataclass(frozen=True)
class SmoothTarget:
    """One activation and the projections of one group that read it (a layer's Q, K and V read one)."""

    group: str  # the group's key, e.g. "layer.3/ffn_out"
    role: str
    tensor: str  # the activation the projections read
    nodes: tuple[str, ...]  # the projections (MatMul, Gemm, fused Attention) reading it, in graph order


def smooth_targets(model: onnx.ModelProto, roles: tuple[str, ...] = SMOOTH_ROLES) -> list[SmoothTarget]:
    """Every activation a projection of ``roles`` reads with a weight smoothing can scale row by row."""
    initializers = {init.name for init in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    targets = []
    for group in find_groups(model).groups:
        if group.role not in roles:
            continue
        by_tensor: dict[str, list[str]] = {}
        for name in group.nodes:
            node = nodes[name]
            if _weight_input(node, initializers) is not None:
                by_tensor.setdefault(node.input[0], []).append(name)
        targets += [SmoothTarget(group.key, group.role, tensor, tuple(names)) for tensor, names in by_tensor.items()]
    return targets


def _weight_input(node, initializers: set[str]) -> int | None:
    """The index of the node's constant weight when its input 0 is the activation and the weight's rows are the
    activation's channels: MatMul ``X W``, Gemm ``X W`` or ``X W^T`` (transA 0), fused Attention (input 1); else
    None."""
    if len(node.input) < 2 or node.input[0] in initializers or node.input[1] not in initializers:
        return None
    if node.op_type in ("MatMul", "Attention"):
        return 1
    if node.op_type == "Gemm" and not any(a.name == "transA" and a.i for a in node.attribute):
        return 1
    return None


def smoothing_factors(activation_max: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's factors, ``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` per input channel ``j``; a channel whose
    activation or weight is all zero keeps factor 1."""
    if not 0 < alpha < 1:
        raise ValueError(f"smoothing strength {alpha!r} is not in (0, 1)")
    a = np.asarray(activation_max, dtype=np.float64)
    w = np.asarray(weight_max, dtype=np.float64)
    live = (a > 0) & (w > 0)
    s = np.ones_like(a)
    s[live] = a[live] ** alpha / w[live] ** (1 - alpha)
    return np.clip(s, *_FACTOR_RANGE).astype(np.float32)


def channel_maxima(model_path: str | Path, calibration: dict[str, np.ndarray], tensors: list[str], *,
                   rows: int = SMOOTH_ROWS, threads: int = 1) -> dict[str, np.ndarray]:
    """Each of ``tensors``' largest ``|x|`` per channel (its last axis) over the first ``rows`` calibration rows."""
    import onnx

    model = onnx.load(str(model_path))
    expose(model, tensors)
    with tempfile.TemporaryDirectory(prefix="opsearch-smooth-") as tmp:
        session = exposed_session(model, Path(tmp), threads)
        n = min(rows, len(next(iter(calibration.values()))))
        stats = activation_stats(session, tensors, calibration_batches(session, calibration, n))
    return {t: s.channels for t, s in stats.items()}


def smooth(model: onnx.ModelProto, strengths: dict[str, float], maxima: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with each role of ``strengths`` (role -> alpha) smoothed, from the activations' channel
    maxima (``channel_maxima``). The copy computes the same function (up to float rounding)."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {init.name: init for init in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    inserted: list[tuple[str, onnx.NodeProto]] = []  # (the first projection's name, the Mul to put before it)
    for target in smooth_targets(model, tuple(strengths)):
        alpha = strengths[target.role]
        projections = [nodes[name] for name in target.nodes]
        weights = [_rows(numpy_helper.to_array(inits[p.input[1]]), p) for p in projections]
        weight_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = smoothing_factors(maxima[target.tensor], weight_max, alpha)
        for p, w in zip(projections, weights, strict=True):
            # _rows again transposes a Gemm's transB weight back: a transpose undoes itself
            scaled = _rows(w * s[:, None], p).astype(numpy_helper.to_array(inits[p.input[1]]).dtype)
            p.input[1] = _add_initializer(graph, inits, f"{p.input[1]}/smoothed/{p.name}", scaled)
        norm = producer.get(target.tensor)
        readers = consumers.get(target.tensor, [])
        if (norm is not None and norm.op_type == "LayerNormalization" and len(norm.input) >= 3
                and norm.input[1] in inits and norm.input[2] in inits and target.tensor not in outputs
                and {r.name for r in readers} <= set(target.nodes)):
            for k in (1, 2):  # scale and bias divided: the normalized activation comes out divided
                value = numpy_helper.to_array(inits[norm.input[k]]).astype(np.float32)
                norm.input[k] = _add_initializer(graph, inits, f"{norm.input[k]}/smoothed/{norm.name}", value / s)
            continue
        divided = f"{target.tensor}/smoothed/{target.group}"
        factor = _add_initializer(graph, inits, f"{divided}/inverse_factors", (1.0 / s).astype(np.float32))
        mul = onnx.helper.make_node("Mul", [target.tensor, factor], [divided], name=f"{divided}/Mul")
        for p in projections:
            p.input[0] = divided
        inserted.append((target.nodes[0], mul))
    _insert_before(graph, inserted)
    _drop_unused_initializers(graph)
    return out


def _rows(weight: np.ndarray, node) -> np.ndarray:
    """The weight with the activation's channels as rows ([in, out]): a Gemm with transB holds it transposed."""
    if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        return weight.T
    return weight


def _add_initializer(graph, inits: dict, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
    graph.initializer.append(tensor)
    inits[name] = tensor
    return name


def _insert_before(graph, inserted: list) -> None:
    """Put each new node right before the node it feeds first, keeping the graph in topological order."""
    if not inserted:
        return
    before: dict[str, list] = {}
    for name, node in inserted:
        before.setdefault(name, []).append(node)
    ordered = []
    for node in graph.node:
        ordered += before.get(node.name, [])
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_unused_initializers(graph) -> None:
    """Remove the initializers nothing reads any more (the weights and norms replaced by smoothed copies)."""
    used = _read_names(graph) | {o.name for o in graph.output} | {i.name for i in graph.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _read_names(graph) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs (If, Loop, Scan bodies) reads."""
    import onnx

    names = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _read_names(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    names |= _read_names(sub)
    return names


def smoothing_key(strengths: dict[str, float]) -> str:
    """A short, stable name for a set of strengths (a cache folder's name)."""
    text = json.dumps(sorted((r, round(float(a), 4)) for r, a in strengths.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def smoothed_model(source: Path, strengths: dict[str, float], calibration: dict[str, np.ndarray], *,
                   cache_dir: Path, threads: int = 1) -> Path:
    """``source`` smoothed by ``strengths``, made once under ``cache_dir/smoothed/<key>`` and reused after (remade
    when ``source`` changed). The activations' channel maxima are taken once per source and kept beside."""
    import onnx

    source = Path(source)
    stamp = {**source_stamp(source), "strengths": sorted(strengths.items())}
    target = Path(cache_dir) / "smoothed" / f"{_source_key(stamp)}-{smoothing_key(strengths)}"
    marker = target / _MARKER
    if marker.is_file() and (target / "model.onnx").is_file():
        try:
            if json.loads(marker.read_text()) == json.loads(json.dumps(stamp)):
                return target / "model.onnx"
        except ValueError:
            pass  # a damaged marker: smooth again
    model = onnx.load(str(source))
    maxima = _cached_maxima(source, model, stamp, calibration, Path(cache_dir), threads)
    smoothed = smooth(model, strengths, maxima)
    with atomic_folder(target, prefix=".smooth-", needs_bytes=stamp["size"]) as tmp:
        large = smoothed.ByteSize() > 2**31 - 2**26
        onnx.save_model(smoothed, str(tmp / "model.onnx"), save_as_external_data=large,
                        location="model.onnx.data")
        (tmp / _MARKER).write_text(json.dumps(stamp))
    return target / "model.onnx"


def _source_key(stamp: dict) -> str:
    text = json.dumps({k: stamp[k] for k in ("path", "size", "mtime_ns")})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached_maxima(source: Path, model, stamp: dict, calibration: dict[str, np.ndarray], cache_dir: Path,
                   threads: int) -> dict[str, np.ndarray]:
    """The channel maxima of every activation a smoothable projection reads, kept in the cache per source."""
    path = cache_dir / "smoothed" / f"{_source_key(stamp)}-maxima.npz"
    tensors = sorted({t.tensor for t in smooth_targets(model)})
    if path.is_file():
        try:
            with np.load(path) as stored:  # tensor names hold "/": the arrays are stored by index
                names = [str(n) for n in stored["names"]]
                if set(tensors) <= set(names):
                    return {t: stored[f"t{names.index(t)}"] for t in tensors}
        except (OSError, ValueError, KeyError):
            pass  # damaged: measure again
    maxima = channel_maxima(source, calibration, tensors, threads=threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
        np.savez(f, names=np.array(tensors, dtype=str), **{f"t{i}": maxima[t] for i, t in enumerate(tensors)})
    Path(f.name).replace(path)
    return maxima
