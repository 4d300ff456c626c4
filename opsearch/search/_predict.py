"""Predicted speed in the search: the cost model (``measure._cost``) built once per study and machine, when the
starting points are done; every later trial's speedup predicted before it runs and stored; the model checked and
recalibrated on every timed trial; a configuration that cannot reach the front pruned untimed; the sampler's draws
alternating with the untried neighbour of the answer so far that the model predicts fastest; and the study's stop
when nothing untried can.

A configuration cannot reach the front, whatever its accuracy turns out to be, when even the top of its predicted
interval lies below the speedup (the interval's low end) of a trial measured here with no accuracy loss: that trial
is at least as accurate and surely faster. (A loss below zero is the evaluation rows' noise around fp32, not a gain
worth keeping a slower model for.) Accuracy is never predicted. Only speed and accuracy loss decide this: a study
that also optimizes size or a latency percentile stores predictions and prunes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from opsearch.measure import CostModel, Prediction, build_cost_model, timing_lock
from opsearch.quantize import QuantRecipe
from opsearch.search._context import StudyContext
from opsearch.search._sampling import tried_keys
from opsearch.search._space import params_key, speed_key
from opsearch.store import StudyRecord, TrialRecord, best_within, rows_timed_on, set_study_attrs

COMPLETE = optuna.trial.TrialState.COMPLETE
# The fp32 calls and passes the profiles take: the shapes matter, not how many texts (a few dozen calls suffice).
PROFILE_CALLS = 16
PROFILE_PASSES = 3
# A space of at most this many speed classes (``SearchSpace.speed_classes``: configurations apart from the flags that
# change numbers, not kernels) is checked whole after each trial: the study stops as soon as no untried
# configuration's predicted top reaches the bar. MiniLM's 377,833 configurations make 47,293 classes, predicted in
# about 4 s once per run. A larger space stops after this many draws in a row came out pruned or repeated.
SPEED_INDEX_MAX = 200_000
PATIENCE = 25
# Building the model costs about as much as a few trials (MiniLM, 2 cores: a minute and a half, 19 probes, about
# BUILD_TRIALS trials' time): a run with fewer trials left than MIN_TRIALS_LEFT when its starting points are done,
# or whose time budget fits fewer than both together, goes without (a stored model is used whatever is left).
MIN_TRIALS_LEFT = 5
BUILD_TRIALS = 5
# The objectives predictions may prune for: speed and accuracy loss (see the module's docstring).
PRUNING_OBJECTIVES = frozenset({"throughput", "accuracy_loss"})


@dataclass(frozen=True)
class Bar:
    """The trial a configuration must be able to beat: measured here with no accuracy loss, the fastest such."""

    trial: int
    speedup: float  # its speedup interval's low end

    def describe(self) -> str:
        return f"trial {self.trial}'s {self.speedup:.2f}x (measured with no accuracy loss)"


@dataclass(frozen=True)
class Suggestion:
    """An untried neighbour of the answer so far, predicted faster than it: the study runs it next."""

    params: dict
    prediction: Prediction
    near: int  # the answer's trial
    near_speedup: float

    def describe(self) -> str:
        return (f"{self.prediction.describe()}, the fastest predicted of trial {self.near}'s untried neighbours "
                f"(it measured {self.near_speedup:.2f}x)")


class Predictor:
    """The study's cost model on this machine, and what the search does with it (see the module's docstring)."""

    def __init__(self, context: StudyContext, study: optuna.Study, machine_id: str) -> None:
        self.context, self.study, self.machine_id = context, study, machine_id
        self.model: CostModel | None = None
        self.misses = 0  # sampled draws in a row pruned by prediction or repeated
        self.skipped = False  # said once that this run goes without a model
        self.waiting = False  # said once that the model waits for a bar
        self.prunes = set(context.config.objectives) <= PRUNING_OBJECTIVES
        self._index: _SpeedIndex | None | bool = False  # False: not made yet; None: the space is too large

    # The model --------------------------------------------------------------------------------------------

    def available(self, *, starting: bool, trials_left: int,
                  seconds_left: Callable[[], tuple[float, float]] = lambda: (math.inf, 0.0)) -> bool:
        """Whether to predict a trial: once the model exists, every trial; before, any but a starting point (they
        run first, unpredicted), and only when the model is stored, or when enough trials are left to pay for
        building it (``MIN_TRIALS_LEFT``; ``seconds_left()``: the run's budget for trials and a typical trial's
        seconds) and a trial timed here lost no accuracy (before that bar exists the model could prune nothing nor
        stop the study: the presets run as they are meanwhile)."""
        if self.model is not None:
            return True
        if starting:
            return False
        if self.machine_id in StudyRecord.of(self.study).cost_models:
            return True
        if self.prunes and self.bar() is None:
            if not self.waiting:
                self.waiting = True
                self.context.progress("cost model: not built yet: no trial timed here has lost no accuracy, so "
                                      "predictions could prune nothing; built once one has")
            return False
        left_s, trial_s = seconds_left()
        if trials_left >= MIN_TRIALS_LEFT and left_s >= (MIN_TRIALS_LEFT + BUILD_TRIALS) * trial_s:
            return True
        if not self.skipped:
            self.skipped = True
            self.context.progress(f"cost model: not built for this run's last {trials_left} trial(s) or its time "
                                  f"budget (it costs about {BUILD_TRIALS} trials' time; built when "
                                  f"{MIN_TRIALS_LEFT} or more trials and their time are left after it)")
        return False

    def ready(self) -> CostModel:
        """The model, built here once per study and machine (under the timing lock) or read from the study, and
        calibrated on every trial this machine timed."""
        if self.model is None:
            stored = StudyRecord.of(self.study).cost_models.get(self.machine_id)
            model = CostModel.from_dict(stored) if stored else self._build()
            self.model = model
            self.recalibrate()
        return self.model

    def _build(self) -> CostModel:
        ctx, space = self.context, self.context.space
        progress = ctx.progress
        progress("cost model: profiling fp32 and quantized probes on this machine (once per study and machine) ...")
        started = time.perf_counter()
        feeds = ctx.workload.feeds()[:PROFILE_CALLS]
        modes = space.modes
        calibration = ctx.calibration if {"mixed", "static"} & set(modes) else None
        with timing_lock(ctx.lock_path, holder=ctx.study_name, on_wait=progress):
            model = build_cost_model(ctx.model.onnx_path, feeds, ctx.threads, work_dir=Path(ctx.cache_dir) / "cost",
                                     fusions=space.fusions, modes=modes, calibration=calibration,
                                     cache_dir=ctx.cache_dir, passes=PROFILE_PASSES,
                                     static_ops=space.static_variants() if "static" in modes else None)
        set_study_attrs(self.study, cost_models={**StudyRecord.of(self.study).cost_models,
                                                 self.machine_id: model.to_dict()})
        progress(f"cost model: {len(model.factors)} kernel kinds from {len(model.probes)} probes in "
                 f"{time.perf_counter() - started:.0f} s; predictions within x/÷{math.exp(model.error):.2f} "
                 "until timed trials check them")
        return model

    def recalibrate(self) -> None:
        """The model's bias and band from every trial this machine timed: its prediction against its speedup."""
        if self.model is not None:
            self.model = self.model.calibrate(self.checks())

    def checks(self) -> list[tuple[float, float]]:
        """(raw predicted speedup, measured speedup) for every trial timed on this machine the model covers."""
        out = []
        for trial in self.study.get_trials(deepcopy=False, states=(COMPLETE,)):
            record = TrialRecord.of(trial)
            if record.machine_id != self.machine_id or not record.speedup or not record.recipe or not record.timing:
                continue
            prediction = self.model.predict(QuantRecipe.from_dict(record.recipe)) if self.model else None
            if prediction is not None and not prediction.bound_only:
                out.append((prediction.raw, record.speedup))
        return out

    def predict(self, recipe: QuantRecipe) -> Prediction | None:
        return self.ready().predict(recipe)

    # What the search does with it -------------------------------------------------------------------------

    def bar(self) -> Bar | None:
        """The fastest trial timed here that lost no accuracy (None: none yet, or a study that prunes nothing)."""
        if not self.prunes:
            return None
        lossless = [r for r in rows_timed_on(self.study, self.machine_id) if r.accuracy_loss_pt <= 0]
        best = max(lossless, key=lambda r: r.speedup_ci_low, default=None)
        return None if best is None else Bar(best.trial, best.speedup_ci_low)

    def below(self, prediction: Prediction | None) -> Bar | None:
        """The bar this prediction surely cannot reach, if any: the configuration is then pruned untimed."""
        bar = self.bar()
        if prediction is None or bar is None or not prediction.surely_below(bar.speedup):
            return None
        return bar

    def suggestion(self) -> Suggestion | None:
        """The untried configuration one parameter away from the answer so far that the model predicts fastest,
        when that prediction beats the answer's measured speedup (None otherwise, or before the model exists). The
        answer is the fastest trial timed here surely within the limit (any loss without one)."""
        if self.model is None:
            return None
        limit = self.context.config.accuracy_limit(StudyRecord.of(self.study).baseline_accuracy)
        answer = best_within(rows_timed_on(self.study, self.machine_id, max_accuracy_loss=limit), limit)
        near = None if answer is None else self.study.get_trials(deepcopy=False)[answer.trial].params
        if not near:
            return None
        space, tried = self.context.space, tried_keys(self.study)
        best: Suggestion | None = None
        for params in space.neighbours(near):
            if params_key(params) in tried:
                continue
            prediction = self.model.predict(space.recipe_for(params))
            if prediction is None or prediction.bound_only:  # a bound says what cannot lead, not what will
                continue
            if best is None or prediction.speedup > best.prediction.speedup:
                best = Suggestion(params, prediction, answer.trial, answer.speedup)
        return best if best is not None and best.prediction.speedup > answer.speedup else None

    def counted(self, record: TrialRecord) -> None:
        """A trial ended: count the draws in a row that came out pruned by prediction or repeated."""
        self.misses = self.misses + 1 if (record.predicted_below is not None or record.repeat_of is not None) else 0

    def why_stop(self) -> str:
        """Why the study should stop now ("" when it should go on): nothing untried can reach the bar."""
        if self.model is None or not self.prunes:
            return ""
        bar = self.bar()
        if bar is None:
            return ""
        if self._index is False:
            self._index = _SpeedIndex.of(self.context.space, self.model)
        if self._index is not None:
            best = self._index.highest_untried(self.model, self.context.space, tried_keys(self.study), bar.speedup)
            if best is None:
                return ""
            return (f"no untried configuration of the space can reach {bar.describe()}: the highest predicted is "
                    f"{best:.2f}x at most. The front cannot move: stopping (--no-predict runs every trial)")
        if self.misses >= PATIENCE:
            return (f"the sampler's last {self.misses} draws were all predicted below {bar.describe()} or measured "
                    "already. The front is unlikely to move: stopping (--no-predict runs every trial)")
        return ""


@dataclass(frozen=True)
class _SpeedIndex:
    """Every speed class of the space (``SearchSpace.speed_classes``) with its prediction's top, made once per run:
    calibration moves only the band and the bias, the same for every prediction, so the tops are scaled, not
    predicted again."""

    entries: list[tuple[tuple, int, float | None]]  # (speed key, configurations it stands for, predicted top)
    log_band: float  # the model's bias + error when the tops were predicted

    @classmethod
    def of(cls, space, model: CostModel) -> _SpeedIndex | None:
        """None when the space holds more than ``SPEED_INDEX_MAX`` speed classes."""
        entries = []
        for params, recipe, members in space.speed_classes():
            if len(entries) >= SPEED_INDEX_MAX:
                return None
            prediction = model.predict(recipe)
            entries.append((_class_key(params, recipe), members, None if prediction is None else prediction.high))
        return cls(entries, model.bias + model.error)

    def highest_untried(self, model: CostModel, space, tried: set[tuple], bar: float) -> float | None:
        """The highest predicted top of the untried configurations when it lies below ``bar`` (0 when every
        configuration was tried); None when one may reach it (or is not predicted). ``tried``: ``tried_keys``."""
        counts: dict[tuple, int] = {}
        for key in tried:
            params = dict(key)
            try:
                ck = _class_key(params, space.recipe_for(params))
            except KeyError:  # a trial of parameters this space does not ask (an older space's): not one of its own
                continue
            counts[ck] = counts.get(ck, 0) + 1
        scale = math.exp(model.bias + model.error - self.log_band)
        best = 0.0
        for key, members, top in self.entries:
            if counts.get(key, 0) >= members:
                continue
            if top is None or top * scale >= bar:
                return None
            best = max(best, top * scale)
        return best


def _class_key(params: dict, recipe: QuantRecipe) -> tuple:
    """The speed class of these parameters; every configuration that quantizes nothing on a fusion level is one."""
    return ("fusion only", recipe.fusion) if not recipe.operators_to_quantize else speed_key(params)


def prediction_attrs(prediction: Prediction | None) -> dict:
    """A trial's ``predicted`` record (None when the model does not cover its recipe)."""
    if prediction is None:
        return {"predicted": None}
    out = {"speedup": prediction.speedup, "low": prediction.low, "high": prediction.high, "raw": prediction.raw}
    if prediction.bound_only:
        out["bound_only"] = True
    return {"predicted": out}
