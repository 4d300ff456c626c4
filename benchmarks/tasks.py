"""One study per task beyond single-text classification, on a small model trained here for seconds (the tests'
builders): a pair classifier judged by MCC, a regressor by Spearman, a multi-label tagger by micro F1, a token
tagger by entity F1, an extractive question answerer by SQuAD F1 (its contexts longer than one window). For each:
fp32's score, the study's answer within the limit, and that answer exported and scored again through optimum's
ORTModelFor... class and transformers' pipeline for its task, beside the score the study recorded.

The models are tiny (2 layers, hidden size 32): their speedups say nothing about a real encoder's, only that each
task's study runs, is judged by its metric, and exports a model its users can load.

    python benchmarks/tasks.py [--trials 8] [--limit 0.01]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import (  # noqa: E402  (the tests' builders)
    TAGS,
    TOPICS,
    make_tiny_head,
    make_tiny_reader,
    make_tiny_tagger,
    pair_rows,
    question_rows,
    rating_rows,
    tagged_rows,
    topic_rows,
    write_table,
)
from pipelines import pipeline_score  # noqa: E402

# task, metric, the model's builder, the rows to study, the model's label names (a tagger's tags, a tagger's topics)
TASKS = [
    ("classification", "mcc", lambda f: make_tiny_head(f, pair_rows(240, seed=1), num_labels=2),
     lambda: pair_rows(400, seed=2), ()),
    ("regression", "spearman", lambda f: make_tiny_head(f, rating_rows(240, seed=1), num_labels=1,
                                                        problem_type="regression", steps=120),
     lambda: rating_rows(400, seed=2), ()),
    ("multi-label", "f1_micro", lambda f: make_tiny_head(
        f, topic_rows(300, seed=1), num_labels=3, problem_type="multi_label_classification", steps=120,
        id2label=dict(enumerate(TOPICS)), label2id={t: i for i, t in enumerate(TOPICS)}),
     lambda: topic_rows(400, seed=2), TOPICS),
    ("token-classification", "entity_f1", lambda f: make_tiny_tagger(f, tagged_rows(300, seed=1)),
     lambda: tagged_rows(400, seed=2), TAGS),
    ("question-answering", "squad_f1", lambda f: make_tiny_reader(f, question_rows(300, seed=1)),
     lambda: question_rows(400, seed=2, words=(20, 60)), ()),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--limit", type=float, default=0.01, help="the loss the answer may have (0.01: a point)")
    args = parser.parse_args()

    from opsearch.config import METRIC_TITLES, StudyConfig
    from opsearch.report import TRIAL_FILE, choose_trial, export_trial
    from opsearch.search import run_study
    from opsearch.source import load_study_data
    from opsearch.store import StudyRecord, trial_rows

    print("| task | metric | fp32 | answer within the limit (speedup, 95% CI) | its loss (pt, 95% CI) | "
          "its export in optimum's pipeline | recorded |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task, metric, build, rows, names in TASKS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            model, data = build(folder / "model"), write_table(folder / "data.csv", rows())
            config = StudyConfig(model=str(model), dataset=str(data), storage=f"sqlite:///{folder / 's.db'}",
                                 study_name=task, metric=metric, max_accuracy_loss=args.limit,
                                 modes=["dynamic", "static"], max_length=32, calibration_max_length=32,
                                 fit_size=100, timing_samples=100)
            study = run_study(config, n_trials=args.trials, progress=lambda line: None)
            number = choose_trial(study, max_accuracy_loss=args.limit)
            row = next(r for r in trial_rows(study) if r.trial == number)
            out = export_trial(study, number, folder / "export", storage=config.storage)
            recorded = json.loads((out / TRIAL_FILE).read_text())["metrics"][metric]
            evaluated = load_study_data(config, id2label=dict(enumerate(names)) or None, task=task).eval
            again = pipeline_score(task, out, evaluated, metric=metric,
                                   tags=names if task == "token-classification" else ())
            fp32 = study.user_attrs["baseline"]["metrics"][metric]
            recorded_machine = StudyRecord.of(study).machine
            machine = f"{recorded_machine['cpu']} ({', '.join(recorded_machine['int8_flags'])})"
            print(f"| {task} | {METRIC_TITLES[metric]} | {fp32:.4f} | trial {number} ({row.mode} {row.operators}): "
                  f"{row.speedup:.2f}x ({row.speedup_ci_low:.2f}-{row.speedup_ci_high:.2f}) | "
                  f"{row.accuracy_loss_pt:+.2f} ({row.loss_ci_low_pt:+.2f} to {row.loss_ci_high_pt:+.2f}) | "
                  f"{again:.4f} | {recorded:.4f} |", flush=True)
    print(f"CPU: {machine}")


if __name__ == "__main__":
    main()
