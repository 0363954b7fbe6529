"""Trustworthy probabilities and decisions: temperature scaling, calibration error, decision thresholds,
risk-coverage for abstention, and where a model directory keeps them.

>>> T = fit_temperature(validation_logits, validation_labels)          # doctest: +SKIP
>>> probs = softmax(validation_logits / T)                             # doctest: +SKIP
>>> expected_calibration_error(validation_labels, probs)               # doctest: +SKIP
0.021
>>> tune_threshold(validation_labels, probs[:, 1], "f1").threshold     # doctest: +SKIP
0.43

Pure numpy/scipy on arrays except `scale_head`, which edits a torch model in place.

Where calibration lives. The fitted temperature is divided into the classification head's weights (and bias)
before saving, so every loader -- `Classifier`, `pipeline("text-classification")`, the Hub widget -- gets the
calibrated probabilities from the weights alone. The saved record (`config.json` key "llmclf" for a full
model, `calibration.json` beside a LoRA adapter) holds:

    {"fitted_temperature": T, "temperature_in_head": true, "threshold": t or null,
     "threshold_objective": "accuracy", "target_precision": null, "target_recall": null,
     "threshold_p_value": p or null}

It has no "temperature" key, since that key is the extra factor `Classifier` divides logits by (1.0 when
absent). Only when the head is not one linear layer does the record say "temperature": T and
"temperature_in_head": false, and `Classifier` applies it at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmclf.artifacts import write_calibration
from llmclf.config import THRESHOLD_OBJECTIVES
from llmclf.metrics import softmax

N_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
COVERAGE_TARGETS = (0.99, 0.98)
THRESHOLD_SIGNIFICANCE = 0.05  # an accuracy-tuned threshold replaces 0.5 only when its gain's p-value is below this


# --- calibration error -------------------------------------------------------------------------------------

def reliability_table(labels, probs, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per-bin statistics of the top-class confidence, with equal-width bins (lo, hi] over [0, 1].

    Returns arrays of length n_bins: `count`, `accuracy` and `confidence` (mean top probability; both NaN
    in empty bins), and `edges` of length n_bins + 1. Accuracy is of the argmax prediction.

    >>> t = reliability_table([0, 1], [[0.9, 0.1], [0.6, 0.4]], n_bins=2)
    >>> t["count"].tolist(), t["accuracy"].tolist()
    ([0, 2], [nan, 0.5])
    """
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds confidences in (edges[i], edges[i + 1]]; a confidence of exactly 0 cannot occur (>= 1/k).
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins) / count
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
    return {"count": count, "accuracy": accuracy, "confidence": mean_confidence, "edges": edges}


def expected_calibration_error(labels, probs, n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean gap |accuracy - confidence| over equal-width confidence bins.

    >>> expected_calibration_error([0, 0], [[0.9, 0.1], [0.9, 0.1]])
    0.1
    """
    table = reliability_table(labels, probs, n_bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return round(float(np.sum(table["count"][filled] * gaps) / np.sum(table["count"])), 12)


# --- temperature scaling -----------------------------------------------------------------------------------

def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature), computed stably via log-sum-exp."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits, labels, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on held-out data (Guo et al., 2017).

    NLL is convex in 1/T, so a bounded 1-D search over log T finds the minimum. When the model gets every
    example right the NLL keeps falling as T shrinks, without limit: nothing there says how sure the model
    should be, so T stays 1.0.

    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    >>> round(fit_temperature(logits, [0, 1, 1, 0]), 2)  # half wrong: flatten to 50/50
    20.0
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or labels.size == 0:
        raise ValueError(f"logits must have shape (n, k) matching {labels.shape[0]} labels; got {logits.shape}")
    if not np.isfinite(logits).all():
        raise ValueError("logits hold NaN or inf; the model diverged, so no temperature can be fitted")
    if (logits.argmax(axis=1) == labels).all():
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    found = minimize_scalar(lambda u: nll(logits, labels, float(np.exp(u))), bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-6})
    temperature = float(np.exp(found.x))
    # Brent may stop a hair inside a bound; never return something worse than leaving the logits alone.
    return temperature if nll(logits, labels, temperature) <= nll(logits, labels, 1.0) else 1.0


# --- decision threshold (binary) ---------------------------------------------------------------------------

@dataclass
class ThresholdChoice:
    threshold: float
    """Predict label id 1 exactly when its probability is >= threshold."""
    value: float
    """The objective's value at the threshold on the tuning data (precision for a target precision, recall for a
    target recall)."""
    target_met: bool = True
    """False when no threshold reached the target precision (the most precise one is chosen then) or the target
    recall (the one with the most recall is chosen then)."""
    p_value: float | None = None
    """Objective `accuracy` only: the p-value of the best threshold's gain over 0.5 (see `gain_p_value`); the
    best threshold is chosen only when it is below THRESHOLD_SIGNIFICANCE, else 0.5 is kept."""


def gain_p_value(labels, scores, threshold: float) -> float:
    """How likely chance alone would give `threshold` its gain in accuracy over the argmax rule (0.5): the
    one-sided exact sign test (McNemar's test) on the rows the two cuts decide differently, counting those that
    `threshold` gets right. 1.0 when the cuts decide every row alike.

    It ignores that the threshold was picked as the best of many cuts, so it errs towards keeping a tuned
    threshold; what it stops is a cut that a handful of validation rows chose (on 64 rows one such cut cost
    0.023 held-out accuracy in bench/sample_efficiency.py).

    >>> gain_p_value([0, 1, 1], [0.2, 0.4, 0.9], 0.3)  # one row moves, and the move is right
    0.5
    """
    from scipy.stats import binomtest

    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tuned = scores >= threshold
    moved = tuned != (scores >= 0.5)
    if not moved.any():
        return 1.0
    gains = int((tuned[moved] == (labels[moved] == 1)).sum())
    return float(binomtest(gains, int(moved.sum()), 0.5, alternative="greater").pvalue)


def threshold_counts(labels, scores, thresholds) -> dict[str, np.ndarray]:
    """True/false positives/negatives of the rule `scores >= t` for every t in thresholds (vectorised)."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    return {"tp": tp, "fp": fp, "fn": len(pos) - tp, "tn": len(neg) - fp}


def threshold_candidates(scores) -> np.ndarray:
    """0.5 and the midpoints between neighbouring distinct scores: one threshold per way to split the data,
    placed as far as possible from the scores it separates."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    return np.unique(np.concatenate([[0.5], (distinct[:-1] + distinct[1:]) / 2]))


def tune_threshold(labels, scores, objective: str = "accuracy", target_precision: float | None = None,
                   target_recall: float | None = None) -> ThresholdChoice:
    """The threshold on `scores` (the probability of label id 1) that best serves `objective`.

    `accuracy` and `f1` (of label 1) are maximised. `precision` takes the lowest threshold -- the most
    recall -- whose precision reaches `target_precision`. `recall` takes, among the thresholds whose recall
    reaches `target_recall`, the one with the most precision. Ties go to the threshold nearest 0.5, so when the
    data cannot tell thresholds apart the argmax rule (0.5) is kept. For `accuracy`, 0.5 is also kept when the
    best threshold's gain over it could be chance (`gain_p_value` at or above THRESHOLD_SIGNIFICANCE): a few
    validation rows cannot move the decision rule of every later prediction.

    >>> choice = tune_threshold([0, 0, 1, 1], [0.1, 0.3, 0.35, 0.9])  # 0.325 fixes one row of four: not enough
    >>> choice.threshold, choice.p_value
    (0.5, 0.5)
    >>> round(tune_threshold([0, 0, 1, 1] * 5, [0.1, 0.3, 0.35, 0.9] * 5).threshold, 4)  # five rows: kept
    0.325
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"objective must be one of {THRESHOLD_OBJECTIVES}, got {objective!r}")
    if objective == "precision" and not (target_precision is not None and 0 < target_precision <= 1):
        raise ValueError(f"objective 'precision' needs a target_precision in (0, 1], got {target_precision!r}")
    if objective == "recall" and not (target_recall is not None and 0 < target_recall <= 1):
        raise ValueError(f"objective 'recall' needs a target_recall in (0, 1], got {target_recall!r}")
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("no examples to tune a threshold on")
    thresholds = threshold_candidates(scores)
    if objective == "recall":  # also a threshold below every score (everything label 1): full recall is reachable
        thresholds = np.union1d(thresholds, [float(np.min(scores)) / 2])
    c = threshold_counts(labels, scores, thresholds)
    tp, fp, fn, tn = (c[k].astype(np.float64) for k in ("tp", "fp", "fn", "tn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    accuracy = (tp + tn) / labels.size
    near_half = -np.abs(thresholds - 0.5)
    if objective == "precision":
        reached = (precision >= target_precision - 1e-12) & (tp > 0)
        if reached.any():
            # Most true positives (the most recall), then the fewest false ones, then nearest 0.5.
            best = np.lexsort((near_half, precision, np.where(reached, tp, -1)))[-1]
            return ThresholdChoice(float(thresholds[best]), float(precision[best]), True)
        best = np.lexsort((near_half, tp, precision))[-1]
        return ThresholdChoice(float(thresholds[best]), float(precision[best]), False)
    if objective == "recall":
        positives = tp[0] + fn[0]
        recall = tp / positives if positives > 0 else np.zeros_like(tp)
        reached = (recall >= target_recall - 1e-12) & (tp > 0)
        if reached.any():
            # The most precision, then the most recall, then nearest 0.5.
            best = np.lexsort((near_half, recall, np.where(reached, np.round(precision, 12), -1)))[-1]
            return ThresholdChoice(float(thresholds[best]), float(recall[best]), True)
        best = np.lexsort((near_half, precision, recall))[-1]
        return ThresholdChoice(float(thresholds[best]), float(recall[best]), False)
    value = accuracy if objective == "accuracy" else f1
    best = np.lexsort((near_half, np.round(value, 12)))[-1]
    if objective == "f1":
        return ThresholdChoice(float(thresholds[best]), float(value[best]))
    p_value = gain_p_value(labels, scores, float(thresholds[best]))
    if p_value >= THRESHOLD_SIGNIFICANCE:
        best = int(np.flatnonzero(thresholds == 0.5)[0])  # threshold_candidates always holds 0.5
    return ThresholdChoice(float(thresholds[best]), float(value[best]), p_value=p_value)


def decisions(probs, threshold: float | None) -> np.ndarray:
    """Label ids as `Classifier.decide` makes them: argmax, or for a binary threshold p(1) >= threshold."""
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is not None:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


# --- abstention --------------------------------------------------------------------------------------------

def risk_coverage(confidence, correct) -> dict[str, np.ndarray]:
    """The risk-coverage curve of `--min-confidence`: keep the most confident share, send the rest to review.

    One point per distinct confidence (ties are kept or reviewed together, as a cut-off treats them):
    `coverage` (share kept), `risk` (error rate among the kept) and `min_confidence` (the cut-off that keeps
    exactly them), ordered by rising coverage.

    >>> c = risk_coverage([0.9, 0.8, 0.8, 0.6], [True, True, False, False])
    >>> c["coverage"].tolist(), c["risk"].tolist()
    ([0.25, 0.75, 1.0], [0.0, 0.3333333333333333, 0.5])
    """
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], np.cumsum(correct[order])
    ends = np.flatnonzero(np.r_[conf[1:] < conf[:-1], True])  # last index of each group of equal confidence
    kept = ends + 1
    return {"coverage": kept / len(conf), "risk": (kept - hits[ends]) / kept, "min_confidence": conf[ends]}


def coverage_at_accuracy(confidence, correct, accuracy: float) -> tuple[float, float | None]:
    """(largest share kept whose accuracy reaches `accuracy`, the --min-confidence that keeps it).

    (0.0, None) when even the most confident examples miss the target.

    >>> coverage_at_accuracy([0.9, 0.8, 0.7], [True, True, False], 0.99)
    (0.6666666666666666, 0.8)
    """
    curve = risk_coverage(confidence, correct)
    ok = np.flatnonzero(1.0 - curve["risk"] >= accuracy - 1e-12)
    if ok.size == 0:
        return 0.0, None
    best = ok[-1]
    return float(curve["coverage"][best]), float(curve["min_confidence"][best])


# --- what a run fits and saves -----------------------------------------------------------------------------

@dataclass
class Calibration:
    """What a run fitted on its validation data and saves with the model."""

    temperature: float = 1.0
    """Logits are divided by it before the softmax."""
    threshold: float | None = None
    """Binary models: predict label id 1 exactly when its calibrated probability is >= threshold."""
    threshold_objective: str = "accuracy"
    target_precision: float | None = None
    target_met: bool = True
    target_recall: float | None = None
    threshold_p_value: float | None = None
    """Objective accuracy: the p-value of the best threshold's gain over 0.5 on validation (0.5 kept unless
    below THRESHOLD_SIGNIFICANCE)."""

    def to_record(self, temperature_in_head: bool) -> dict:
        record = {"fitted_temperature": self.temperature, "temperature_in_head": temperature_in_head,
                  "threshold": self.threshold, "threshold_objective": self.threshold_objective,
                  "target_precision": self.target_precision, "target_recall": self.target_recall,
                  "threshold_p_value": self.threshold_p_value}
        if not temperature_in_head:
            record["temperature"] = self.temperature  # Classifier divides logits by it at inference
        return record


def fit_calibration(logits, labels, objective: str = "accuracy", target_precision: float | None = None,
                    target_recall: float | None = None) -> Calibration:
    """Temperature first, then (binary only) the threshold on the calibrated probability of label 1."""
    temperature = fit_temperature(logits, labels)
    probs = softmax(np.asarray(logits, dtype=np.float64) / temperature)
    if probs.shape[1] != 2:
        return Calibration(temperature, None, objective, target_precision, target_recall=target_recall)
    choice = tune_threshold(labels, probs[:, 1], objective, target_precision, target_recall)
    return Calibration(temperature, choice.threshold, objective, target_precision, choice.target_met, target_recall,
                       choice.p_value)


def scale_head(model, temperature: float) -> bool:
    """Divide the classification head's weights and bias by `temperature`, in place, so the model's own logits
    become logits / temperature. Returns False (and changes nothing) unless the head is one linear layer
    (`score` or `classifier`, possibly wrapped by PEFT) with num_labels outputs.
    """
    import torch

    from llmclf.heads import head_linears

    linears = head_linears(model)
    if not linears:
        return False
    with torch.no_grad():
        for layer in linears:  # PEFT keeps the original head and its trained copy: scaling both is harmless
            layer.weight.div_(temperature)
            if layer.bias is not None:
                layer.bias.div_(temperature)
    return True


def save_calibration(model_dir, calibration: Calibration, temperature_in_head: bool) -> Path:
    """Save the fitted calibration with the model (see the module docstring); returns the file written."""
    return write_calibration(model_dir, calibration.to_record(temperature_in_head))
