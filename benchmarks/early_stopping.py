"""What does early stopping save, and does it change the answer?

Runs one study twice on this machine with the same seed, one after the other, as a user runs it: first
`opsearch run --no-early-stop`, then with early stopping. With ``--pairing trials`` (the default) the second run
measures exactly the first run's configurations, in the same order (its study is made with `opsearch run
--trials 0`, the first run's sampled configurations are queued after its presets, and `opsearch resume` runs
them): a sampler follows what it measures, and timing noise alone can send two runs of one seed down different
paths (on the default study two runs diverged at the first sampled trial, because a preset timed 1.88x in one and
1.75x in the other), so only the same configurations compare early stopping's effect. ``--pairing seed`` lets
each run's sampler choose.

For each run it prints the wall time, the trials, the seconds per trial, the seconds the sampled trials (those
after the presets) took, what early stopping cut short, and the final front with its tie groups; then whether
the two fronts hold the same configurations, and the ratio of the sampled trials' time (target: at most 0.5,
the same front).

    python benchmarks/early_stopping.py                            # the default study (12 trials)
    python benchmarks/early_stopping.py studies/minilm-sst2.toml  # MiniLM SST-2, 40 trials, a 1-point limit

Not a test: the default study takes about 20 minutes for both runs on 2 cores, MiniLM SST-2 about 40. The
studies and their progress logs go to --out (a temporary folder by default), named after the study and the mode.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

MODES = {"--no-early-stop": ["--no-early-stop"], "early stopping": []}


def run(command: list[str], log: Path) -> float:
    """Seconds an opsearch command took; its progress lines go to ``log``."""
    started = time.perf_counter()
    with log.open("a") as lines:
        subprocess.run([sys.executable, "-m", "opsearch.cli", *command], check=True, stdout=lines,
                       stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def sampled_configurations(storage: str, name: str) -> list[dict]:
    """The configurations a study's sampler chose (its presets and repeated draws left out), in order."""
    from opsearch.store import TrialRecord

    study = optuna.load_study(study_name=name, storage=storage)
    return [t.params for t in study.trials if t.params and not TrialRecord.of(t).preset
            and TrialRecord.of(t).repeat_of is None and t.state != optuna.trial.TrialState.WAITING]


def run_pair_member(study_file: str | None, storage: str, name: str, extra: list[str], log: Path,
                    queue: list[dict] | None, *, settings: list[str] = ()) -> float:
    """One run of the study; with ``queue``, the configurations it measures after its presets. ``extra``: flags
    for run and resume (runtime settings); ``settings``: flags for run alone (the study's identity)."""
    head = ["run", *([study_file] if study_file else []), "--storage", storage, "--study-name", name, *settings,
            *extra]
    if queue is None:
        return run(head, log)
    wall = run([*head, "--trials", "0"], log)  # the study, its baseline and its presets' queue
    study = optuna.load_study(study_name=name, storage=storage)
    for params in queue:
        study.enqueue_trial(params)
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    return wall + run(["resume", "--storage", storage, "--study-name", name, "--trials", str(waiting), *extra], log)


def summary(storage: str, name: str, wall: float) -> dict:
    from opsearch.report import build_report
    from opsearch.store import StudyRecord, TrialRecord

    study = optuna.load_study(study_name=name, storage=storage)
    record = StudyRecord.of(study)
    limit = record.config(name).accuracy_limit(record.baseline_accuracy)
    report = build_report(study, max_accuracy_loss=limit)
    finished = [t for t in study.trials if t.datetime_complete and TrialRecord.of(t).repeat_of is None]
    seconds = {t.number: (t.datetime_complete - t.datetime_start).total_seconds() for t in finished}
    sampled = [n for n in seconds if not TrialRecord.of(study.trials[n]).preset]
    groups: list[list[str]] = []
    for row in report.front:
        label = TrialRecord.of(study.trials[row.trial]).label
        if row.tie_group is not None and groups and groups[-1][0] == f"tie {row.tie_group}":
            groups[-1].append(label)
        else:
            groups.append([f"tie {row.tie_group}", label] if row.tie_group is not None else [label])
    return {"wall": wall, "counts": report.counts, "per_trial": sum(seconds.values()) / max(1, len(seconds)),
            "sampled_s": sum(seconds[n] for n in sampled), "sampled": len(sampled), "cost": report.cost,
            "front": {TrialRecord.of(study.trials[r.trial]).label: (r.trial, r.speedup, r.accuracy_loss_pt)
                      for r in report.front}, "groups": groups, "machine": record.machine}


def show(mode: str, s: dict) -> None:
    cost = s["cost"]
    print(f"\n{mode}: wall {s['wall']:.0f} s; trials {s['counts']}; {s['per_trial']:.1f} s per trial; the "
          f"{s['sampled']} sampled trials {s['sampled_s']:.0f} s")
    print(f"  evaluating {cost.evaluate_s:.0f} s, timing {cost.timing_s:.0f} s; stopped early: "
          f"{len(cost.stopped_evaluations)} evaluations, {len(cost.raced)} timings")
    for t in cost.stopped_evaluations + cost.raced:
        print(f"    trial {t.trial}: {t.stopped_early}")
    print("  front (fastest first; a tie group's members on one line):")
    for group in s["groups"]:
        tie = group[0] if group[0].startswith("tie ") else ""
        for label in group[1:] if tie else group:
            trial, speedup, loss = s["front"][label]
            print(f"    {tie:>6} trial {trial:>2} {speedup:.2f}x {loss:+.2f} pt  {label}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", help="a study file (default: the default study)")
    parser.add_argument("--out", help="where the two studies are stored (default: a temporary folder)")
    parser.add_argument("--pairing", choices=("trials", "seed"), default="trials",
                        help="trials: the second run measures the first run's configurations (default); seed: each "
                             "run's sampler chooses, from the same seed")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out or tempfile.mkdtemp(prefix="opsearch-early-stop-"))
    out.mkdir(parents=True, exist_ok=True)
    base = Path(args.study).stem if args.study else "default"
    results, queue = {}, None
    for mode, extra in MODES.items():
        name = f"{base}-{'off' if extra else 'on'}"
        storage = f"sqlite:///{out / name}.db"
        print(f"running {name} ({mode}) ...", flush=True)
        wall = run_pair_member(args.study, storage, name, extra, out / f"{name}.log", queue)
        results[mode] = summary(storage, name, wall)
        if args.pairing == "trials":
            queue = sampled_configurations(storage, name)
    machine = results["early stopping"]["machine"]
    print(f"\nCPU: {machine.get('cpu', '?')} ({', '.join(machine.get('int8_flags', []))}), "
          f"{machine.get('physical_cores', '?')} cores")
    for mode, s in results.items():
        show(mode, s)
    on, off = results["early stopping"], results["--no-early-stop"]
    same = set(on["front"]) == set(off["front"])
    print(f"\nsame front configurations: {'yes' if same else 'no'}"
          + ("" if same else f" (only with early stopping: {sorted(set(on['front']) - set(off['front']))}; "
                             f"only without: {sorted(set(off['front']) - set(on['front']))})"))
    print(f"same tie groups: {'yes' if on['groups'] == off['groups'] else 'no'}")
    print(f"sampled trials' time with / without early stopping: {on['sampled_s']:.0f} s / {off['sampled_s']:.0f} s "
          f"= {on['sampled_s'] / off['sampled_s']:.2f} (target <= 0.5); wall {on['wall']:.0f} s / {off['wall']:.0f} s "
          f"= {on['wall'] / off['wall']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
