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


def make_tokenizer(folder: Path, vocab: list[str] = VOCAB):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
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


# A tagger's and a question answerer's words: the sentiment words, some with a sub-token ("greats": great ##s).
SPAN_VOCAB = [*VOCAB, "##s"]
TAGS = ("O", "B-POS", "I-POS", "B-NEG", "I-NEG")


def _word(rng: random.Random, words: list[str]) -> str:
    word = rng.choice(words)
    return word + "s" if rng.random() < 0.3 else word  # two tokens: the tag is read at the first


def tagged_rows(n: int, *, seed: int = 0) -> list[dict]:
    """Sentences whose sentiment words are entities: POS or NEG, one or two words long (the second I-), among
    filler words; words and tags as space-separated text, as a flat file holds them."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 6)):
            if rng.random() < 0.4 and (not tags or tags[-1] == "O"):  # entities apart: B- then I- is one
                kind, pool = rng.choice([("POS", POSITIVE), ("NEG", NEGATIVE)])
                length = rng.choice([1, 1, 2])
                words += [_word(rng, pool) for _ in range(length)]
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        rows.append({"tokens": " ".join(words), "ner_tags": " ".join(tags)})
    return rows


def question_rows(n: int, *, seed: int = 0, words: tuple[int, int] = (6, 20)) -> list[dict]:
    """The question "good" or "bad" asked of a context of filler words holding one word of that kind: the answer is
    that word (SQuAD's columns: question, context, answers as JSON)."""
    import json

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        context = [rng.choice(FILLER) for _ in range(rng.randint(*words))]
        question = rng.choice(["good", "bad"])
        answer = _word(rng, POSITIVE if question == "good" else NEGATIVE)
        context.insert(rng.randint(0, len(context)), answer)
        text = " ".join(context)
        start = len(" ".join(context[:context.index(answer)])) + (1 if context.index(answer) else 0)
        rows.append({"question": question, "context": text,
                     "answers": json.dumps({"text": [answer], "answer_start": [start]})})
    return rows


def make_tiny_tagger(folder: Path, rows: list[dict], *, seed: int = 0, steps: int = 120) -> Path:
    """A 2-layer BERT token classifier over TAGS, trained for seconds on ``rows`` (labels at each word's first
    token, -100 elsewhere, as transformers' examples align them)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    model = BertForTokenClassification(BertConfig(
        vocab_size=len(SPAN_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)),
        label2id={t: i for i, t in enumerate(TAGS)})).eval()
    tokenizer = make_tokenizer(folder, SPAN_VOCAB)
    batch = tokenizer([r["tokens"].split() for r in rows], is_split_into_words=True, padding=True,
                      return_tensors="pt")
    labels = torch.full(batch["input_ids"].shape, -100)
    for i, row in enumerate(rows):
        tags, seen = row["ner_tags"].split(), set()
        for position, word in enumerate(batch.word_ids(i)):
            if word is not None and word not in seen:
                seen.add(word)
                labels[i, position] = TAGS.index(tags[word])
    _fit(model, batch, {"labels": labels}, steps)
    model.save_pretrained(folder)
    return folder


def make_tiny_reader(folder: Path, rows: list[dict], *, seed: int = 0, steps: int = 60) -> Path:
    """A 2-layer BERT extractive question answerer, trained for seconds on ``rows`` (question_rows)."""
    import json

    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    model = BertForQuestionAnswering(BertConfig(
        vocab_size=len(SPAN_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64)).eval()
    tokenizer = make_tokenizer(folder, SPAN_VOCAB)
    batch = tokenizer([r["question"] for r in rows], [r["context"] for r in rows], padding=True,
                      return_offsets_mapping=True, return_tensors="pt")
    offsets = batch.pop("offset_mapping")
    starts, ends = [], []
    for i, row in enumerate(rows):
        answer = json.loads(row["answers"])
        a = answer["answer_start"][0]
        b = a + len(answer["text"][0])
        context = [p for p, s in enumerate(batch.sequence_ids(i)) if s == 1]
        starts.append(next(p for p in context if offsets[i, p, 0] == a))
        ends.append(next(p for p in context if offsets[i, p, 1] == b))
    _fit(model, batch, {"start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}, steps)
    model.save_pretrained(folder)
    return folder


def _fit(model, batch, targets: dict, steps: int) -> None:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, **targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


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
def family_graphs(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Tiny classifiers of six encoder families, each exported and fused at O2, made once for the session: the
    graph-reading tests of tests/quantize share them (``tests/quantize/families.py``, on their import path)."""
    from families import FAMILIES
    from families import family_graphs as make

    return make(FAMILIES, tmp_path_factory.mktemp("families"))


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
