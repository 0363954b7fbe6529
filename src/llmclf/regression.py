"""Regression numbers on arrays: metrics, target standardisation and split-conformal intervals.

>>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mae"]
0.3333333333333333
>>> s = Standardiser.fit([1.0, 3.0])
>>> s.apply([1.0, 3.0]).tolist(), s.undo([-1.0, 1.0]).tolist()
([-1.0, 1.0], [1.0, 3.0])

The model learns standardised targets (mean 0, standard deviation 1 on the training part): one learning rate
suits every scale of target, and the fresh head starts near the mean. The mean and standard deviation are saved
with the model, so that prediction = raw output * target_std + target_mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmclf.errors import UserError


@dataclass
class Standardiser:
    mean: float
    std: float

    @classmethod
    def fit(cls, targets, what: str = "--data") -> "Standardiser":
        """Mean and (population) standard deviation of the training targets; constant targets are refused."""
        values = np.asarray(targets, dtype=np.float64)
        std = float(values.std())
        if not std > 0:
            raise UserError(f"{what}: every training target is {values[0]:g}; regression needs targets that vary.")
        return cls(float(values.mean()), std)

    def apply(self, targets) -> np.ndarray:
        return (np.asarray(targets, dtype=np.float64) - self.mean) / self.std

    def undo(self, outputs) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64) * self.std + self.mean


def _correlation(kind: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """Pearson or Spearman correlation; None when either side is constant (undefined)."""
    from scipy.stats import pearsonr, spearmanr

    if np.ptp(y) == 0 or np.ptp(p) == 0:
        return None
    return float((pearsonr if kind == "pearson" else spearmanr)(y, p)[0])


def regression_metrics(targets, predictions) -> dict:
    """MAE, MSE, RMSE, R², Pearson and Spearman correlation of predictions on the original scale.

    >>> regression_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])["r2"]
    0.75
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if y.size == 0 or y.shape != p.shape:
        raise ValueError(f"targets and predictions must be non-empty and of one length; got {y.shape}, {p.shape}")
    mse = float(mean_squared_error(y, p))
    return {"n": int(y.size), "mae": float(mean_absolute_error(y, p)), "mse": mse, "rmse": math.sqrt(mse),
            "r2": float(r2_score(y, p)) if y.size > 1 else None,
            "pearson": _correlation("pearson", y, p), "spearman": _correlation("spearman", y, p),
            "target_mean": float(y.mean()), "prediction_mean": float(p.mean())}


def conformal_halfwidth(targets, predictions, level: float) -> float:
    """Split-conformal half-width q: the ceil((n + 1) * level) / n empirical quantile of |residual| on held-out
    data, so [prediction - q, prediction + q] covers a new target with probability >= level (exchangeable data).
    With too few examples for the level (ceil((n + 1) * level) > n) the largest residual is used.

    >>> conformal_halfwidth([0, 0, 0, 0], [1, 2, 3, 4], 0.5)
    3.0
    """
    residuals = np.abs(np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64))
    n = residuals.size
    rank = min(n, math.ceil((n + 1) * level))  # the rank-th smallest residual
    return float(np.sort(residuals)[rank - 1])


def coverage(targets, predictions, halfwidth: float) -> float:
    """Share of targets inside [prediction - halfwidth, prediction + halfwidth]."""
    residuals = np.abs(np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64))
    return float(np.mean(residuals <= halfwidth))
