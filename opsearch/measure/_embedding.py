"""Sentence-embedding models as classifiers: pooled encoder output scored by a frozen linear probe.

The probe is fitted once, on fp32 embeddings of the fit split, and stored with the study; every quantized
model's embeddings go through that same probe, so its accuracy is a labelled accuracy (as MTEB judges
encoders), and the loss against fp32 is the damage quantization did to the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opsearch.measure._sessions import Feed, input_names


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """(batch, tokens, dim) token states -> (batch, dim) sentence vectors, padding ignored."""
    mask = mask[..., None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return np.where(mask > 0, hidden, -np.inf).max(axis=1)
    return (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)


def embed(session, feeds: list[Feed], *, pooling: str, normalize: bool) -> np.ndarray:
    names = input_names(session)
    vectors = []
    for feed in feeds:
        hidden = session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]
        vectors.append(pool(hidden, feed["attention_mask"], pooling))  # a batch's rows, padding ignored
    out = np.concatenate(vectors).astype(np.float64)
    if normalize:
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the cosine similarity between matching rows of a and b."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.clip(den, 1e-12, None)))


@dataclass(frozen=True)
class LinearProbe:
    """A logistic-regression probe frozen as plain arrays, so it serializes into the study as JSON."""

    coef: np.ndarray  # (n_classes or 1, dim)
    intercept: np.ndarray
    classes: np.ndarray
    fit_accuracy: float
    n_fit: int

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
        model.fit(x, y)
        return cls(model.coef_.copy(), model.intercept_.copy(), model.classes_.copy(),
                   float(model.score(x, y)), len(y))

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = x @ self.coef.T + self.intercept
        if scores.shape[1] == 1:
            return self.classes[(scores[:, 0] > 0).astype(int)]
        return self.classes[np.argmax(scores, axis=1)]

    def to_dict(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                "classes": self.classes.tolist(), "fit_accuracy": self.fit_accuracy, "n_fit": self.n_fit}

    @classmethod
    def from_dict(cls, data: dict) -> LinearProbe:
        return cls(np.asarray(data["coef"], dtype=np.float64), np.asarray(data["intercept"], dtype=np.float64),
                   np.asarray(data["classes"]), float(data["fit_accuracy"]), int(data["n_fit"]))
