"""A full disk stops the study with a message naming the path and the space needed; the study stays intact and
resumes once space is freed. The small filesystem is a tmpfs the test mounts (root only; skipped elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import fast_settings, settings_argv

from opsearch.errors import DiskFull
from opsearch.quantize import QuantRecipe, quantize
from opsearch.store import StudyRecord, load_existing


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): the disk-full tests need root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Write until the filesystem is full; the filler file is returned so the test can free the space again."""
    filler = mount / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_quantizing_onto_a_full_disk_names_the_path_and_the_space_needed(small_disk, tiny_onnx) -> None:
    filler = _fill(small_disk)
    out = small_disk / "trials" / "trial-0"
    with pytest.raises(DiskFull) as info:
        quantize(QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",)), fp32_path=tiny_onnx.onnx_path,
                 out_dir=out)
    message = info.value.reason
    assert str(out) in message and "MB free" in message and "it needs about" in message
    assert not out.exists()  # nothing half-written
    filler.unlink()
    assert quantize(QuantRecipe(mode="dynamic", operators_to_quantize=("MatMul",)), fp32_path=tiny_onnx.onnx_path,
                    out_dir=out).path.is_file()


def test_a_disk_that_fills_during_the_export_stops_the_study_and_resume_goes_on(small_disk, tiny_checkpoint,
                                                                              tiny_csv) -> None:
    storage = f"sqlite:///{small_disk / 'study.db'}"
    cache = small_disk / "full.cache"
    settings = {**fast_settings(isolation="none", modes=["dynamic"]), "trials": 1}
    argv = [sys.executable, "-m", "opsearch.cli", "run", "--model", str(tiny_checkpoint), "--dataset", str(tiny_csv),
            "--storage", storage, "--study-name", "full", "--no-remeasure", "--quiet", *settings_argv(settings)]
    env = {**os.environ, "OPSEARCH_LOCK_DIR": str(small_disk.parent)}
    run = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)

    filled: list[Path] = []

    def fill_when_the_export_starts() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if cache.is_dir() and any(p.name.startswith(".export-") for p in cache.iterdir()):
                filled.append(_fill(small_disk))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=fill_when_the_export_starts)
    watcher.start()
    _, err = run.communicate(timeout=300)
    watcher.join()
    assert filled, "the export never started"
    assert run.returncode == 2, err
    assert "Traceback" not in err
    assert f"no space left on the disk that holds {str(cache / 'fp32')!r}" in err and "it needs about" in err
    assert "continue with `opsearch resume --storage" in err
    assert not (cache / "fp32").exists()  # no half-written export to reuse

    filled[0].unlink()  # space freed: the study goes on from where it stopped
    resume = subprocess.run([sys.executable, "-m", "opsearch.cli", "resume", "--storage", storage, "--study-name",
                             "full", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert resume.returncode == 0, resume.stderr
    study = load_existing(storage, "full")
    assert StudyRecord.of(study).complete
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 1


@pytest.mark.parametrize("entry", ["worker", "resume"])
def test_a_storage_write_onto_a_full_disk_names_the_disk_in_every_entry_point(small_disk, tiny_checkpoint, tiny_csv,
                                                                              entry: str) -> None:
    from opsearch.config import StudyConfig
    from opsearch.search import resume_study, run_study, run_worker

    storage = f"sqlite:///{small_disk / 'study.db'}"
    config = StudyConfig(model=str(tiny_checkpoint), dataset=str(tiny_csv), storage=storage, study_name="full",
                         trials=3, **fast_settings(modes=["dynamic"], remeasure_front=False))
    run_study(config, n_trials=0, progress=lambda line: None)  # the baseline only: nothing to quantize yet
    # The first write of a trial is the storage's own (Optuna creates the trial): SQLite's "database or disk is
    # full", which every entry point must name as run does.
    filler = _fill(small_disk)
    start = run_worker if entry == "worker" else resume_study
    with pytest.raises(DiskFull) as info:
        start(storage=storage, study_name="full", n_trials=1, progress=lambda line: None)
    assert f"no space left on the disk that holds {str(small_disk / 'study.db')!r}" in info.value.reason
    filler.unlink()
    study = start(storage=storage, study_name="full", n_trials=1, progress=lambda line: None)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 1
