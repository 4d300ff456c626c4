"""One trial's work: quantize a recipe, evaluate the quantized model, and time it paired with fp32.

Everything here runs where the study's executor puts it (a child process by default, see
``search._isolation``), so it takes plain, picklable inputs and returns a plain record; it never
touches the study's storage. The parent alone writes trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from opsearch.errors import TrialFailed
from opsearch.measure import (
    AccuracyScreen,
    ClassificationTask,
    EmbeddingTask,
    LoadMeter,
    PairedTiming,
    ThreadSettings,
    TimingProtocol,
    Workload,
    evaluate_screened,
    make_session,
    measure_paired,
    pack_labels,
    timing_lock,
)
from opsearch.quantize import QuantRecipe, quantize
from opsearch.search._drift import Reference, time_reference_pair
from opsearch.store import objectives_of

Phase = Callable[[str], None]


@dataclass
class TrialSetup:
    """What every trial of a study needs, prepared once by the parent and sent to the executor once."""

    fp32_path: Path
    threads: ThreadSettings
    task: ClassificationTask | EmbeddingTask
    workload: Workload
    calibration: dict[str, np.ndarray] | None
    protocol: TimingProtocol  # how the trial is timed
    lock_path: Path | None = None  # machine-wide lock serializing timed sections; None: no lock
    cache_dir: Path | None = None  # where fused fp32 graphs are kept, made once per study
    study_name: str = ""  # named to other processes that find the lock taken
    # Early stopping (None: off, ``--no-early-stop``): evaluation stops once the trial is surely over the limit or
    # broken (``measure.screen``), and timing once it is surely dominated by a rival (racing).
    screen: AccuracyScreen | None = None
    objectives: tuple[str, ...] = ("throughput", "accuracy_loss")  # what the study optimizes (racing respects it)


@dataclass(frozen=True)
class Rival:
    """A measured trial that can dominate the next: its speedup's interval's low end and its accuracy loss."""

    trial: int
    speedup_low: float
    accuracy_loss: float
    size_mb: float = 0.0


@dataclass(frozen=True)
class TrialJob:
    number: int
    recipe: QuantRecipe
    out_dir: Path
    known_graphs: frozenset[str] = frozenset()  # graphs already measured: a repeat is not measured again
    rivals: tuple[Rival, ...] = ()  # feasible timed trials, for racing
    # The study's reference model (store._drift) when a drift check is due after this trial: (its file, its graph).
    drift_reference: Reference | None = None


@dataclass
class TrialOutcome:
    graph_hash: str
    node_counts: dict[str, int]
    quantize_seconds: float
    size_mb: float = 0.0  # the quantized model file on disk
    group_precisions: dict[str, str] = field(default_factory=dict)  # group key -> precision in the graph
    metrics: dict[str, float] | None = None  # None: the graph was in known_graphs, nothing measured
    predictions: str = ""  # packed class ids of the evaluation rows (NOT_EVALUATED where it stopped before)
    evaluate_seconds: float = 0.0
    evaluated_rows: int = 0
    stopped_early: str = ""  # why evaluation or timing stopped early: "over the limit after 300 of 872 rows"
    dominated_by: int | None = None  # the rival racing found it surely dominated by
    broken: bool = False  # stopped early at chance level: the trial fails
    timing: dict | None = None  # None: not timed (stopped early for accuracy)
    timed_window: tuple[float, float] | None = None  # wall-clock start and end of the timed section
    drift_check: dict | None = None  # the reference pair timed again after it (store._drift), when one was due

    @property
    def repeats_known_graph(self) -> bool:
        return self.metrics is None


@dataclass
class TrialMeasurer:
    """Runs jobs against one setup; the fp32 timing sessions are opened once, on first use."""

    setup: TrialSetup
    _fp32_sessions: list = field(default_factory=list, repr=False)

    def run(self, job: TrialJob, phase: Phase = lambda name: None) -> TrialOutcome:
        setup = self.setup
        phase("quantizing")
        quantized = quantize(job.recipe, fp32_path=setup.fp32_path, out_dir=job.out_dir,
                             calibration=setup.calibration, cache_dir=setup.cache_dir)
        outcome = TrialOutcome(quantized.graph_hash, quantized.node_counts, round(quantized.seconds, 2),
                               quantized.size_mb, quantized.groups or {})
        if quantized.graph_hash in job.known_graphs:
            return outcome

        phase("evaluating")
        started = time.perf_counter()
        try:
            session = make_session(quantized.path, setup.threads)
            screening = evaluate_screened(setup.task, session, setup.screen,
                                          on_chunk=lambda done, total: phase(f"evaluating ({done} of {total} rows)"))
        except TrialFailed:
            raise
        except Exception as exc:  # ONNX Runtime cannot run some quantized graphs
            raise TrialFailed(f"running the quantized model failed: {exc}") from exc
        outcome.evaluate_seconds = round(time.perf_counter() - started, 2)
        outcome.predictions = pack_labels(screening.predictions)
        outcome.evaluated_rows = screening.rows
        if screening.stopped:  # surely over the limit, or broken: never timed
            outcome.metrics, outcome.stopped_early, outcome.broken = {}, screening.reason, screening.broken
            return outcome
        outcome.metrics = screening.evaluation.metrics

        race = self._race(job.rivals, screening, quantized.size_mb) if setup.screen is not None else None
        outcome.timing = self._time(quantized.path, session, race, outcome, phase).to_dict()
        if job.drift_reference is not None:
            setup = self.setup
            outcome.drift_check = time_reference_pair(job.drift_reference, setup.fp32_path, threads=setup.threads,
                                                      workload=setup.workload, protocol=setup.protocol,
                                                      lock_path=setup.lock_path, holder=setup.study_name,
                                                      phase=phase)
        return outcome

    def _time(self, path: Path, session, race: _Race | None, outcome: TrialOutcome, phase: Phase) -> PairedTiming:
        """Time the quantized model (``session``, and more sessions of ``path``) paired with fp32 by the setup's
        protocol, under the machine's timing lock; the timed window and why racing stopped go into ``outcome``."""
        setup, protocol = self.setup, self.setup.protocol
        sessions = [session, *(make_session(path, setup.threads) for _ in range(protocol.sessions_per_model - 1))]
        if not self._fp32_sessions:
            self._fp32_sessions = [make_session(setup.fp32_path, setup.threads)
                                   for _ in range(protocol.sessions_per_model)]
        with timing_lock(setup.lock_path, holder=setup.study_name, on_wait=phase):
            phase("timing")
            began = time.time()
            timing = measure_paired(setup.workload.runner(sessions), setup.workload.runner(self._fp32_sessions),
                                    protocol=protocol, samples_per_round=setup.workload.samples,
                                    load_meter=LoadMeter, race=race)
            outcome.timed_window = (began, time.time())
        if timing.raced:
            outcome.stopped_early = timing.raced
            outcome.dominated_by = race.by
        return timing

    def _race(self, rivals: tuple[Rival, ...], screening, size_mb: float) -> _Race | None:
        """Racing on speed, against rivals at least as good on every other objective the study optimizes. None
        (no racing) when it does not optimize throughput (speed then dominates nothing), or optimizes a latency (a
        slower trial may still have the shorter tail)."""
        objectives = self.setup.objectives
        latency = any(o.timed and o.name != "throughput" for o in objectives_of(objectives))
        if "throughput" not in objectives or latency:
            return None
        loss = self.setup.screen.loss(screening.predictions, np.asarray(self.setup.task.labels))
        return _Race(tuple(r for r in rivals if r.accuracy_loss <= loss
                           and ("size" not in objectives or r.size_mb <= size_mb)))


@dataclass
class _Race:
    """Racing on speed: the rounds stop once the speedup's upper end lies below the low end of a rival that loses no
    more accuracy: surely dominated, it cannot reach the front."""

    contenders: tuple[Rival, ...]
    by: int | None = None

    def __call__(self, record: PairedTiming) -> str:
        high = record.speedup_ci[1]
        beaten = [r for r in self.contenders if r.speedup_low > high]
        if not beaten:
            return ""
        rival = max(beaten, key=lambda r: r.speedup_low)
        self.by = rival.trial
        return (f"dominated by trial {rival.trial} after {record.rounds} rounds (at most {high:.2f}x, "
                f"below its {rival.speedup_low:.2f}x at no more loss)")
