"""The timing protocol: how paired rounds run and when they stop, in one frozen record.

It is read from the study's settings once and passed whole to everything that times (a trial, the front session,
fp32's reference, ``opsearch bench``), as pyperf keeps its knobs in one namespace. The settings themselves are
declared in ``opsearch.config``, with their defaults, help and checks: that is where users set them; this is where
code reads them. What a round runs is not the protocol's: the texts, batch size and end-to-end choice belong to the
workload (``samples_per_round`` is the workload's count of texts, which a small dataset may hold fewer of than
``timing_samples`` asks), the threads to the sessions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opsearch.config import ESTIMATORS, StudyConfig, default_of, settings_of

# The study setting a knob is read from, where the two names differ.
_RENAMED = {"estimator": "speedup_estimator"}


@dataclass(frozen=True)
class TimingProtocol:
    """``rounds`` paired rounds are always measured, after ``warmup_rounds`` discarded; then one more at a time while
    the speedup's interval over rounds is wider than ``ci_target``, until ``max_rounds`` or ``max_seconds``."""

    rounds: int  # paired rounds always measured
    max_rounds: int  # the most rounds measured while the interval stays wide
    warmup_rounds: int  # rounds run first on every side and discarded
    ci_target: float  # the relative half-width wanted of the speedup's 95% interval over rounds
    max_seconds: float | None  # stop adding rounds after this many seconds of timed rounds (None: no limit)
    seed: int  # seeds the order of each round and the bootstrap
    sessions_per_model: int  # sessions of each model the rounds rotate over (each pair is one block of the interval)
    estimator: str  # how the speedup is estimated from the rounds: one of ESTIMATORS

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator={self.estimator!r} is not one of {', '.join(ESTIMATORS)}")

    @classmethod
    def from_config(cls, config: StudyConfig) -> TimingProtocol:
        """The protocol a study times with."""
        return cls(**{knob: getattr(config, name) for knob, name in protocol_settings().items()})

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> TimingProtocol:
        """The protocol from settings by their names (a command's parsed flags, ``vars(args)``): a knob ``values``
        does not hold takes its setting's declared default; keys that are no knob's setting are ignored."""
        declared = settings_of(StudyConfig)
        return cls(**{knob: values[name] if name in values else default_of(declared[name][0])
                      for knob, name in protocol_settings().items()})

    def replace(self, **changes: Any) -> TimingProtocol:
        return dataclasses.replace(self, **changes)


def protocol_settings() -> dict[str, str]:
    """Each knob of :class:`TimingProtocol` and the study setting it is read from."""
    return {f.name: _RENAMED.get(f.name, f.name) for f in dataclasses.fields(TimingProtocol)}
