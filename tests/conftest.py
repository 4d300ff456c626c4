"""Shared fixtures: a tiny BERT classifier and encoder built here (seconds), tiny labelled data,
and the paths of the project's shared assets (the MiniLM SST-2 model) for integration tests."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

# The project's shared assets sit beside the checkout (../shared); OPSEARCH_SHARED points elsewhere.
SHARED = Path(os.environ.get("OPSEARCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MINILM_SST2 = SHARED / "models" / "minilm-l6-sst2"
SST2 = SHARED / "data" / "sst2"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "brilliant", "warm"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "sad", "terrible", "cold"]
FILLER = ["the", "film", "was", "a", "movie", "plot", "very", "and", "story", "it", "is", "really"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]


def make_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_tiny_bert(folder: Path, *, classifier: bool = True, seed: int = 0, trained: bool = True) -> Path:
    """A 2-layer BERT (hidden 32), saved as a Hugging Face checkpoint. A classifier is ``trained`` for a few
    seconds on the synthetic sentiment rows (it then scores far above chance, as a real fp32 model must);
    an encoder keeps its random weights (the study's probe reads its embeddings)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = (BertForSequenceClassification if classifier else BertModel)(config).eval()
    tokenizer = make_tokenizer(folder)
    if classifier and trained:
        _train(model, tokenizer, sentiment_rows(240, seed=seed + 1))
    model.save_pretrained(folder)
    return folder


def make_tiny_head(folder: Path, rows: list[dict], *, num_labels: int, seed: int = 0, steps: int = 80,
                   **config) -> Path:
    """A 2-layer BERT with a head of ``num_labels`` outputs (``config``: e.g. problem_type), trained for seconds on
    ``rows`` (their "sentence", optional "sentence2", and "label") and saved as a checkpoint."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=num_labels, **config)).eval()
    tokenizer = make_tokenizer(folder)
    _train(model, tokenizer, rows, steps=steps)
    model.save_pretrained(folder)
    return folder


def _train(model, tokenizer, rows: list[dict], *, steps: int = 60) -> None:
    import torch

    pairs = [r["sentence2"] for r in rows] if "sentence2" in rows[0] else None  # given as text_pair
    batch = tokenizer([r.get("sentence", r.get("sentence1")) for r in rows], pairs, padding=True,
                      return_tensors="pt")
    if "labels" in rows[0]:  # multi-label: a comma list of topics, as multi-hot floats
        labels = torch.tensor([[float(t in r["labels"].split(",")) for t in TOPICS] for r in rows])
    else:
        labels = torch.tensor([r["label"] for r in rows])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def sentiment_rows(n: int, *, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


def pair_rows(n: int, *, seed: int = 0) -> list[dict]:
    """Sentence pairs whose label is the second text's sentiment: a model that never reads the pair is at chance."""
    return [{"sentence1": a["sentence"], "sentence2": b["sentence"], "label": b["label"]}
            for a, b in zip(sentiment_rows(n, seed=seed), sentiment_rows(n, seed=seed + 100)[::-1], strict=True)]


def rating_rows(n: int, *, seed: int = 0) -> list[dict]:
    """Texts rated by how many of their three sentiment words are positive (0 to 3, a little noise)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.randint(0, 3)
        words = ([rng.choice(POSITIVE) for _ in range(positive)] + [rng.choice(NEGATIVE) for _ in range(3 - positive)]
                 + rng.sample(FILLER, 2))
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "label": round(positive + rng.uniform(-0.3, 0.3), 2)})
    return rows


TOPICS = ("positive", "negative", "film")  # a multi-label row's labels: which of these it mentions


def topic_rows(n: int, *, seed: int = 0) -> list[dict]:
    """Texts tagged with every topic they mention (a positive word, a negative word, the word film): zero to three
    labels per row, written as a comma list ("positive,film"; "" for none)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample([w for w in FILLER if w != "film"], 3)
        tags = [t for t in TOPICS if rng.random() < 0.5]
        words += [rng.choice(POSITIVE)] * ("positive" in tags) + [rng.choice(NEGATIVE)] * ("negative" in tags)
        words += ["film"] * ("film" in tags)
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "labels": ",".join(tags)})
    return rows


def write_table(path: Path, rows: list[dict], *, delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_encoder_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-encoder"), classifier=False)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    """The tiny classifier exported once for the whole session (a PreparedModel)."""
    from opsearch.source import prepare_model

    return prepare_model(str(tiny_checkpoint), cache_dir=tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("data") / "tiny.csv", sentiment_rows(240))


def fast_settings(**extra) -> dict:
    """Study settings that keep a tiny study to seconds. Trials run in this process (a child costs seconds to
    start); the tests of crash isolation, workers and the CLI use the default, a child process."""
    return {"isolation": "none", "fit_size": 60, "calibration_samples": 8, "calibration_max_length": 16,
            "probe_samples": 60,
            "timing_samples": 10, "rounds": 3, "max_rounds": 4, "warmup_rounds": 1, "max_length": 32,
            "intra_op_threads": 1, "fusions": ["none"], "predict": False, **extra}


def settings_argv(settings: dict) -> list[str]:
    """Study settings as `opsearch run` flags, each the flag its declaration makes (a true-by-default switch such
    as ``predict`` as --no-predict when off)."""
    from opsearch.config import StudyConfig, flag_of, settings_of

    declared = settings_of(StudyConfig)
    argv: list[str] = []
    for name, value in settings.items():
        flag = flag_of(name, declared[name][1])
        if isinstance(value, bool):
            argv += [flag] if value != declared[name][1].negate else []
        else:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def needs_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (the project's shared assets)")
