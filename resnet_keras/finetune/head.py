"""A data-dependent start for the new head: a linear probe of the frozen features (LP-FT).

With few labelled images the head phase has few optimizer steps, and a
randomly initialized classifier on pooled ResNet features (all positive,
with a large common mean and small differences between classes) barely
moves in them; the backbone would then be unfrozen under a head that is
still guessing, whose large gradients distort the pretrained features.
Kumar et al. (2022, "Fine-Tuning can Distort Pretrained Features") show
that starting fine-tuning from a fitted linear probe ("LP-FT") avoids it.

So the head starts as multinomial logistic regression on the frozen
features of the (unaugmented) training images: features standardized,
full-batch Nesterov gradient descent to convergence (convex, so the result
depends on the data only), the L2 strength chosen on the validation
images (on the training images when there are none), then folded back into
the Dense layer's kernel and bias. At most `MAX_IMAGES` images are used.
"""

from __future__ import annotations

import numpy as np

STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1)  # L2 per feature, on standardized features
ITERATIONS = 500
MAX_IMAGES = 20_000


def _softmax_regression(z: np.ndarray, labels: np.ndarray, classes: int, l2: float):
    """(W, b) minimizing mean cross-entropy + l2/2 |W|^2 on standardized features `z`."""
    n, d = z.shape
    targets = np.eye(classes)[labels]
    # the gradient is Lipschitz with L <= ||Z||_2^2 / (2n) + l2 (softmax Hessian <= I/2)
    v = np.ones(d) / np.sqrt(d)
    for _ in range(30):
        v = z.T @ (z @ v)
        v /= np.linalg.norm(v)
    step = 1.0 / (float(v @ (z.T @ (z @ v))) / (2 * n) + 0.5 + l2)
    w, b = np.zeros((d, classes)), np.zeros(classes)
    w_prev, b_prev = w, b
    for t in range(1, ITERATIONS + 1):
        momentum = (t - 1) / (t + 2)
        yw, yb = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        logits = z @ yw + yb
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        error = (probs - targets) / n
        w_prev, b_prev = w, b
        w = yw - step * (z.T @ error + l2 * yw)
        b = yb - step * error.sum(axis=0)
    return w, b


def _loss(z, labels, w, b) -> float:
    logits = z @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(z)), labels].mean())


def linear_probe(features: np.ndarray, labels: np.ndarray, classes: int,
                 val_features: np.ndarray | None = None, val_labels: np.ndarray | None = None):
    """(kernel (d, classes), bias (classes,)) of the probe, for features as the model computes them."""
    f = np.asarray(features[:MAX_IMAGES], np.float64)
    labels = np.asarray(labels[:MAX_IMAGES])
    mean, scale = f.mean(axis=0), f.std(axis=0) + 1e-6
    z = (f - mean) / scale
    fits = {l2: _softmax_regression(z, labels, classes, l2) for l2 in STRENGTHS}
    if val_features is not None and len(val_features):
        zv = (np.asarray(val_features, np.float64) - mean) / scale
        l2 = min(fits, key=lambda s: _loss(zv, val_labels, *fits[s]))
    else:
        l2 = max(STRENGTHS[1], 1.0 / len(z))  # without validation: a middle strength
    w, b = fits[l2]
    kernel = w / scale[:, None]
    return kernel.astype(np.float32), (b - mean @ kernel).astype(np.float32)
