"""Classification metrics from predicted probabilities: one rule for the run, `evaluate` and the report."""

from __future__ import annotations

from typing import Sequence

import numpy as np

TOP_K = 5


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Top-1, top-5 (top-k for fewer classes), loss, per-class precision/recall, confusion matrix.

    `confusion[i][j]` counts images of class i predicted as class j.
    Precision of a class no image was predicted as is None (undefined).
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    count, classes = probs.shape
    predicted = probs.argmax(axis=1)
    k = min(TOP_K, classes)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    hits = np.diag(confusion)
    predicted_as, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    per_class = [
        dict(name=name, support=int(actual[i]),
             precision=float(hits[i] / predicted_as[i]) if predicted_as[i] else None,
             recall=float(hits[i] / actual[i]) if actual[i] else None)
        for i, name in enumerate(class_names)
    ]
    nll = -np.log(np.clip(probs[np.arange(count), labels], 1e-12, 1.0))
    return dict(
        images=int(count),
        top1=float(np.mean(predicted == labels)) if count else None,
        top5=float(np.mean((best == labels[:, None]).any(axis=1))) if count else None,
        top5_k=k,
        loss=float(nll.mean()) if count else None,
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def most_wrong(probs: np.ndarray, labels: np.ndarray, count: int) -> list[tuple[int, int, float]]:
    """(row, predicted class, its probability) of the `count` most confident mistakes."""
    probs = np.asarray(probs)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    return [(int(row), int(predicted[row]), float(probs[row, predicted[row]])) for row in order]


def better(candidate: dict, best: dict | None) -> bool:
    """Whether validation metrics `candidate` beat `best`: top-1 first, then lower loss."""
    if best is None:
        return True
    return (candidate["top1"], -candidate["loss"]) > (best["top1"], -best["loss"])
