"""`opsearch bench`: the study's paired measurement for any two ONNX models."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opsearch.measure._machine import LoadMeter
from opsearch.measure._protocol import TimingProtocol
from opsearch.measure._sessions import ThreadSettings, make_session
from opsearch.measure._statistics import verdict, widen
from opsearch.measure._timing import PairedTiming, measure_paired
from opsearch.measure._workload import Workload
from opsearch.source import prepare_model


@dataclass(frozen=True)
class BenchResult:
    model_a: str
    model_b: str
    timing: PairedTiming  # candidate = A, baseline = B: speedup is how much faster A runs than B
    workload: dict
    threads: ThreadSettings
    margin: float = 0.0  # the smallest difference worth naming (relative): see ``measure.verdict``

    @property
    def drift_sd(self) -> float:
        """How much the speedup moved over the run, beyond its rounds' noise (log scale; ``PairedTiming.drift_sd``)."""
        return self.timing.drift_sd()

    @property
    def interval(self) -> tuple[float, float]:
        """The speedup's 95% interval: across sessions, widened by the drift over the run."""
        return widen(self.timing.speedup_ci, self.timing.speedup, self.drift_sd, level=self.timing.ci_level)

    @property
    def verdict(self) -> str:
        """One of ``VERDICTS``: the interval against the margin (``measure.verdict``)."""
        return verdict(self.interval, self.margin)

    @property
    def most_apart(self) -> float:
        """The most the two could differ by, from the interval: max(high - 1, 1 - low), relative."""
        low, high = self.interval
        return max(high - 1, 1 - low, 0.0)

    def to_dict(self) -> dict:
        t = self.timing
        record = {k: v for k, v in t.to_dict().items() if k not in ("candidate_s", "baseline_s")}
        low, high = self.interval
        return {"model_a": self.model_a, "model_b": self.model_b, "verdict": self.verdict, "margin": self.margin,
                "most_apart": self.most_apart, **record, "speedup_ci": [low, high],
                "ci_halfwidth": (high - low) / 2 / t.speedup, "speedup_ci_sessions": list(t.speedup_ci),
                "drift_sd": self.drift_sd, "ci_level": t.ci_level,
                "throughput_a": t.throughput, "throughput_b": t.baseline_throughput, "workload": self.workload,
                "threads": self.threads.__dict__}

    def summary(self) -> str:
        t = self.timing
        met = (f"over rounds alone +-{t.rounds_halfwidth:.1%}, "
               + ("target met" if t.target_met else f"WIDER than the +-{t.ci_target:.0%} target"))
        other = (f"median of per-round ratios {t.median_ratio:.3f}x" if t.estimator == "floor"
                 else f"floor {t.floor_speedup:.3f}x")
        low, high = self.interval
        margin = f"{self.margin:.0%} margin" if self.margin else "no margin"
        verdict_line = {
            "same": f"no meaningful difference ({margin}): A and B differ by at most {self.most_apart:.1%}",
            "a_faster": f"A is faster: by {low - 1:.1%} to {high - 1:.1%} ({margin})",
            "b_faster": f"B is faster: by {1 / high - 1:.1%} to {1 / low - 1:.1%} ({margin})",
            "undecided": f"undecided: A and B differ by at most {self.most_apart:.1%}, which the {margin} neither "
                         "rules in nor out; more rounds (--max-rounds) would decide"}[self.verdict]
        lines = [verdict_line,
                 f"A is {t.speedup:.3f}x B ({t.estimator}; 95% CI {low:.3f}-{high:.3f}, "
                 f"+-{(high - low) / 2 / t.speedup:.1%}: across sessions {t.speedup_ci[0]:.3f}-{t.speedup_ci[1]:.3f}"
                 f", widened by the drift over the run, {self.drift_sd:.1%}; {met}; {t.rounds} paired rounds; "
                 f"{other})",
                 f"A: {t.throughput:.1f} samples/s   B: {t.baseline_throughput:.1f} samples/s   "
                 f"({self.workload['samples']} texts per round, batch {self.workload['batch_size']})"]
        lines += [f"warning: {w}" for w in t.warnings()]
        return "\n".join(lines)


def synthetic_texts(tokenizer, *, n: int, seed: int = 0, min_words: int = 8, max_words: int = 40) -> list[str]:
    """Seeded sentences of whole-word vocabulary tokens, of varied lengths: timing depends on lengths only."""
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 2]
    if not words:
        raise ValueError("the tokenizer's vocabulary has no plain words to build texts from; pass --dataset")
    rng = np.random.default_rng(seed)
    words.sort()
    return [" ".join(rng.choice(words, size=rng.integers(min_words, max_words + 1))) for _ in range(n)]


def bench(model_a: str, model_b: str, *, texts: list[str] | None, samples: int, batch_size: int, end_to_end: bool,
          max_length: int, threads: ThreadSettings, protocol: TimingProtocol, margin: float = 0.0) -> BenchResult:
    """Time A against B in interleaved rounds, as a study times a trial, by ``protocol``; the workload's arguments
    are the study's settings of the same names. ``texts=None`` uses synthetic texts from B's tokenizer, seeded by
    the protocol's seed."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="opsearch-bench-") as tmp:
        a = prepare_model(model_a, cache_dir=Path(tmp) / "a")
        b = prepare_model(model_b, cache_dir=Path(tmp) / "b")
        tokenizer = AutoTokenizer.from_pretrained(b.folder)
        texts = (texts or synthetic_texts(tokenizer, n=samples, seed=protocol.seed))[:samples]
        workload = Workload(texts, tokenizer, batch_size=batch_size, max_length=max_length, end_to_end=end_to_end)
        sessions_a = [make_session(a.onnx_path, threads) for _ in range(protocol.sessions_per_model)]
        sessions_b = [make_session(b.onnx_path, threads) for _ in range(protocol.sessions_per_model)]
        timing = measure_paired(workload.runner(sessions_a), workload.runner(sessions_b), protocol=protocol,
                                samples_per_round=workload.samples, load_meter=LoadMeter)
    return BenchResult(model_a, model_b, timing, workload.describe(), threads, margin)
