"""The displays of a running study: lines, a progress bar, JSON lines."""

from __future__ import annotations

import io
import json

from opsearch.search import Bar, JsonLog, TrialEvent, as_progress, describe

DONE = TrialEvent(trial=4, state="complete", label="dynamic[MatMul] s8", done=2, total=4, elapsed_s=65.0,
                  remaining_s=65.0, speedup=2.05, ci_halfwidth=0.012, rounds=12, samples_per_s=410.0,
                  accuracy_loss_pt=0.25, loss_ci_pt=[0.0, 0.57], constraint="within",
                  best={"trial": 4, "speedup": 2.05, "accuracy_loss_pt": 0.25, "limit_pt": 1.0})
FAILED = TrialEvent(trial=5, state="fail", label="static[Add] QOperator", done=3, total=4, elapsed_s=70.0,
                    remaining_s=23.3, reason="crashed with SIGSEGV while quantizing")


def test_lines_say_what_a_trial_gave_and_how_long_is_left() -> None:
    first, best = describe(DONE)
    assert first.startswith("[2/4 1:05 elapsed, ~1:05 left] trial 4 dynamic[MatMul] s8: 410.0 samples/s, 2.05x fp32")
    assert "(+-1.2%, 12 rounds), accuracy loss +0.25 pt (95% CI +0.00 to +0.57, within)" in first
    assert best == "        best within 1 pt: trial 4, 2.05x, loss +0.25 pt"
    assert describe(FAILED) == ["[3/4 1:10 elapsed, ~0:23 left] trial 5 static[Add] QOperator: fail: "
                                "crashed with SIGSEGV while quantizing"]
    sized = describe(TrialEvent(**{**DONE.__dict__, "size_mb": 12.84, "latency_p99_ms": 6.71}))[0]
    assert sized.endswith("(95% CI +0.00 to +0.57, within), 12.8 MB, p99 6.7 ms")


def test_a_plain_callable_gets_the_lines() -> None:
    seen: list[str] = []
    progress = as_progress(seen.append)
    progress("hello")
    progress.trial_started(4, "dynamic[MatMul] s8")
    progress.trial_finished(FAILED)
    assert seen == ["hello", "trial 4: dynamic[MatMul] s8 ...", *describe(FAILED)]
    assert as_progress(progress) is progress


def test_json_log_writes_one_object_per_line() -> None:
    out = io.StringIO()
    log = JsonLog(out)
    log.start(4)
    log("model ready")
    log.trial_started(4, "dynamic[MatMul] s8")
    log.trial_finished(DONE)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["started", "message", "trial_started", "trial_finished"]
    assert events[1]["text"] == "model ready"
    assert events[3]["loss_ci_pt"] == [0.0, 0.57] and events[3]["constraint"] == "within"
    assert events[3]["speedup"] == 2.05 and events[3]["best"]["trial"] == 4 and events[3]["remaining_s"] == 65.0


def test_the_bar_counts_trials_and_shows_the_current_one_and_the_best() -> None:
    out = io.StringIO()
    bar = Bar(out)
    bar.start(4)
    bar.trial_started(4, "dynamic[MatMul] s8")
    assert "dynamic[MatMul] s8" in bar.bar.postfix
    bar.phase("timing")
    assert bar.bar.desc == "trial 4: timing"
    bar.trial_finished(DONE)
    assert bar.bar.n == 1 and bar.bar.total == 4
    assert "best within 1 pt: #4 2.05x +0.25 pt" in bar.bar.postfix
    bar.close()
    text = out.getvalue()
    assert "trial 4 dynamic[MatMul] s8: 410.0 samples/s" in text  # the trial's line printed above the bar
    assert "1/4 trials" in text
