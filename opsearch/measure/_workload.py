"""The timed workload: which texts, in which batches, and whether tokenization is inside the timed region."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from opsearch.measure._sessions import Feed, Text, encode, input_names, rows_in


@dataclass
class Workload:
    """``batch_size`` 1 runs the texts one by one, unpadded (latency-like, as a service sees them); a larger
    batch pads each batch to its longest text (throughput). With ``end_to_end`` the tokenizer runs inside the
    timed region, as a pipeline user would see it; otherwise inputs are tokenized once, beforehand."""

    texts: list[Text]  # texts or pairs
    tokenizer: object  # None: ``inputs`` are the workload
    batch_size: int = 1
    max_length: int = 256
    end_to_end: bool = False
    inputs: list[Feed] | None = field(default=None, repr=False)  # made without a tokenizer (synthetic_inputs)
    _feeds: list[Feed] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.inputs is not None:
            if self.end_to_end:
                raise ValueError("a workload of given inputs has no tokenizer to time")
            self._feeds = list(self.inputs)
            return
        if not self.texts:
            raise ValueError("a workload needs at least one text")
        self._feeds = encode(self.tokenizer, self.texts, max_length=self.max_length, batch_size=self.batch_size)

    @property
    def samples(self) -> int:
        return len(self.texts) if self.inputs is None else sum(rows_in(feed) for feed in self._feeds)

    def batches(self) -> list[list[Text]]:
        return [self.texts[i:i + self.batch_size] for i in range(0, len(self.texts), self.batch_size)]

    def _encode(self, batch: list[Text]) -> Feed:
        return encode(self.tokenizer, batch, max_length=self.max_length, batch_size=len(batch))[0]

    def feeds(self) -> list[Feed]:
        """The timed calls' inputs, tokenized (each batch one feed)."""
        return list(self._feeds)

    def runner(self, sessions) -> Callable[[], np.ndarray]:
        """One pass over the workload, returning each call's seconds: what a timing round runs.

        Given several sessions of one model, successive passes take them in turn. Each session's memory
        layout makes it a little faster or slower for good (about +-1% here, the same in every round, so
        more rounds cannot average it away); rotating over a few sessions does.
        """
        sessions = list(sessions) if isinstance(sessions, list | tuple) else [sessions]
        passes = [self._one_pass(session) for session in sessions]
        turn = [0]

        def run() -> np.ndarray:
            seconds = passes[turn[0] % len(passes)]()
            turn[0] += 1
            return seconds

        return run if len(passes) > 1 else passes[0]

    def _one_pass(self, session) -> Callable[[], np.ndarray]:
        names = input_names(session)
        clock = time.perf_counter
        if self.end_to_end:
            batches = self.batches()

            def run_end_to_end() -> np.ndarray:
                seconds = np.empty(len(batches))
                for i, batch in enumerate(batches):
                    start = clock()
                    feed = self._encode(batch)
                    session.run(None, {k: v for k, v in feed.items() if k in names})
                    seconds[i] = clock() - start
                return seconds

            return run_end_to_end
        feeds = [{k: v for k, v in feed.items() if k in names} for feed in self._feeds]

        def run() -> np.ndarray:
            seconds = np.empty(len(feeds))
            for i, feed in enumerate(feeds):
                start = clock()
                session.run(None, feed)
                seconds[i] = clock() - start
            return seconds

        return run

    def describe(self) -> dict:
        lengths = [int(f["input_ids"].shape[1]) for f in self._feeds]
        described = {"samples": self.samples, "batch_size": self.batch_size, "end_to_end": self.end_to_end,
                     "max_length": self.max_length, "batches": len(self._feeds),
                     "mean_tokens": float(np.mean(lengths))}
        if "overflow_to_sample_mapping" in self._feeds[0]:  # questions, read in windows
            described["windows"] = sum(len(f["input_ids"]) for f in self._feeds)
        if self.inputs is not None:
            described["synthetic"] = True
        return described


def synthetic_inputs(onnx_path, *, rows: int, batch_size: int, length: int, seed: int = 0) -> list[Feed]:
    """Inputs of the model's own signature for a model without a tokenizer, to time it by: ``rows`` rows of
    ``length`` tokens, ``batch_size`` per call (dimensions the graph names take these; fixed ones stay). Token ids
    are drawn below the size of the embedding table the input feeds (a Gather's), masks are ones, token types and
    positions what a tokenizer gives one text; float inputs are standard normal."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tables = {i.name: i.dims[0] for i in graph.initializer if len(i.dims) == 2}
    vocab = {n.input[1]: tables[n.input[0]] for n in graph.node if n.op_type == "Gather" and n.input[0] in tables}
    initializers = {i.name for i in graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = []
    for start in range(0, rows, batch_size):
        batch = min(batch_size, rows - start)
        feed = {}
        for graph_input in (i for i in graph.input if i.name not in initializers):
            tensor = graph_input.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            shape = tuple(d if d is not None else (batch if k == 0 else length) for k, d in enumerate(dims))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            name = graph_input.name.lower()
            if dtype.kind == "f":
                feed[graph_input.name] = rng.standard_normal(shape).astype(dtype)
            elif "mask" in name or dtype.kind == "b":
                feed[graph_input.name] = np.ones(shape, dtype=dtype)
            elif "type" in name:
                feed[graph_input.name] = np.zeros(shape, dtype=dtype)
            elif "position" in name:
                feed[graph_input.name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype)
            else:
                feed[graph_input.name] = rng.integers(0, vocab.get(graph_input.name, 1000), size=shape).astype(dtype)
        feeds.append(feed)
    return feeds
