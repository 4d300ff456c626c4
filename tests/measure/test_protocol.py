"""opsearch.measure._protocol: the timing protocol is read from the study's settings, every timing knob of them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from opsearch.config import StudyConfig, default_of, settings_of
from opsearch.config._setting import TIMING
from opsearch.measure import TimingProtocol, protocol_settings

# A value for each knob's setting, none of them its default: a knob read from the wrong setting, or left at a
# default, shows.
CHANGED = {"rounds": 7, "max_rounds": 41, "warmup_rounds": 3, "ci_target": 0.037, "max_seconds": 77.5, "seed": 13,
           "sessions_per_model": 5, "speedup_estimator": "median"}
# Timing settings that are not how rounds run, and whose they are.
NOT_THE_PROTOCOLS = {"timing_samples": "the workload's texts", "batch_size": "the workload's",
                     "end_to_end": "the workload's", "intra_op_threads": "the sessions'",
                     "inter_op_threads": "the sessions'", "allow_spinning": "the sessions'",
                     "remeasure_front": "whether the front session runs at all",
                     "margin": "how a measured difference is judged (ties, verdicts), not how rounds run"}


def config(**settings: Any) -> StudyConfig:
    return StudyConfig(**{"model": "some-org/some-model", "dataset": "data.csv", **settings})


def test_the_protocol_carries_every_timing_knob_of_a_config() -> None:
    declared = settings_of(StudyConfig)
    assert all(value != default_of(declared[name][0]) for name, value in CHANGED.items())
    protocol = TimingProtocol.from_config(config(**CHANGED))
    assert dataclasses.asdict(protocol) == {"rounds": 7, "max_rounds": 41, "warmup_rounds": 3, "ci_target": 0.037,
                                            "max_seconds": 77.5, "seed": 13, "sessions_per_model": 5,
                                            "estimator": "median"}


def test_every_timing_setting_is_the_protocols_or_named_as_another_ones() -> None:
    """A timing setting added to the config must be read by the protocol, or said here to belong elsewhere."""
    timing = {name for name, (_, info) in settings_of(StudyConfig).items() if info.group == TIMING}
    read = set(protocol_settings().values())
    assert timing - set(NOT_THE_PROTOCOLS) <= read, "a timing setting the protocol does not read"
    assert read <= set(settings_of(StudyConfig)), "a knob read from no setting"
    assert not read & set(NOT_THE_PROTOCOLS)
    assert set(CHANGED) == read  # the test above changes every knob


def test_settings_by_name_fill_the_missing_knobs_with_their_declared_defaults() -> None:
    given = {"rounds": 4, "max_rounds": 9, "speedup_estimator": "median", "model_a": "a.onnx", "json": True}
    assert TimingProtocol.from_settings(given) == TimingProtocol.from_config(
        config(rounds=4, max_rounds=9, speedup_estimator="median"))


def test_replace_changes_only_what_it_is_told_and_the_protocol_is_frozen() -> None:
    protocol = TimingProtocol.from_config(config(**CHANGED))
    longer = protocol.replace(max_seconds=300.0)
    assert longer.max_seconds == 300.0 and protocol.max_seconds == 77.5
    assert dataclasses.replace(longer, max_seconds=77.5) == protocol
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.rounds = 1  # type: ignore[misc]


def test_an_unknown_estimator_is_refused_when_the_protocol_is_made() -> None:
    with pytest.raises(ValueError, match="estimator='mean' is not one of floor, median"):
        TimingProtocol.from_config(config()).replace(estimator="mean")
