"""An exported model scored as its users score it: loaded in optimum's ORTModelFor... class for its task and run
through transformers' pipeline for that task, with the metric computed from the pipeline's answers (what the tests
and benchmarks/tasks.py hold equal to the score the study recorded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pipeline_score(task: str, folder: Path, rows, *, metric: str, tags: tuple[str, ...] = (),
                   max_length: int = 32) -> float:
    """``metric`` of the model in ``folder`` on ``rows`` (a study's LabelledTexts), through optimum's pipeline."""
    import optimum.onnxruntime
    from transformers import AutoTokenizer, pipeline

    from opsearch.measure import metric_for, squad_scores
    from opsearch.source import ort_model_name, question_stride

    model = getattr(optimum.onnxruntime, ort_model_name(task)).from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if task == "question-answering":
        read = pipeline("question-answering", model=model, tokenizer=tokenizer)
        scores = np.array([squad_scores(read(question=q.question, context=q.context, max_seq_len=max_length,
                                             doc_stride=question_stride(max_length), max_answer_len=30,
                                             align_to_words=False)["answer"], answers)
                           for q, answers in zip(rows.texts, rows.answers, strict=True)])
        return float(scores[:, 0 if metric == "exact_match" else 1].mean())
    if task == "token-classification":
        return _entity_f1(pipeline("token-classification", model=model, tokenizer=tokenizer,
                                   aggregation_strategy="first"), rows, tags)
    if task == "regression":
        rate = pipeline("text-classification", model=model, tokenizer=tokenizer, function_to_apply="none")
        predicted = np.array([rate(text)[0]["score"] for text in rows.texts])
    elif task == "multi-label":
        tag = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                       function_to_apply="sigmoid")
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        scores = [{s["label"]: s["score"] for s in tag([text])[0]} for text in rows.texts]
        predicted = np.array([[row[name] > 0.5 for name in names] for row in scores]).astype(np.int64)
    else:
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
        label2id = {name: i for i, name in model.config.id2label.items()}
        predicted = np.array([label2id[classify({"text": t[0], "text_pair": t[1]} if isinstance(t, tuple) else t)
                                       ["label"]] for t in rows.texts])
    return metric_for(metric, task).score(predicted, rows.labels)


def _entity_f1(tag, rows, tags: tuple[str, ...]) -> float:
    """Entity F1 of the pipeline's entity groups against the rows' tags, both as character spans of the words
    joined by spaces (the text the pipeline reads)."""
    from seqeval.metrics.sequence_labeling import get_entities

    found = true = right = 0
    for words, row in zip(rows.texts, rows.labels, strict=True):
        starts = np.cumsum([0] + [len(w) + 1 for w in words])
        gold = {(kind, int(starts[a]), int(starts[b] + len(words[b])))
                for kind, a, b in get_entities([tags[t] for t in row[:len(words)]])}
        guessed = {(e["entity_group"], e["start"], e["end"]) for e in tag(" ".join(words))}
        found, true, right = found + len(guessed), true + len(gold), right + len(guessed & gold)
    return 2 * right / (found + true) if found + true else 0.0
