"""opsearch.measure._embedding: pooling, cosine, and the frozen linear probe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from opsearch.measure import LinearProbe, embed, mean_cosine, pool


@pytest.fixture
def hidden_and_mask() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int64)
    hidden[mask == 0] = 1e4  # padding states that would dominate any pooling that looked at them
    return hidden, mask


def test_mean_pooling_ignores_padding(hidden_and_mask: tuple[np.ndarray, np.ndarray]) -> None:
    hidden, mask = hidden_and_mask
    pooled = pool(hidden, mask, "mean")
    assert pooled.shape == (3, 4)
    for row in range(3):
        tokens = [hidden[row, t] for t in range(5) if mask[row, t]]
        by_hand = sum(tokens) / len(tokens)
        np.testing.assert_allclose(pooled[row], by_hand, rtol=1e-5)


def test_mean_pooling_by_hand_on_tiny_numbers() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 6.0], [100.0, -100.0]]])
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[2.0, 4.0]])


def test_max_pooling_ignores_padding(hidden_and_mask: tuple[np.ndarray, np.ndarray]) -> None:
    hidden, mask = hidden_and_mask
    pooled = pool(hidden, mask, "max")
    for row in range(3):
        real = hidden[row, mask[row] == 1]
        np.testing.assert_allclose(pooled[row], real.max(axis=0))
    assert np.all(pooled < 1e4)


def test_cls_pooling_takes_the_first_token(hidden_and_mask: tuple[np.ndarray, np.ndarray]) -> None:
    hidden, mask = hidden_and_mask
    np.testing.assert_array_equal(pool(hidden, mask, "cls"), hidden[:, 0])


class FakeInput:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeSession:
    """Returns a fixed hidden state per call, and records which inputs it was fed."""

    def __init__(self, states: list[np.ndarray]) -> None:
        self.states = list(states)
        self.fed: list[set[str]] = []

    def get_inputs(self) -> list[FakeInput]:
        return [FakeInput("input_ids"), FakeInput("attention_mask")]

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert outputs == ["last_hidden_state"]
        self.fed.append(set(feed))
        return [self.states.pop(0)]


@pytest.mark.parametrize("normalize", [False, True])
def test_embed_pools_each_feed(normalize: bool) -> None:
    states = [np.array([[[3.0, 0.0], [1.0, 4.0]]]), np.array([[[0.0, 2.0], [9.0, 9.0]]])]
    feeds = [
        {
            "input_ids": np.zeros((1, 2), np.int64),
            "attention_mask": np.array([[1, 1]]),
            "token_type_ids": np.zeros((1, 2), np.int64),
        },
        {
            "input_ids": np.zeros((1, 2), np.int64),
            "attention_mask": np.array([[1, 0]]),
            "token_type_ids": np.zeros((1, 2), np.int64),
        },
    ]
    session = FakeSession(states)
    out = embed(session, feeds, pooling="mean", normalize=normalize)
    expected = np.array([[2.0, 2.0], [0.0, 2.0]])
    if normalize:
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected)
    assert session.fed == [{"input_ids", "attention_mask"}] * 2  # inputs the model lacks are not fed


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], 1.0),
        ([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], [[2.0, 4.0, 6.0], [-0.1, 0.05, 0.0]], 1.0),  # length does not count
        ([[1.0, 0.0], [0.0, 3.0]], [[0.0, 5.0], [2.0, 0.0]], 0.0),
        ([[1.0, 1.0]], [[-1.0, -1.0]], -1.0),
        ([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], 0.5),  # the mean of 1 and 0
    ],
)
def test_mean_cosine(a: list, b: list, expected: float) -> None:
    assert mean_cosine(np.asarray(a), np.asarray(b)) == pytest.approx(expected)


def separable(classes: tuple, n_per_class: int, *, seed: int, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[: len(classes)] * 6.0
    x = np.concatenate([rng.normal(centers[i], 0.5, size=(n_per_class, dim)) for i in range(len(classes))])
    y = np.repeat(np.asarray(classes), n_per_class)
    order = rng.permutation(len(y))
    return x[order], y[order]


CLASS_SETS = [
    pytest.param((0, 1), id="binary"),
    pytest.param((3, 7), id="binary-odd-ids"),
    pytest.param((0, 1, 2), id="3-class"),
    pytest.param(("neg", "neu", "pos"), id="3-class-names"),
]


@pytest.mark.parametrize("classes", CLASS_SETS)
def test_probe_learns_separable_data(classes: tuple) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = separable(classes, 40, seed=0)
    probe = LinearProbe.fit(x, y, seed=0)
    assert probe.n_fit == len(y)
    assert probe.fit_accuracy >= 0.98
    assert list(probe.classes) == sorted(classes)

    x_new, y_new = separable(classes, 50, seed=1)
    predictions = probe.predict(x_new)
    assert np.mean(predictions == y_new) >= 0.95
    # Same decisions as the scikit-learn model it froze.
    reference = LogisticRegression(max_iter=2000, C=1.0, random_state=0).fit(x, y)
    np.testing.assert_array_equal(predictions, reference.predict(x_new))


@pytest.mark.parametrize("classes", CLASS_SETS)
def test_probe_round_trips_through_json(classes: tuple) -> None:
    x, y = separable(classes, 30, seed=2)
    probe = LinearProbe.fit(x, y)
    restored = LinearProbe.from_dict(json.loads(json.dumps(probe.to_dict())))

    x_new, _ = separable(classes, 40, seed=3)
    x_new = np.concatenate([x_new, np.random.default_rng(4).normal(0, 3, size=(40, x_new.shape[1]))])
    np.testing.assert_array_equal(restored.predict(x_new), probe.predict(x_new))
    np.testing.assert_array_equal(restored.coef, probe.coef)
    np.testing.assert_array_equal(restored.intercept, probe.intercept)
    assert (restored.fit_accuracy, restored.n_fit) == (probe.fit_accuracy, probe.n_fit)
