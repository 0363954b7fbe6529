"""Classification metrics on numpy arrays: pure functions, JSON-ready output, no torch.

>>> m = compute_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), {0: "neg", 1: "pos"})
>>> m["accuracy"], m["roc_auc"]
(1.0, 1.0)
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (average_precision_score, balanced_accuracy_score, confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score)

_EPS = 1e-12
# Each split's metrics hold the keys of their problem type only (multi-label: f1_micro...; regression: mae...).
SUMMARY_KEYS = ("loss", "accuracy", "f1_micro", "f1_macro", "roc_auc", "mae", "rmse", "r2")


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64; subtracting the row max keeps exp() from overflowing.

    >>> softmax([[0.0, 0.0]]).tolist()
    [[0.5, 0.5]]
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_inputs(labels, probs, id2label: dict[int, str]) -> tuple[np.ndarray, np.ndarray, int]:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(id2label)
    if k < 2:
        raise ValueError(f"need at least 2 labels, got id2label={id2label!r}")
    if probs.ndim != 2 or probs.shape != (labels.shape[0], k):
        raise ValueError(f"probs must have shape ({labels.shape[0]}, {k}); got {probs.shape}")
    if labels.size == 0:
        raise ValueError("no examples to score")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1}; got {sorted(set(labels.tolist()))}")
    return labels, probs, k


def cross_entropy(labels, probs) -> float:
    """Mean negative log-probability of the true class; clipping keeps a zero from giving inf.

    >>> round(cross_entropy(np.array([0]), np.array([[0.5, 0.5]])), 4)
    0.6931
    """
    p_true = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0))))


def roc_auc(labels, probs) -> float | None:
    """ROC-AUC from probabilities (never hard labels, which would throw away the ranking).

    Binary: AUC of the class-1 probability. k>2: one-vs-rest macro average. When a class is absent
    from ``labels`` its one-vs-rest AUC is undefined, so the macro is taken over the present classes
    only. None when fewer than 2 distinct classes occur, since no AUC is defined then.

    >>> roc_auc(np.array([0, 1, 1]), np.array([[0.6, 0.4], [0.3, 0.7], [0.7, 0.3]]))
    0.5
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    present = np.unique(labels)
    if present.size < 2:
        return None
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if present.size == k:
        return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(k))))
    return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))


def average_precision(labels, probs) -> tuple[float | None, list[float | None]]:
    """(average precision, per-class one-vs-rest average precisions): the area under the precision-recall
    curve as scikit-learn's average_precision_score computes it, which under class imbalance says more than
    ROC-AUC. Binary: of the second label (label id 1). k>2: the macro mean over the classes present in
    ``labels``; a class absent from ``labels`` has None (no recall is defined without positives).

    >>> average_precision(np.array([0, 1, 1]), np.array([[0.6, 0.4], [0.3, 0.7], [0.7, 0.3]]))[0]
    0.8333333333333333
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    per_class = [float(average_precision_score(labels == c, probs[:, c])) if np.any(labels == c) else None
                 for c in range(probs.shape[1])]
    if probs.shape[1] == 2:
        return per_class[1], per_class
    present = [v for v in per_class if v is not None]
    return (float(np.mean(present)) if present else None), per_class


def compute_metrics(labels, probs, id2label: dict[int, str]) -> dict:
    """All evaluation numbers as plain Python types, ready for ``json.dumps``.

    Predictions are the argmax of ``probs``; precision/recall/F1 use every label id
    (``zero_division=0``) so a never-predicted class counts as 0, not as missing. For imbalanced data:
    ``balanced_accuracy``, ``per_class`` recall, and ``average_precision`` (see `average_precision`; per class
    in ``average_precision_per_class``).

    >>> m = compute_metrics([1, 0], [[0.3, 0.7], [0.6, 0.4]], {0: "a", 1: "b"})
    >>> m["confusion_matrix"], m["label_names"]
    ([[1, 0], [0, 1]], ['a', 'b'])
    """
    labels, probs, k = _check_inputs(labels, probs, id2label)
    ids = list(range(k))
    # id2label read back from a JSON config has string keys ("0"), so accept either form.
    names = [str(id2label[i] if i in id2label else id2label[str(i)]) for i in ids]
    preds = probs.argmax(axis=1)
    out: dict = {
        "n": int(labels.size),
        "loss": cross_entropy(labels, probs),
        "accuracy": float(np.mean(preds == labels)),
    }
    with warnings.catch_warnings():  # a predicted class absent from labels is expected on small splits
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        # the mean recall over the classes present in labels (scikit-learn's definition)
        out["balanced_accuracy"] = float(balanced_accuracy_score(labels, preds))
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, labels=ids, average=avg, zero_division=0)
        out |= {f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)}
    out["roc_auc"] = roc_auc(labels, probs)
    ap, ap_per_class = average_precision(labels, probs)
    out["average_precision"] = ap
    out["average_precision_per_class"] = dict(zip(names, ap_per_class))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=ids, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(names)
    }
    out["confusion_matrix"] = confusion_matrix(labels, preds, labels=ids).astype(int).tolist()
    out["label_names"] = names
    return out


def summary_line(metrics: dict) -> str:
    """One line for logs.

    >>> summary_line({"loss": 0.5, "accuracy": 0.75, "f1_macro": 0.7, "roc_auc": None})
    'loss 0.5000 · accuracy 0.7500 · f1_macro 0.7000 · roc_auc n/a'
    """
    parts = []
    for key in SUMMARY_KEYS:
        if key not in metrics:
            continue
        value = metrics[key]
        parts.append(f"{key} {'n/a' if value is None else f'{value:.4f}'}")
    return " · ".join(parts)
