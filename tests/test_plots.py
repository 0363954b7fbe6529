import matplotlib.image as mpimg
import numpy as np
import pytest

from llmclf.metrics import compute_metrics, softmax
from llmclf.plots import plot_accuracy, plot_confusion_matrix, plot_loss, plot_roc, write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"epoch": 0.5, "train_loss": 0.69, "eval_loss": None},
    {"epoch": 1.0, "train_loss": 0.52, "eval_loss": 0.48, "eval_accuracy": 0.78},
    {"epoch": 2.0, "train_loss": None, "eval_loss": 0.41, "eval_accuracy": 0.84},
    {"epoch": 2.0, "train_loss": 0.35},
]


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 300


def case(k):
    rng = np.random.default_rng(k)
    labels = np.tile(np.arange(k), 8)
    probs = softmax(rng.normal(size=(len(labels), k)) + np.eye(k)[labels])
    names = {i: n for i, n in enumerate(["negative", "positive", "neutral", "a rather long label"][:k])}
    return labels, probs, compute_metrics(labels, probs, names)


@pytest.mark.parametrize("k", [2, 4])
def test_write_plots_with_history(tmp_path, k):
    labels, probs, m = case(k)
    paths = write_plots(tmp_path, m, labels, probs, HISTORY)
    assert [p.name for p in paths] == ["confusion_matrix.png", "roc.png", "loss.png", "accuracy.png"]
    for p in paths:
        assert p.parent == tmp_path / "plots"
        assert_png(p)


def test_write_plots_without_history_writes_two(tmp_path):
    labels, probs, m = case(2)
    for history in (None, []):
        paths = write_plots(tmp_path / str(history), m, labels, probs, history)
        assert sorted(p.name for p in paths) == ["confusion_matrix.png", "roc.png"]
        assert sorted(p.name for p in (tmp_path / str(history) / "plots").iterdir()) == sorted(p.name for p in paths)


def test_typed_plots_draw_the_per_epoch_error_curve_only_when_validation_ran(tmp_path):
    """A regression run without per-epoch validation logs only its training loss: no empty error curve."""
    from llmclf.problem_types import REGRESSION
    from llmclf.type_plots import write_typed_plots

    rng = np.random.default_rng(0)
    targets = rng.normal(size=40)
    outputs = targets + rng.normal(scale=0.3, size=40)
    losses = [{"epoch": 1.0, "train_loss": 0.5}, {"epoch": 2.0, "train_loss": 0.3}]
    per_epoch = [*losses, {"epoch": 1.0, "eval_mae": 0.4, "eval_rmse": 0.5}, {"epoch": 2.0, "eval_mae": 0.3}]
    drawn = {name: write_typed_plots(tmp_path / name, REGRESSION, {}, targets, outputs, history)
             for name, history in (("per_epoch", per_epoch), ("losses", losses))}
    assert [p.name for p in drawn["per_epoch"]] == ["predicted_vs_true.png", "residuals.png", "loss.png", "error.png"]
    assert [p.name for p in drawn["losses"]] == ["predicted_vs_true.png", "residuals.png", "loss.png"]
    for path in drawn["per_epoch"]:
        assert_png(path)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept for inspection after they are written and closed."""
    import llmclf.plots

    drawn = []
    save = llmclf.plots._save
    monkeypatch.setattr(llmclf.plots, "_save", lambda fig, path: drawn.append(fig) or save(fig, path))
    return drawn


def curve_labels(fig) -> list[str]:
    (ax,) = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    return [line.get_label() for line in ax.lines]


def test_roc_skips_absent_class_and_single_class(tmp_path, figures):
    labels, probs, m = case(4)
    keep = labels != 2
    assert_png(plot_roc(labels[keep], probs[keep], m["label_names"], tmp_path / "roc4.png"))
    # one curve per class present (neutral, id 2, is absent), then the chance diagonal
    assert [name.split(" (AUC")[0] for name in curve_labels(figures[-1])] == ["negative", "positive",
                                                                              "a rather long label", "Chance"]
    assert_png(plot_roc(np.zeros(4, int), probs[:4, :2] / probs[:4, :2].sum(1, keepdims=True), ["a", "b"],
                        tmp_path / "roc1.png"))
    assert curve_labels(figures[-1]) == ["Chance"]
    assert [t.get_text() for t in figures[-1].axes[0].texts] == ["undefined: labels hold one class"]


def test_confusion_matrix_keeps_an_absent_class(tmp_path, figures):
    labels, probs, _ = case(4)
    keep = labels != 2
    m = compute_metrics(labels[keep], probs[keep], {i: n for i, n in enumerate(case(4)[2]["label_names"])})
    assert_png(plot_confusion_matrix(m["confusion_matrix"], m["label_names"], tmp_path / "cm.png"))
    ax = figures[-1].axes[0]
    names = ["negative", "positive", "neutral", "a rather long label"]
    assert [t.get_text() for t in ax.get_xticklabels()] == names and [t.get_text() for t in ax.get_yticklabels()] == names
    counts = np.array(m["confusion_matrix"])
    assert counts.shape == (4, 4) and not counts[2].any() and counts.sum() == keep.sum()
    assert np.array_equal(ax.images[0].get_array(), counts)  # the drawn cells are the counts, row 2 all zero
    assert [t.get_text() for t in ax.texts] == [str(n) for n in counts.ravel()]


def test_single_plots(tmp_path):
    assert_png(plot_loss(HISTORY, tmp_path / "loss.png"))
    assert_png(plot_accuracy([{"epoch": 1, "eval_accuracy": 0.8, "train_accuracy": 0.9}], tmp_path / "acc.png"))
    assert_png(plot_accuracy([{"epoch": 1, "train_loss": 0.3}], tmp_path / "empty.png"))
    assert_png(plot_confusion_matrix([[5, 1], [2, 7]], ["no", "yes"], tmp_path / "cm.png"))
