"""Training and evaluation figures as PNG files.

>>> paths = write_plots("runs/x", metrics, labels, probs, history)  # doctest: +SKIP
>>> [p.name for p in paths]  # doctest: +SKIP
['confusion_matrix.png', 'roc.png', 'loss.png', 'accuracy.png']
"""

from __future__ import annotations

import pathlib

import matplotlib

# Agg renders to files only, so plotting works on headless training machines and in tests.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

DPI = 120


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for rows where ``key`` has a value; trainers log train and eval rows separately."""
    rows = [r for r in history if r.get(key) is not None and r.get("epoch") is not None]
    return [float(r["epoch"]) for r in rows], [float(r[key]) for r in rows]


def has_series(history: list[dict] | None, keys) -> bool:
    """Whether any history row holds one of ``keys`` (a run without per-epoch validation logs no eval series)."""
    return any(key in row for row in history or [] for key in keys)


def _plot_series(history: list[dict], path, series: dict[str, str], title: str, ylabel: str) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label in series.items():
        x, y = _series(history, key)
        if x:
            ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set(title=title, xlabel="Epoch", ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no values logged", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_loss(history: list[dict], path) -> pathlib.Path:
    """Training and validation loss per epoch: ``plot_loss(trainer_history, "plots/loss.png")``."""
    series = {"train_loss": "Training loss", "eval_loss": "Validation loss"}
    return _plot_series(history, path, series, "Loss", "Cross-entropy loss")


def plot_accuracy(history: list[dict], path) -> pathlib.Path:
    """Validation (and training, if logged) accuracy per epoch: ``plot_accuracy(history, "plots/accuracy.png")``."""
    series = {"train_accuracy": "Training accuracy", "eval_accuracy": "Validation accuracy"}
    return _plot_series(history, path, series, "Accuracy", "Accuracy")


def plot_confusion_matrix(cm, label_names: list[str], path) -> pathlib.Path:
    """Annotated count matrix, rows true and columns predicted: ``plot_confusion_matrix(m["confusion_matrix"], m["label_names"], p)``."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(label_names)
    size = max(4.0, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(k), yticks=range(k), title="Confusion matrix", xlabel="Predicted label", ylabel="True label")
    # Long names overlap when horizontal, so tilt them only when needed.
    tilt = 45 if max((len(str(n)) for n in label_names), default=0) > 6 or k > 6 else 0
    ax.set_xticklabels(label_names, rotation=tilt, ha="right" if tilt else "center")
    ax.set_yticklabels(label_names)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour)
    return _save(fig, path)


def plot_roc(labels, probs, label_names: list[str], path) -> pathlib.Path:
    """ROC curves from probabilities: the positive class (id 1) when binary, else one-vs-rest per class.

    Classes absent from ``labels`` have no ROC curve and are left out.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    classes = [1] if k == 2 else list(range(k))
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    for c in classes:
        truth = labels == c
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, probs[:, c])
        auc = roc_auc_score(truth, probs[:, c])
        ax.plot(fpr, tpr, label=f"{label_names[c]} (AUC {auc:.4f})")
    drawn = bool(ax.lines)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Chance")
    title = "ROC curve" if k == 2 else "ROC curves (one-vs-rest)"
    ax.set(title=title, xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if not drawn:
        ax.text(0.5, 0.6, "undefined: labels hold one class", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def write_plots(out_dir, metrics: dict, labels, probs, history: list[dict] | None = None) -> list[pathlib.Path]:
    """Write every figure under ``out_dir/plots/`` and return their paths.

    Loss and accuracy curves need a training history, so they are skipped without one (the accuracy curve also
    without per-epoch validation).
    """
    plots = pathlib.Path(out_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    names = metrics["label_names"]
    paths = [
        plot_confusion_matrix(metrics["confusion_matrix"], names, plots / "confusion_matrix.png"),
        plot_roc(labels, probs, names, plots / "roc.png"),
    ]
    if history:
        paths.append(plot_loss(history, plots / "loss.png"))
    if has_series(history, ("train_accuracy", "eval_accuracy")):
        paths.append(plot_accuracy(history, plots / "accuracy.png"))
    return paths


def plot_reliability(labels, probs, calibrated_probs, path, temperature: float | None = None,
                     n_bins: int = 15) -> pathlib.Path:
    """Reliability diagram: accuracy against mean confidence per equal-width bin, before and after temperature
    scaling, with each curve's ECE; bars below show how many examples each bin holds.

    ``plot_reliability(labels, softmax(logits), softmax(logits / T), "plots/reliability.png", temperature=T)``
    """
    from llmclf.calibration import expected_calibration_error, reliability_table

    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.8, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Perfect calibration")
    after_name = "Calibrated" + (f" (T={temperature:.3g})" if temperature is not None else "")
    width = 1.0 / n_bins
    for offset, (name, p, colour) in enumerate((("Uncalibrated", probs, "tab:orange"),
                                                (after_name, calibrated_probs, "tab:blue"))):
        table = reliability_table(labels, p, n_bins)
        filled = table["count"] > 0
        ece = expected_calibration_error(labels, p, n_bins)
        ax.plot(table["confidence"][filled], table["accuracy"][filled], marker="o", markersize=4, color=colour,
                label=f"{name}: ECE {ece:.4f}")
        centres = table["edges"][:-1] + width * (0.3 + 0.4 * offset)
        counts.bar(centres, table["count"], width=width * 0.4, color=colour, alpha=0.8)
    ax.set(title="Reliability diagram", ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    counts.set(xlabel=f"Confidence (top-class probability, {n_bins} bins)", ylabel="Examples", xlim=(0, 1))
    counts.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_risk_coverage(confidence, correct, path, targets=(0.99, 0.98)) -> pathlib.Path:
    """Error rate among the kept examples against the share kept, when examples under a confidence cut-off go
    to human review; dotted lines mark the largest coverage at each target accuracy.

    ``plot_risk_coverage(probs.max(axis=1), decisions == labels, "plots/risk_coverage.png")``
    """
    from llmclf.calibration import coverage_at_accuracy, risk_coverage

    curve = risk_coverage(confidence, correct)
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    ax.step(np.r_[0.0, curve["coverage"]], np.r_[curve["risk"][0], curve["risk"]], where="post",
            color="tab:blue", label="Risk (error rate of kept)")
    for target, colour in zip(targets, ("tab:green", "tab:purple")):
        coverage, cut = coverage_at_accuracy(confidence, correct, target)
        ax.axhline(1 - target, color=colour, linestyle=":", linewidth=1)
        text = (f"{target:.0%} accuracy: coverage {coverage:.1%} (min confidence {cut:.3f})" if cut is not None
                else f"{target:.0%} accuracy: not reached")
        ax.plot([coverage], [1 - target], marker="o", color=colour, label=text)
    ax.set(title="Risk-coverage (abstention)", xlabel="Coverage (share of examples answered automatically)",
           ylabel="Risk (error rate)", xlim=(0, 1.01), ylim=(0, max(0.05, float(curve["risk"].max()) * 1.1)))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
