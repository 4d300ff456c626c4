"""What older opsearch versions stored, read in today's shape: the one module that knows the past shapes.

A study's record carries ``schema``, the shape its fields were written in (``SCHEMA_VERSION`` when this opsearch
made it), and so does each trial's record, stamped when a worker takes the trial: a study made by an older opsearch
and resumed by this one holds trials of both shapes. Records written before the number was kept carry none and read
as 0, the oldest. :func:`upgrade_study` and :func:`upgrade_trial` take stored user attributes to today's shape one
step at a time, from the record's schema on, as pyperf's loader upgrades an older file; every other module reads
today's shape only (through ``StudyRecord.of`` and ``TrialRecord.of``).

The numbers 1 to ``SCHEMA_VERSION`` - 1 were never stored: each names a change that needs an upgrade, in the order
they were made. A record without a number may have been written at any moment before; a study made then and resumed
later also holds fields written by a newer opsearch (a front session, a baseline timed on another machine). So each
step fills only what its change added and leaves a value already there alone. What cannot be recovered (fp32's
per-row answers a baseline never kept, a latency never measured) becomes None, which today's shape reads as "not
recorded". Steps never change the dicts they are given: Optuna may hand out its own cached copies.

A setting added after a study was made takes the value its declaration says reproduces what that study searched
(``legacy=`` in opsearch/config), else its default (how a run goes, not what it measured). That reads every
declaration whatever the schema, so a new setting needs no schema of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opsearch.config import StudyConfig, default_of, legacy_values, settings_of
from opsearch.errors import StudyError

# The shape opsearch writes: the last step below. The key holding it, in a study's record and in a trial's.
SCHEMA_VERSION = 9
SCHEMA_KEY = "schema"

Values = Sequence[float] | None  # a finished trial's objective values (None: not finished)


def upgrade_study(attrs: Mapping[str, Any], *, what: str = "a study") -> dict[str, Any]:
    """A study's stored user attributes in today's shape (a new dict; ``attrs`` is left as it is)."""
    version = _version(attrs, what)
    out = dict(attrs)
    for step in _STEPS[version:]:
        step.upgrade_study(out)
    if out.get("opsearch_config") is not None:
        out["opsearch_config"] = _settings(out["opsearch_config"])
    out[SCHEMA_KEY] = SCHEMA_VERSION
    return out


def upgrade_trial(attrs: Mapping[str, Any], values: Values = None, *, what: str = "a trial") -> Mapping[str, Any]:
    """A trial's stored user attributes in today's shape; ``values``: its objective values, if it finished.
    A trial of today's schema comes back as it is (not copied)."""
    version = _version(attrs, what)
    if version == SCHEMA_VERSION:
        return attrs
    out = dict(attrs)
    for step in _STEPS[version:]:
        step.upgrade_trial(out, values)
    out[SCHEMA_KEY] = SCHEMA_VERSION
    return out


def _version(attrs: Mapping[str, Any], what: str) -> int:
    version = attrs.get(SCHEMA_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= SCHEMA_VERSION:
        raise StudyError(f"{what} was stored in schema {version!r}, and this opsearch reads schemas 0 to "
                         f"{SCHEMA_VERSION}: a newer opsearch wrote it; upgrade opsearch to read it.")
    return version


# Helpers: each returns a new dict, never changing the one it is given -------------------------------------------


def _filled(stored: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """``stored`` with each of ``values`` it lacks."""
    return {**values, **stored}


# Timing records. A trial's is a PairedTiming record ({} when never timed), as are the front session's; the
# baseline's and each baseline timed on another machine are SingleTiming records.


def _paired(attrs: dict[str, Any], upgrade: Callable[[dict], dict]) -> None:
    """``upgrade`` applied to the front session's timing records, in a study's attrs."""
    session = attrs.get("front_remeasured")
    if session and session.get("trials"):
        attrs["front_remeasured"] = {**session, "trials": {n: upgrade(t) for n, t in session["trials"].items()}}


def _trial_timing(attrs: dict[str, Any], upgrade: Callable[[dict], dict]) -> None:
    if attrs.get("timing"):
        attrs["timing"] = upgrade(attrs["timing"])


def _single(attrs: dict[str, Any], upgrade: Callable[[dict], dict]) -> None:
    """``upgrade`` applied to the fp32 timing records, the baseline's and those of other machines."""
    baseline = attrs.get("baseline")
    if baseline and baseline.get("timing"):
        attrs["baseline"] = {**baseline, "timing": upgrade(baseline["timing"])}
    if attrs.get("baselines"):
        attrs["baselines"] = [{**b, "timing": upgrade(b["timing"])} if b.get("timing") else b
                              for b in attrs["baselines"]]


def _baseline(attrs: dict[str, Any], **values: Any) -> None:
    """The fp32 baseline given each of ``values`` it lacks (a study without a baseline yet has none to upgrade)."""
    if attrs.get("baseline"):
        attrs["baseline"] = _filled(attrs["baseline"], **values)


def _session(attrs: dict[str, Any], **values: Any) -> None:
    if attrs.get("front_remeasured"):
        attrs["front_remeasured"] = _filled(attrs["front_remeasured"], **values)


# The steps, one per schema: what changed then, and how a record stored before it reads today -------------------


def _study_1(attrs: dict[str, Any]) -> None:
    """1, the search over fusion and static flags (commit 6585821): the space keeps its calibration choices as lists,
    and the fusion levels, static formats, activation types and fragile-node choices it searched. A space stored before
    searched the exported graph, QOperator, uint8 activations and fragile nodes quantized: those settings' declared
    values."""
    space = attrs.get("search_space")
    if not space:
        return
    before = _declared()
    listed = {k: space[k] if isinstance(space[k], list) else [space[k]]
              for k in ("calibration_method", "calibration_samples") if k in space}
    attrs["search_space"] = _filled({**space, **listed}, fusions=list(before["fusions"]),
                                    formats=list(before["formats"]),
                                    activation_types=list(before["activation_types"]),
                                    exclude_fragile=[before["exclude_fragile"]])


def _paired_2(timing: dict[str, Any]) -> dict[str, Any]:
    """2, the floor estimator (commit e468dcf): a timing record names its estimator and keeps both estimators' speedups,
    each side's floor cost and the load on the machine. A record from before holds the median of per-round ratios (the
    setting's declared value) and no floors or load."""
    medians = {"median_ratio": timing["speedup"]} if "speedup" in timing else {}
    if "speedup_ci" in timing:
        medians["median_ratio_ci"] = timing["speedup_ci"]
    return _filled(timing, estimator=_declared()["speedup_estimator"], floor_speedup=None, candidate_floor_s=None,
                   baseline_floor_s=None, other_cores=None, steal_cores=None, **medians)


def _study_3(attrs: dict[str, Any]) -> None:
    """3, the front session lists the trials it saw, ``considered`` (commit 6350393): those completed later compete with
    their own numbers. A session from before did not list them: None, every trial counts as seen."""
    _session(attrs, considered=None)


def _paired_4(timing: dict[str, Any]) -> dict[str, Any]:
    """4, accuracy intervals and session blocks (commit 52be8e1): a timing record keeps the bootstrap over rounds alone
    apart from the interval across sessions. A record from before has one interval, over rounds: one block."""
    halfwidth = {"rounds_halfwidth": timing["ci_halfwidth"]} if "ci_halfwidth" in timing else {}
    return _filled(timing, blocks=1, rounds_ci=None, **halfwidth)


def _study_4(attrs: dict[str, Any]) -> None:
    """4, accuracy intervals (commit 52be8e1): the baseline keeps fp32's per-row answers and the evaluation labels
    (packed), and the batch accuracy is evaluated in; the front session tests for ties. A baseline from before kept no
    answers, which cannot be recovered (None: no loss interval, no early stopping), and evaluated at batch 1; a session
    from before tested nothing (no tie groups)."""
    _baseline(attrs, predictions=None, labels=None, accuracy_batch_size=1)
    _session(attrs, ties=[], tie_test=None)


def _trial_4(attrs: dict[str, Any], values: Values) -> None:
    """4, accuracy intervals (commit 52be8e1): a trial keeps its per-row answers, its loss's paired interval and the
    batch it was evaluated in. One evaluated before has neither answers nor interval (None: its loss is a point) and was
    evaluated at batch 1."""
    if "accuracy" in attrs:
        attrs.setdefault("accuracy_batch_size", 1)
        attrs.setdefault("accuracy_loss_ci", None)


def _paired_5(timing: dict[str, Any]) -> dict[str, Any]:
    """5, early stopping (commit 9ea307b): a timing record says why racing stopped its rounds (never, before)."""
    return _filled(timing, raced="")


def _trial_5(attrs: dict[str, Any], values: Values) -> None:
    """5, early stopping (commit 9ea307b): a trial keeps its timing's seconds and the evaluation rows it answered. One
    from before kept the timed window (the seconds are its length; a trial timed before the window was kept has none)
    and not the rows (None)."""
    if "timing" in attrs and "timing_seconds" not in attrs:
        window = attrs.get("timed_window")
        attrs["timing_seconds"] = float(window[1] - window[0]) if window else None
    if "accuracy" in attrs:
        attrs.setdefault("evaluated_rows", None)


def _paired_6(timing: dict[str, Any]) -> dict[str, Any]:
    """6, objectives chosen per study (commit ddd9c9b): a timing record keeps both sides' per-call latency percentiles
    (None before: not measured)."""
    return _filled(timing, latency_ms=None, baseline_latency_ms=None)


def _single_6(timing: dict[str, Any]) -> dict[str, Any]:
    """6, objectives chosen per study (commit ddd9c9b): fp32's timing record keeps its per-call latency percentiles."""
    return _filled(timing, latency_ms=None)


def _study_6(attrs: dict[str, Any]) -> None:
    """6, objectives chosen per study (commit ddd9c9b): the baseline keeps fp32's model file size (None before: not
    measured)."""
    _baseline(attrs, size_mb=None)


def _trial_6(attrs: dict[str, Any], values: Values) -> None:
    """6, objectives chosen per study (commit ddd9c9b): a trial keeps its model file size (None before: not measured).
    Until then every study optimized throughput, then accuracy loss, and read a finished trial's loss from its second
    value: a record without its own loss takes it from there."""
    if "quantized_nodes" in attrs:
        attrs.setdefault("size_mb", None)
    if "accuracy_loss" not in attrs and values is not None and len(values) >= 2:
        attrs["accuracy_loss"] = float(values[1])


def _study_7(attrs: dict[str, Any]) -> None:
    """7, the mixed mode (commit f2c2d1f): the space keeps each fusion level's groups and the ranges pass's errors (none
    before)."""
    if attrs.get("search_space"):
        attrs["search_space"] = _filled(attrs["search_space"], groups={}, sensitivity={})


def _trial_7(attrs: dict[str, Any], values: Values) -> None:
    """7, the mixed mode (commit f2c2d1f): a trial keeps the precision its graph gives each group (none recorded
    before)."""
    if "quantized_nodes" in attrs:
        attrs.setdefault("group_precisions", {})


def _study_8(attrs: dict[str, Any]) -> None:
    """8, MatMuls with a constant weight apart (commit bca69a3): the space names the fusion levels where a recipe
    quantizing MatMul chooses ``matmul_weights_only``. A space stored before asked it nowhere."""
    if attrs.get("search_space"):
        attrs["search_space"] = _filled(attrs["search_space"], matmul_weights_only=[])


def _study_9(attrs: dict[str, Any]) -> None:
    """9, smoothing (quantize._smooth): the space names the strengths each role's smoothing is searched at. A space
    stored before searched none."""
    if attrs.get("search_space"):
        attrs["search_space"] = _filled(attrs["search_space"], smoothing=[])


def _nothing(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class _Step:
    """The upgrades to one schema: of the study's own fields, of a trial's, and of every paired (a trial's, the
    front session's) and single (fp32's) timing record."""

    study: Callable[[dict], None] = _nothing
    trial: Callable[[dict, Values], None] = _nothing
    paired: Callable[[dict], dict] | None = None
    single: Callable[[dict], dict] | None = None

    def upgrade_study(self, attrs: dict[str, Any]) -> None:
        self.study(attrs)
        if self.paired is not None:
            _paired(attrs, self.paired)
        if self.single is not None:
            _single(attrs, self.single)

    def upgrade_trial(self, attrs: dict[str, Any], values: Values) -> None:
        self.trial(attrs, values)
        if self.paired is not None:
            _trial_timing(attrs, self.paired)


# _STEPS[k] upgrades schema k to k + 1.
_STEPS = (
    _Step(study=_study_1),
    _Step(paired=_paired_2),
    _Step(study=_study_3),
    _Step(study=_study_4, trial=_trial_4, paired=_paired_4),
    _Step(trial=_trial_5, paired=_paired_5),
    _Step(study=_study_6, trial=_trial_6, paired=_paired_6, single=_single_6),
    _Step(study=_study_7, trial=_trial_7),
    _Step(study=_study_8),
    _Step(study=_study_9),
)
assert len(_STEPS) == SCHEMA_VERSION, "one step per schema: SCHEMA_VERSION is the last step's"


# Settings ------------------------------------------------------------------------------------------------------


@functools.cache
def _declared() -> dict[str, Any]:
    """Each setting's value for a study that predates it: the declared one, else its default. Model and dataset
    have neither (every stored config names them)."""
    defaults = {name: default_of(f) for name, (f, _) in settings_of(StudyConfig).items()
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return {**defaults, **legacy_values(StudyConfig)}


def _settings(stored: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stored config with every setting it predates (the same dict when it lacks none)."""
    missing = {k: v for k, v in _declared().items() if k not in stored}
    return {**copy.deepcopy(missing), **stored} if missing else stored
