import json

import numpy as np
import pytest
from sklearn import metrics as skm

from llmclf.metrics import compute_metrics, roc_auc, softmax, summary_line

BIN_LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
BIN_P1 = np.array([0.1, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9])
BIN_PROBS = np.stack([1 - BIN_P1, BIN_P1], axis=1)
BIN_NAMES = {0: "neg", 1: "pos"}


def four_class():
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(4), 10)
    logits = rng.normal(size=(40, 4)) + 1.5 * np.eye(4)[labels]
    return labels, softmax(logits), {0: "world", 1: "sports", 2: "business", 3: "sci/tech"}


def assert_matches_sklearn(m, labels, probs, k):
    preds = probs.argmax(1)
    ids = list(range(k))
    assert m["n"] == len(labels)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert m["loss"] == pytest.approx(skm.log_loss(labels, probs, labels=ids))
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(labels, preds, labels=ids, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f))
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, preds, labels=ids).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(labels, preds, labels=ids, average=None, zero_division=0)
    assert list(m["per_class"]) == m["label_names"]
    for i, c in enumerate(m["per_class"].values()):
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    json.dumps(m)


def test_binary_matches_sklearn_and_auc_uses_probabilities():
    m = compute_metrics(BIN_LABELS, BIN_PROBS, BIN_NAMES)
    assert_matches_sklearn(m, BIN_LABELS, BIN_PROBS, 2)
    assert m["accuracy"] == 0.75
    assert m["roc_auc"] == pytest.approx(15 / 16)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(BIN_LABELS, BIN_P1))
    hard_auc = skm.roc_auc_score(BIN_LABELS, BIN_PROBS.argmax(1))
    assert hard_auc == pytest.approx(0.75) and m["roc_auc"] != pytest.approx(hard_auc)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["per_class"]["pos"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}


def test_four_class_matches_sklearn():
    labels, probs, names = four_class()
    m = compute_metrics(labels, probs, names)
    assert_matches_sklearn(m, labels, probs, 4)
    assert m["label_names"] == ["world", "sports", "business", "sci/tech"]
    expected = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
    assert m["roc_auc"] == pytest.approx(expected)
    hard = np.eye(4)[probs.argmax(1)]
    hard_auc = skm.roc_auc_score(labels, hard, multi_class="ovr", average="macro")
    assert m["roc_auc"] != pytest.approx(hard_auc)
    assert m["roc_auc"] != pytest.approx(m["accuracy"])


def test_absent_class_averages_present_classes_only():
    labels, probs, names = four_class()
    keep = labels != 3
    labels, probs = labels[keep], probs[keep]
    m = compute_metrics(labels, probs, names)
    expected = np.mean([skm.roc_auc_score(labels == c, probs[:, c]) for c in (0, 1, 2)])
    assert m["roc_auc"] == pytest.approx(expected)
    assert m["per_class"]["sci/tech"]["support"] == 0
    assert_matches_sklearn(m, labels, probs, 4)


def test_single_class_labels_give_no_auc():
    labels = np.zeros(5, dtype=int)
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    m = compute_metrics(labels, probs, BIN_NAMES)
    assert m["roc_auc"] is None
    assert m["accuracy"] == 0.8
    assert roc_auc(labels, probs) is None
    json.dumps(m)


def test_values_are_plain_python():
    labels, probs, names = four_class()
    m = compute_metrics(labels, probs, names)
    for key in ("loss", "accuracy", "f1_macro", "roc_auc"):
        assert type(m[key]) is float
    assert type(m["n"]) is int
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


def test_zero_probability_of_true_class_gives_finite_loss():
    m = compute_metrics([0, 1], [[0.0, 1.0], [0.0, 1.0]], BIN_NAMES)
    assert m["loss"] == pytest.approx(-np.log(1e-12) / 2)


def test_string_keys_in_id2label():
    m = compute_metrics(BIN_LABELS, BIN_PROBS, {"0": "neg", "1": "pos"})
    assert m["label_names"] == ["neg", "pos"]


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([0, 1], [[0.5, 0.5]], BIN_NAMES)
    with pytest.raises(ValueError, match="labels must lie"):
        compute_metrics([0, 2], BIN_PROBS[:2], BIN_NAMES)


def test_softmax_is_stable_and_normalised():
    out = softmax([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]])
    assert out.dtype == np.float64
    assert np.allclose(out.sum(1), 1.0) and np.isfinite(out).all()
    assert np.allclose(out[0], [0.5, 0.5, 0.0])
    e = np.exp([1.0, 2.0, 3.0])
    assert np.allclose(out[1], e / e.sum())


def test_summary_line():
    m = compute_metrics(BIN_LABELS, BIN_PROBS, BIN_NAMES)
    line = summary_line(m)
    assert line == f"loss {m['loss']:.4f} · accuracy 0.7500 · f1_macro 0.7500 · roc_auc 0.9375"
    assert summary_line({**m, "roc_auc": None}).endswith("roc_auc n/a")


def imbalanced_binary(n=200, positives=0.08, seed=3):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positives).astype(int)
    p1 = np.clip(0.25 + 0.35 * labels + rng.normal(0, 0.2, n), 0.01, 0.99)
    return labels, np.stack([1 - p1, p1], axis=1)


def test_imbalance_metrics_match_sklearn_binary():
    labels, probs = imbalanced_binary()
    m = compute_metrics(labels, probs, BIN_NAMES)
    preds = probs.argmax(1)
    assert 0 < labels.mean() < 0.15
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    assert m["balanced_accuracy"] != pytest.approx(m["accuracy"])
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs[:, 1]))
    assert m["average_precision_per_class"] == pytest.approx(
        {"neg": skm.average_precision_score(labels == 0, probs[:, 0]), "pos": m["average_precision"]})
    recalls = skm.recall_score(labels, preds, average=None, labels=[0, 1])
    assert [m["per_class"][n]["recall"] for n in ("neg", "pos")] == pytest.approx(recalls.tolist())


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_imbalance_metrics_match_sklearn_multiclass_and_absent_class():
    labels, probs, names = four_class()
    m = compute_metrics(labels, probs, names)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, probs.argmax(1)))
    assert m["average_precision"] == pytest.approx(
        skm.average_precision_score(np.eye(4)[labels], probs, average="macro"))
    per_class = skm.average_precision_score(np.eye(4)[labels], probs, average=None)
    assert list(m["average_precision_per_class"].values()) == pytest.approx(per_class.tolist())
    keep = labels != 3
    m = compute_metrics(labels[keep], probs[keep], names)
    assert m["average_precision_per_class"]["sci/tech"] is None
    assert m["average_precision"] == pytest.approx(
        np.mean([skm.average_precision_score(labels[keep] == c, probs[keep][:, c]) for c in (0, 1, 2)]))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels[keep], probs[keep].argmax(1)))
    assert json.loads(json.dumps(m)) == m
