from __future__ import annotations

import numpy as np
import pytest
from conftest import sentiment_rows
from transformers import AutoTokenizer

from opsearch.measure import Workload


class RecordingSession:
    def __init__(self, name: str = "s") -> None:
        self.name, self.feeds = name, []

    def get_inputs(self):
        return [type("Input", (), {"name": n}) for n in ("input_ids", "attention_mask")]

    def run(self, outputs, feed):
        self.feeds.append(feed)
        return [np.zeros(1)]


class CountingTokenizer:
    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


@pytest.fixture(scope="module")
def tokenizer(tiny_onnx):
    return AutoTokenizer.from_pretrained(tiny_onnx.folder)


TEXTS = [r["sentence"] for r in sentiment_rows(10)] + ["good"]


def test_batch_one_runs_each_text_unpadded(tokenizer) -> None:
    session = RecordingSession()
    Workload(TEXTS, tokenizer).runner(session)()
    assert len(session.feeds) == len(TEXTS)
    assert all(f["input_ids"].shape[0] == 1 for f in session.feeds)
    assert set(session.feeds[0]) == {"input_ids", "attention_mask"}  # only the inputs the model takes
    lengths = {f["input_ids"].shape[1] for f in session.feeds}
    assert len(lengths) > 1  # no padding: each text keeps its own length


def test_batches_are_padded_to_their_longest_text(tokenizer) -> None:
    session = RecordingSession()
    workload = Workload(TEXTS, tokenizer, batch_size=4)
    workload.runner(session)()
    assert [f["input_ids"].shape[0] for f in session.feeds] == [4, 4, 3]
    last = session.feeds[-1]
    assert last["attention_mask"].sum(axis=1).min() < last["input_ids"].shape[1]  # "good" was padded
    assert workload.describe()["batches"] == 3 and workload.samples == len(TEXTS)


@pytest.mark.parametrize(("end_to_end", "calls_per_pass"), [(False, 0), (True, 3)])
def test_tokenization_is_timed_only_end_to_end(tokenizer, end_to_end: bool, calls_per_pass: int) -> None:
    counting = CountingTokenizer(tokenizer)
    run = Workload(TEXTS, counting, batch_size=4, end_to_end=end_to_end).runner(RecordingSession())
    before = counting.calls
    run()
    assert counting.calls - before == calls_per_pass


def test_passes_rotate_over_sessions(tokenizer) -> None:
    sessions = [RecordingSession(str(i)) for i in range(3)]
    run = Workload(TEXTS, tokenizer).runner(sessions)
    for _ in range(7):
        run()
    assert [len(s.feeds) // len(TEXTS) for s in sessions] == [3, 2, 2]


@pytest.mark.parametrize("end_to_end", [False, True])
def test_a_pass_returns_each_calls_seconds(tokenizer, monkeypatch, end_to_end: bool) -> None:
    """The floor estimator needs each call's time: the pass returns them, in workload order."""
    now = [0.0]
    monkeypatch.setattr("opsearch.measure._workload.time.perf_counter", lambda: now[0])

    class TimedSession(RecordingSession):
        def run(self, outputs, feed):  # a call costs 1 ms per token of its batch
            now[0] += 1e-3 * feed["input_ids"].size
            return super().run(outputs, feed)

    session = TimedSession()
    seconds = Workload(TEXTS, tokenizer, batch_size=4, end_to_end=end_to_end).runner(session)()
    assert seconds == pytest.approx([1e-3 * f["input_ids"].size for f in session.feeds])
    assert len(seconds) == 3
