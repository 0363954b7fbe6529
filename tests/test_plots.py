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


def test_roc_skips_absent_class_and_single_class(tmp_path):
    labels, probs, m = case(4)
    keep = labels != 2
    assert_png(plot_roc(labels[keep], probs[keep], m["label_names"], tmp_path / "roc4.png"))
    assert_png(plot_roc(np.zeros(4, int), probs[:4, :2] / probs[:4, :2].sum(1, keepdims=True), ["a", "b"],
                        tmp_path / "roc1.png"))


def test_single_plots(tmp_path):
    assert_png(plot_loss(HISTORY, tmp_path / "loss.png"))
    assert_png(plot_accuracy([{"epoch": 1, "eval_accuracy": 0.8, "train_accuracy": 0.9}], tmp_path / "acc.png"))
    assert_png(plot_accuracy([{"epoch": 1, "train_loss": 0.3}], tmp_path / "empty.png"))
    assert_png(plot_confusion_matrix([[5, 1], [2, 7]], ["no", "yes"], tmp_path / "cm.png"))
