"""Figures of multi-label and regression runs as PNG files (the single-label ones are in llmclf.plots).

>>> paths = write_typed_plots("runs/x", "multi-label", metrics, targets, probs, history)  # doctest: +SKIP
>>> [p.name for p in paths]  # doctest: +SKIP
['per_label_f1.png', 'per_label_roc.png', 'loss.png', 'f1.png']
"""

from __future__ import annotations

import pathlib

import numpy as np

from llmclf.plots import _plot_series, _save, has_series, plot_loss, plt
from llmclf.problem_types import MULTI_LABEL


def plot_per_label_f1(per_label: dict[str, dict], path) -> pathlib.Path:
    """One horizontal bar per label: its F1 at its threshold, with its support (positives) beside it."""
    names = list(per_label)
    f1 = [per_label[n]["f1"] for n in names]
    fig, ax = plt.subplots(figsize=(6.4, max(2.5, 0.35 * len(names) + 1.2)))
    bars = ax.barh(range(len(names)), f1, color="tab:blue")
    for bar, name in zip(bars, names):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                f"{per_label[name]['f1']:.3f} (n={per_label[name]['support']})", va="center", fontsize=8)
    ax.set(yticks=range(len(names)), title="F1 per label (at its threshold)", xlabel="F1", xlim=(0, 1.25))
    ax.set_yticklabels(names)
    ax.invert_yaxis()  # first label on top
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_per_label_roc(targets, probs, names: list[str], path) -> pathlib.Path:
    """One ROC curve per label; a label with one class in the data has none (and says so in the legend)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.8, 5.0))
    for j, name in enumerate(names):
        if np.unique(targets[:, j]).size < 2:
            ax.plot([], [], linestyle="none", label=f"{name}: undefined (one class)")
            continue
        fpr, tpr, _ = roc_curve(targets[:, j], probs[:, j])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(targets[:, j], probs[:, j]):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Chance")
    ax.set(title="ROC curves per label", xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1),
           ylim=(0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def plot_predicted_vs_true(targets, predictions, path, halfwidth: float | None = None) -> pathlib.Path:
    """Scatter of predictions against targets, the identity line, and the conformal band when there is one."""
    y, p = np.asarray(targets, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    line = np.array([lo, hi])
    ax.plot(line, line, linestyle="--", color="grey", label="Perfect prediction")
    if halfwidth is not None:
        ax.fill_between(line, line - halfwidth, line + halfwidth, color="tab:green", alpha=0.15,
                        label=f"Interval ±{halfwidth:.3g}")
    ax.scatter(y, p, s=12, alpha=0.7, color="tab:blue", label="Examples")
    ax.set(title="Predicted vs true", xlabel="True value", ylabel="Predicted value")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_residuals(targets, predictions, path) -> pathlib.Path:
    """Residuals (prediction - target) against the target: a trend shows where the model is biased."""
    y, p = np.asarray(targets, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ax.axhline(0.0, linestyle="--", color="grey")
    ax.scatter(y, p - y, s=12, alpha=0.7, color="tab:orange")
    ax.set(title="Residuals by target", xlabel="True value", ylabel="Prediction - true value")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_typed_plots(out_dir, problem_type: str, metrics: dict, targets, outputs, history: list[dict] | None = None,
                      halfwidth: float | None = None) -> list[pathlib.Path]:
    """Every figure of a multi-label or regression split under ``out_dir/plots/``; returns their paths."""
    plots = pathlib.Path(out_dir) / "plots"
    if problem_type == MULTI_LABEL:
        paths = [plot_per_label_f1(metrics["per_label"], plots / "per_label_f1.png"),
                 plot_per_label_roc(targets, outputs, metrics["label_names"], plots / "per_label_roc.png")]
        series = {"eval_f1_micro": "Validation F1 (micro)", "eval_f1_macro": "Validation F1 (macro)"}
        name, ylabel = "f1", "F1"
    else:
        paths = [plot_predicted_vs_true(targets, outputs, plots / "predicted_vs_true.png", halfwidth),
                 plot_residuals(targets, outputs, plots / "residuals.png")]
        series = {"eval_mae": "Validation MAE", "eval_rmse": "Validation RMSE"}
        name, ylabel = "error", "Error (original scale)"
    if history:
        paths.append(plot_loss(history, plots / "loss.png"))
    if has_series(history, series):
        paths.append(_plot_series(history, plots / f"{name}.png", series, ylabel + " per epoch", ylabel))
    return paths
