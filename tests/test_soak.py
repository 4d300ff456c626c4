"""Nothing lost, nothing hidden: the soak of benchmarks/soak.py, short. Two workers on one SQLite study, killed
with SIGINT and SIGKILL in turn and started again; then the soak's own end checks."""

from __future__ import annotations

import importlib.util
import itertools
import random
import signal
import sys
from pathlib import Path

TARGET = 4  # completed trials: a floor, reached within the 25 s
SOAK_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("opsearch_soak", SOAK_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


def test_two_workers_killed_and_restarted_lose_nothing(tmp_path, tiny_checkpoint, tiny_csv) -> None:
    url = f"sqlite:///{tmp_path / 'soak.db'}"
    settings = soak.study_settings(url, tiny_checkpoint, tiny_csv, trials=TARGET, seed=0)
    target = soak.create_study("sqlite", url, tmp_path, settings, say=print)
    # The two kills, one per worker 9-15 s after it starts (or once it is inside a trial, if later), are a SIGINT
    # and a SIGKILL, in 25 s; then SIGTERM, the sweep, the drain and the checks.
    soak.soak([target], workers=2, minutes=25 / 60, kill_every=(0.15, 0.25), rng=random.Random(0),
              signals=itertools.cycle([signal.SIGINT, signal.SIGKILL]), max_kills=2, mid_trial=True, max_minutes=4,
              say=print)
    outcome = soak.check(target)
    target.reader.close()
    print(soak.summary([outcome]))
    assert len(target.kills) == 2
    assert {k.signal for k in target.kills} == {"SIGINT", "SIGKILL"}
    assert any(k.cut_off for k in target.kills)  # at least one kill landed inside a trial
    assert [f"[{f.check}] {f.message}" for f in outcome.findings] == []
    assert outcome.lost == [] and outcome.completed >= TARGET
