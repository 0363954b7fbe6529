"""Multi-label numbers on arrays: metrics, per-label decision thresholds and BCE positive weights.

>>> labels = np.array([[1, 0], [0, 1], [1, 1]])
>>> probs = np.array([[0.9, 0.2], [0.3, 0.8], [0.7, 0.4]])
>>> m = multilabel_metrics(labels, probs, ["anger", "joy"])
>>> m["subset_accuracy"], m["hamming_loss"]
(0.6666666666666666, 0.16666666666666666)

`labels` are multi-hot (n, k) arrays, `probs` sigmoid probabilities (n, k); a label is chosen exactly when its
probability reaches its threshold (0.5 unless tuned). Pure numpy/scikit-learn, no torch.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support, roc_auc_score

from llmclf.calibration import tune_threshold

_EPS = 1e-12
DEFAULT_THRESHOLD = 0.5


def sigmoid(logits) -> np.ndarray:
    """Elementwise logistic function in float64, stable for large |x|.

    >>> sigmoid([0.0, 800.0, -800.0]).tolist()
    [0.5, 1.0, 0.0]
    """
    z = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def binary_cross_entropy(labels, probs) -> float:
    """Mean BCE over every (example, label) cell, the loss BCEWithLogits reports (clipped: no inf)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def decide(probs, thresholds=DEFAULT_THRESHOLD) -> np.ndarray:
    """Multi-hot decisions (n, k) of int: probability >= the label's threshold."""
    return (np.asarray(probs, dtype=np.float64) >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)


def label_roc_auc(labels, scores) -> float | None:
    """ROC-AUC of one label's scores; None when the label has one class only (no AUC is defined)."""
    labels = np.asarray(labels)
    return float(roc_auc_score(labels, scores)) if np.unique(labels).size == 2 else None


def multilabel_metrics(labels, probs, label_names: list[str], thresholds=DEFAULT_THRESHOLD) -> dict:
    """Every multi-label number as plain Python types: subset accuracy (every label of a text right), Hamming
    loss (share of wrong cells), micro/macro/weighted precision, recall and F1 (``zero_division=0``), `roc_auc`
    (the mean of the per-label AUCs that are defined), `loss` (mean BCE) and `per_label`: precision, recall, F1,
    ROC-AUC (None when validation holds one class of it), support and threshold."""
    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or probs.shape != y.shape or y.shape[1] != len(label_names):
        raise ValueError(f"labels and probs must both have shape (n, {len(label_names)}); got {y.shape}, {probs.shape}")
    if y.shape[0] == 0:
        raise ValueError("no examples to score")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y.shape[1],))
    preds = decide(probs, thresholds)
    out: dict = {"n": int(y.shape[0]), "loss": binary_cross_entropy(y, probs),
                 "subset_accuracy": float(accuracy_score(y, preds)), "hamming_loss": float(hamming_loss(y, preds))}
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, preds, average=avg, zero_division=0)
        out |= {f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)}
    aucs = [label_roc_auc(y[:, j], probs[:, j]) for j in range(y.shape[1])]
    defined = [a for a in aucs if a is not None]
    out["roc_auc"] = float(np.mean(defined)) if defined else None
    p, r, f, s = precision_recall_fscore_support(y, preds, average=None, zero_division=0)
    out["per_label"] = {name: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "roc_auc": aucs[j],
                               "support": int(s[j]), "threshold": float(thresholds[j])}
                        for j, name in enumerate(label_names)}
    out["label_names"] = list(label_names)
    return out


def tune_thresholds(labels, probs) -> np.ndarray:
    """One threshold per label, each maximising that label's F1 on the tuning data over the midpoints between
    its distinct probabilities (ties: nearest 0.5); 0.5 for a label without positives there, where F1 says
    nothing.

    >>> tune_thresholds([[1, 0], [0, 0], [1, 0]], [[0.4, 0.2], [0.1, 0.9], [0.3, 0.6]]).tolist()
    [0.2, 0.5]
    """
    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    return np.array([tune_threshold(y[:, j], probs[:, j], "f1").threshold if y[:, j].any() else DEFAULT_THRESHOLD
                     for j in range(y.shape[1])])


def balanced_pos_weight(labels) -> list[float]:
    """BCE's pos_weight for `--class-weights balanced`: negatives / positives of each label in the training
    labels, so each label's positives weigh as much in the loss as its negatives; 1.0 for a label with no
    positives or no negatives there (nothing to balance).

    >>> balanced_pos_weight([[1, 0], [0, 0], [0, 1], [0, 1]])
    [3.0, 1.0]
    """
    y = np.asarray(labels, dtype=np.float64)
    positives = y.sum(axis=0)
    negatives = y.shape[0] - positives
    return [float(n / p) if p > 0 and n > 0 else 1.0 for p, n in zip(positives, negatives)]
