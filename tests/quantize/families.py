"""Tiny sequence classifiers of six encoder families (2 layers, hidden 32, random weights), exported to ONNX and
fused at O2, for tests that read graphs: BERT, DistilBERT, RoBERTa, ALBERT, ELECTRA and MPNet (MiniLM is a BERT
graph)."""

from __future__ import annotations

from pathlib import Path

from conftest import VOCAB, make_tokenizer

FAMILIES = ("bert", "distilbert", "roberta", "albert", "electra", "mpnet")
LAYERS = 2


def tiny_family(family: str, folder: Path) -> Path:
    """A Hugging Face checkpoint of ``family`` with its tokenizer, saved in ``folder``."""
    import torch
    import transformers as T

    config, model = {
        "bert": (T.BertConfig, T.BertForSequenceClassification),
        "distilbert": (T.DistilBertConfig, T.DistilBertForSequenceClassification),
        "roberta": (T.RobertaConfig, T.RobertaForSequenceClassification),
        "albert": (T.AlbertConfig, T.AlbertForSequenceClassification),
        "electra": (T.ElectraConfig, T.ElectraForSequenceClassification),
        "mpnet": (T.MPNetConfig, T.MPNetForSequenceClassification),
    }[family]
    kw = dict(vocab_size=len(VOCAB) + 4, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
              intermediate_size=64, max_position_embeddings=70, num_labels=2)
    if family == "distilbert":
        kw = dict(vocab_size=len(VOCAB) + 4, dim=32, n_layers=LAYERS, n_heads=2, hidden_dim=64,
                  max_position_embeddings=70)
    if family in ("albert", "electra"):  # both project a smaller embedding into the hidden size
        kw["embedding_size"] = 16
    torch.manual_seed(0)
    model(config(**kw)).eval().save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def family_graphs(families, root: Path) -> dict[tuple[str, str], Path]:
    """Each family's exported graph ("none") and its O2 fusion, made under ``root``."""
    from opsearch.quantize import fused_model
    from opsearch.source import prepare_model

    out = {}
    for family in families:
        prepared = prepare_model(str(tiny_family(family, root / family)), cache_dir=root / f"{family}-cache")
        out[family, "none"] = prepared.onnx_path
        out[family, "O2"] = fused_model(prepared.onnx_path, "O2", cache_dir=root / f"{family}-cache")
    return out
