"""Temperature scaling, ECE, threshold tuning and risk-coverage against scikit-learn and direct reference
computations; the temperature carried by the head; calibration saved with models and applied by predict."""

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_score, recall_score

from llmclf.calibration import (THRESHOLD_SIGNIFICANCE, Calibration, coverage_at_accuracy, decisions,
                                expected_calibration_error, fit_calibration, fit_temperature, nll, reliability_table,
                                risk_coverage, save_calibration, scale_head, threshold_candidates, threshold_counts,
                                tune_threshold)
from llmclf.artifacts import model_dir, read_calibration, read_metrics
from llmclf.cli import main
from llmclf.errors import UserError
from llmclf.metrics import softmax


def logits_and_labels(n=400, k=3, seed=0, scale=3.0):
    """Overconfident logits: the true class gets a boost, then everything is stretched by `scale`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[labels]
    return logits * scale, labels


def reference_ece(labels, probs, n_bins=15):
    """ECE written out bin by bin: (lo, hi] bins, |accuracy - mean confidence| weighted by the bin's share."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (5, 2)])
def test_ece_matches_reference_and_sklearn_bins(k, seed):
    logits, labels = logits_and_labels(k=k, seed=seed)
    probs = softmax(logits)
    assert expected_calibration_error(labels, probs) == pytest.approx(reference_ece(labels, probs), abs=1e-10)
    table = reliability_table(labels, probs)
    filled = table["count"] > 0
    correct = probs.argmax(axis=1) == labels
    accuracy, confidence = calibration_curve(correct, probs.max(axis=1), n_bins=15, strategy="uniform")
    assert np.allclose(table["accuracy"][filled], accuracy) and np.allclose(table["confidence"][filled], confidence)
    assert table["count"].sum() == len(labels)


def test_ece_edge_cases():
    assert expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0
    assert expected_calibration_error([1, 0], [[1.0, 0.0], [0.0, 1.0]]) == 1.0
    assert expected_calibration_error([0], [[0.6, 0.1, 0.1, 0.1, 0.1]]) == pytest.approx(0.4)
    # bins are (lo, hi]: a confidence on an edge belongs to the bin below it, as in sklearn's calibration_curve
    assert reliability_table([0], [[0.5, 0.5]], n_bins=2)["count"].tolist() == [1, 0]
    assert reliability_table([0], [[1.0, 0.0]], n_bins=2)["count"].tolist() == [0, 1]


def test_nll_matches_sklearn_log_loss():
    logits, labels = logits_and_labels()
    for t in (0.5, 1.0, 2.7):
        assert nll(logits, labels, t) == pytest.approx(log_loss(labels, softmax(logits / t), labels=[0, 1, 2]))


def test_fitted_temperature_is_the_nll_minimum():
    logits, labels = logits_and_labels(n=2000, scale=3.0)
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([nll(logits, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=5e-3)
    assert t > 1.5  # stretched logits are overconfident: T > 1 flattens them
    assert expected_calibration_error(labels, softmax(logits / t)) < expected_calibration_error(labels, softmax(logits))


def test_temperature_recovers_a_known_stretch():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(size=(20000, 2)) * 2
    labels = np.array([rng.choice(2, p=p) for p in softmax(true_logits)])
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.05)


def test_temperature_without_mistakes_stays_one_and_rejects_bad_input():
    assert fit_temperature(np.array([[3.0, 0.0], [0.0, 2.0]]), [0, 1]) == 1.0
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_temperature(np.array([[np.nan, 0.0], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros((3, 2)), [0, 1])


def test_threshold_counts_match_sklearn_confusion_matrix():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 300), rng.random(300).round(2)  # rounding makes ties
    thresholds = threshold_candidates(scores)
    counts = threshold_counts(labels, scores, thresholds)
    for i, t in enumerate(thresholds):
        tn, fp, fn, tp = confusion_matrix(labels, (scores >= t).astype(int), labels=[0, 1]).ravel()
        assert (counts["tp"][i], counts["fp"][i], counts["fn"][i], counts["tn"][i]) == (tp, fp, fn, tn)


def noisy_binary(seed=0, n=500):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.5 + (labels - 0.5) * 0.4 + rng.normal(scale=0.25, size=n) - 0.1, 0.001, 0.999)
    return labels, scores


@pytest.mark.parametrize("objective,metric", [("accuracy", accuracy_score), ("f1", f1_score)])
def test_threshold_maximises_the_objective_by_sklearn(objective, metric):
    labels, scores = noisy_binary()
    choice = tune_threshold(labels, scores, objective)
    values = [metric(labels, (scores >= t).astype(int)) for t in threshold_candidates(scores)]
    assert metric(labels, (scores >= choice.threshold).astype(int)) == pytest.approx(max(values))
    assert choice.value == pytest.approx(max(values))
    assert choice.threshold != 0.5  # the scores are shifted down, so 0.5 is not the best cut


def test_target_precision_takes_the_most_recall_that_reaches_it():
    labels, scores = noisy_binary(seed=1)
    choice = tune_threshold(labels, scores, "precision", target_precision=0.9)
    predicted = (scores >= choice.threshold).astype(int)
    assert choice.target_met and precision_score(labels, predicted) >= 0.9
    best_recall = max(recall_score(labels, (scores >= t).astype(int)) for t in threshold_candidates(scores)
                      if precision_score(labels, (scores >= t).astype(int), zero_division=0) >= 0.9)
    assert recall_score(labels, predicted) == pytest.approx(best_recall)
    unreachable = tune_threshold([0, 1, 0, 1], [0.9, 0.8, 0.7, 0.1], "precision", target_precision=0.99)
    assert not unreachable.target_met and unreachable.value == pytest.approx(0.5)


def test_target_recall_takes_the_most_precision_that_reaches_it():
    labels, scores = noisy_binary(seed=1)
    choice = tune_threshold(labels, scores, "recall", target_recall=0.9)
    predicted = (scores >= choice.threshold).astype(int)
    assert choice.target_met and recall_score(labels, predicted) >= 0.9
    assert choice.value == pytest.approx(recall_score(labels, predicted))
    best_precision = max(precision_score(labels, (scores >= t).astype(int), zero_division=0)
                         for t in np.union1d(threshold_candidates(scores), [scores.min() / 2])
                         if recall_score(labels, (scores >= t).astype(int)) >= 0.9)
    assert precision_score(labels, predicted) == pytest.approx(best_precision)
    # full recall is always reachable: a threshold below every score labels everything 1
    everything = tune_threshold([1, 0, 1], [0.1, 0.4, 0.9], "recall", target_recall=1.0)
    assert everything.target_met and everything.threshold <= 0.1 and everything.value == 1.0
    # no positives at all: no threshold has any recall
    none = tune_threshold([0, 0, 0], [0.1, 0.4, 0.9], "recall", target_recall=0.5)
    assert not none.target_met and none.value == 0.0


def test_recall_objective_is_fitted_saved_and_reported():
    from llmclf.analysis import calibration_metrics

    logits, labels = logits_and_labels(k=2, seed=4)
    calibration = fit_calibration(logits, labels, "recall", target_recall=0.95)
    probs = softmax(logits / calibration.temperature)
    assert calibration.threshold == tune_threshold(labels, probs[:, 1], "recall", target_recall=0.95).threshold
    record = calibration.to_record(temperature_in_head=True)
    assert (record["threshold_objective"], record["target_recall"]) == ("recall", 0.95)
    reported = calibration_metrics(labels, logits, calibration)
    assert reported["target_recall"] == 0.95 and reported["at_threshold"]["recall"] >= 0.95 - 1e-12


def exact_sign_test(gains: int, moved: int) -> float:
    """P(at least `gains` heads in `moved` fair coin flips), summed term by term."""
    from math import comb

    return sum(comb(moved, k) for k in range(gains, moved + 1)) / 2 ** moved


# Two positives scored 0.4 and 0.45: a cut at 0.35 gets them right, 0.5 gets them wrong; no other row moves.
FEW_LABELS, FEW_SCORES = [0, 0, 1, 1, 0, 1, 0, 1], [0.1, 0.2, 0.4, 0.45, 0.3, 0.9, 0.05, 0.8]


def test_an_accuracy_threshold_replaces_half_only_with_a_significant_gain():
    few = tune_threshold(FEW_LABELS, FEW_SCORES)
    assert (few.threshold, few.p_value) == (0.5, exact_sign_test(2, 2)) == (0.5, 0.25)
    assert few.value == accuracy_score(FEW_LABELS, (np.array(FEW_SCORES) >= 0.5).astype(int)) == 0.75
    more = tune_threshold(FEW_LABELS * 3, FEW_SCORES * 3)  # the same pattern three times: six moves, all right
    assert (more.threshold, more.p_value, more.value) == (pytest.approx(0.35), exact_sign_test(6, 6), 1.0)
    assert more.p_value < 0.05
    # f1 and the precision/recall targets are asked for explicitly, and tune on whatever data they get
    assert tune_threshold(FEW_LABELS, FEW_SCORES, "f1").threshold == pytest.approx(0.35)
    assert tune_threshold(FEW_LABELS, FEW_SCORES, "recall", target_recall=1.0).threshold < 0.4


def test_the_gain_p_value_counts_the_rows_that_move_either_way():
    labels, scores = noisy_binary()  # 82 rows move from 0.5 to the tuned cut: 53 become right, 29 wrong
    choice = tune_threshold(labels, scores)
    tuned, half = scores >= choice.threshold, scores >= 0.5
    moved = tuned != half
    gains = int((tuned[moved] == labels[moved].astype(bool)).sum())
    assert 0 < gains < moved.sum(), "some moves are wrong: a real two-sided count"
    assert choice.p_value == pytest.approx(exact_sign_test(gains, int(moved.sum())), rel=1e-9)
    assert choice.p_value < 0.05 and choice.threshold != 0.5


def test_the_p_value_is_saved_and_reported_with_the_threshold():
    from llmclf.analysis import calibration_metrics
    from llmclf.report import trust_rows

    scores = np.array(FEW_SCORES)
    logits = np.log(np.stack([1 - scores, scores], axis=1))
    calibration = fit_calibration(logits, FEW_LABELS)
    assert (calibration.threshold, calibration.threshold_p_value) == (0.5, 0.25)  # T keeps 0.5 where it is
    assert calibration.to_record(temperature_in_head=True)["threshold_p_value"] == 0.25
    metrics = calibration_metrics(np.array(FEW_LABELS), logits, calibration)
    assert metrics["threshold_p_value"] == 0.25
    row = dict(trust_rows(metrics))["decision threshold (tuned for accuracy)"]
    assert row.endswith("(no cut's gain over 0.5 was significant on validation: p = 0.25, sign test)")
    f1 = fit_calibration(logits, FEW_LABELS, "f1")
    assert f1.threshold_p_value is None
    assert not dict(trust_rows(calibration_metrics(np.array(FEW_LABELS), logits, f1)))[
        "decision threshold (tuned for f1)"].endswith(")")


def test_threshold_ties_keep_half_and_bad_objectives_are_refused():
    # perfectly separated: every cut between 0.2 and 0.8 is right, so the argmax rule (0.5) stays
    assert tune_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]).threshold == 0.5
    with pytest.raises(ValueError, match="objective"):
        tune_threshold([0, 1], [0.2, 0.8], "balanced")
    with pytest.raises(ValueError, match="target_recall"):
        tune_threshold([0, 1], [0.2, 0.8], "recall")
    with pytest.raises(ValueError, match="target_precision"):
        tune_threshold([0, 1], [0.2, 0.8], "precision")


def test_fit_calibration_applies_temperature_before_the_threshold():
    logits, labels = logits_and_labels(k=2, seed=4)
    logits[:, 1] -= 1.0  # biased against label 1
    calibration = fit_calibration(logits, labels, "f1")
    probs = softmax(logits / calibration.temperature)
    assert calibration.temperature == pytest.approx(fit_temperature(logits, labels))
    assert calibration.threshold == pytest.approx(tune_threshold(labels, probs[:, 1], "f1").threshold)
    assert fit_calibration(*logits_and_labels(k=3)).threshold is None
    assert np.array_equal(decisions(probs, None), probs.argmax(axis=1))


def reference_coverage(confidence, correct, target):
    best = (0.0, None)
    for cut in np.unique(confidence):
        kept = confidence >= cut
        if accuracy_score(np.ones(kept.sum()), correct[kept]) >= target and kept.mean() > best[0]:
            best = (kept.mean(), cut)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_risk_coverage_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.random(300).round(2)
    correct = rng.random(300) < 0.6 + 0.4 * confidence
    curve = risk_coverage(confidence, correct)
    for coverage, risk, cut in zip(curve["coverage"], curve["risk"], curve["min_confidence"]):
        kept = confidence >= cut
        assert coverage == pytest.approx(kept.mean()) and risk == pytest.approx(1 - correct[kept].mean())
    for target in (0.99, 0.98, 0.9):
        coverage, cut = coverage_at_accuracy(confidence, correct, target)
        expected = reference_coverage(confidence, correct, target)
        assert coverage == pytest.approx(expected[0]) and cut == expected[1]


def test_coverage_when_no_share_reaches_the_target():
    assert coverage_at_accuracy([0.9, 0.8], [False, True], 0.99) == (0.0, None)
    assert coverage_at_accuracy([0.9, 0.9], [True, True], 0.99) == (1.0, 0.9)


# --- models: the head carries the temperature; config.json or calibration.json carries the rest ---------------

def test_scale_head_divides_the_logits(tiny_classifier_dir):
    import torch

    from llmclf.models import add_lora, load_backbone, load_classifier

    model, tokenizer = load_classifier(str(tiny_classifier_dir))
    batch = tokenizer(["a fine film", "dull"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits
        assert scale_head(model, 2.5)
        assert torch.allclose(model(**batch).logits, before / 2.5, atol=1e-6)
    lora, _ = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    lora = add_lora(lora).eval()
    with torch.no_grad():
        before = lora(**batch).logits
        assert scale_head(lora, 0.5)
        assert torch.allclose(lora(**batch).logits, before / 0.5, atol=1e-5)


def test_scale_head_refuses_a_head_that_is_not_one_linear_layer():
    import torch
    from types import SimpleNamespace

    model = torch.nn.Module()
    model.config = SimpleNamespace(num_labels=2)
    model.score = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    weights = [p.clone() for p in model.parameters()]
    assert not scale_head(model, 2.0)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_calibration_in_config_json_is_applied_by_predict(tiny_classifier_dir, tmp_path, capsys):
    import shutil

    from transformers import AutoModelForSequenceClassification

    from llmclf.predict import Classifier

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_classifier_dir, model_dir)
    base = Classifier.from_pretrained(str(model_dir))
    texts = ["a fine film", "dull and long", "superb", "awful"]
    p1 = base.predict_proba(texts)[:, 1]
    threshold = float(np.sort(p1)[1] + np.sort(p1)[2]) / 2  # two texts on each side
    assert save_calibration(model_dir, Calibration(2.0, threshold), temperature_in_head=False).name == "config.json"
    assert read_calibration(model_dir)["temperature"] == 2.0
    AutoModelForSequenceClassification.from_pretrained(model_dir)  # still a plain model directory
    calibrated = Classifier.from_pretrained(str(model_dir))
    assert calibrated.temperature == 2.0 and calibrated.threshold == threshold
    logits, _ = base.window_logits(texts)
    probs = calibrated.predict_proba(texts)
    assert np.allclose(probs, softmax(logits / 2.0), atol=1e-6)
    assert calibrated.predict(texts) == [["neg", "pos"][int(p >= threshold)] for p in probs[:, 1]]
    assert Classifier.from_pretrained(str(model_dir), threshold=0.999).predict(texts) == ["neg"] * 4  # overridable
    # the CLI: --threshold overrides, --min-confidence adds a needs_review/ok column and keeps the label
    assert main(["predict", "--model", str(model_dir), "--min-confidence", "1.0", *texts]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [line[2] for line in lines] == ["needs_review"] * 4 and [line[3] for line in lines] == texts
    assert [line[0] for line in lines] == calibrated.predict(texts)
    assert main(["predict", "--model", str(model_dir), "--threshold", "0.001", *texts]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [line[0] for line in lines] == ["pos"] * 4 and [line[2] for line in lines] == texts
    assert main(["predict", "--model", str(model_dir), "--threshold", "1.5", "x"]) == 2


def test_adapter_calibration_json_is_read_by_from_pretrained(tmp_path):
    import yaml

    from llmclf.models import add_lora, load_backbone, save_classifier
    from llmclf.predict import Classifier

    out = tmp_path / "adapter"
    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"}, seed=42)
    save_classifier(add_lora(model), tokenizer, out, merge=False)
    (out / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "label_names": ["neg", "pos"],
                                                            "seed": 42, "max_length": 64}))
    path = save_calibration(out, Calibration(1.7, 0.3, "f1"), temperature_in_head=True)
    assert path.name == "calibration.json" and not (out / "config.json").exists()
    assert json.loads(path.read_text())["fitted_temperature"] == 1.7
    classifier = Classifier.from_pretrained(str(out))
    assert classifier.threshold == 0.3 and classifier.temperature == 1.0  # the head carries the temperature


def test_train_args_validate_threshold_settings():
    from llmclf import calibration, config
    from llmclf.config import TrainArgs

    assert config.THRESHOLD_OBJECTIVES == calibration.THRESHOLD_OBJECTIVES
    assert TrainArgs(threshold_objective="precision", target_precision=0.95).target_precision == 0.95
    assert TrainArgs(threshold_objective="recall", target_recall=0.9).target_recall == 0.9
    for kwargs, match in (({"threshold_objective": "recal"}, "--threshold-objective must be one of"),
                          ({"threshold_objective": "recall"}, "recall and --target-recall go together"),
                          ({"target_recall": 0.9}, "go together"),
                          ({"threshold_objective": "recall", "target_recall": 0},
                           r"--target-recall must be in \(0, 1\]"),
                          ({"threshold_objective": "precision"}, "go together"),
                          ({"target_precision": 0.9}, "go together"),
                          ({"threshold_objective": "precision", "target_precision": 1.5}, r"must be in \(0, 1\]")):
        with pytest.raises(UserError, match=match):
            TrainArgs(**kwargs)


def test_reliability_and_risk_coverage_plots(tmp_path):
    from llmclf.plots import plot_reliability, plot_risk_coverage

    logits, labels = logits_and_labels()
    t = fit_temperature(logits, labels)
    probs = softmax(logits / t)
    paths = [plot_reliability(labels, softmax(logits), probs, tmp_path / "reliability.png", temperature=t),
             plot_risk_coverage(probs.max(axis=1), probs.argmax(axis=1) == labels, tmp_path / "risk_coverage.png"),
             plot_risk_coverage([0.9, 0.8], [False, False], tmp_path / "never.png")]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_shipped_models_threshold_follows_the_rule_train_applies():
    """The shipped model was calibrated before the significance rule; bench/shipped_threshold.py rescored its
    validation reviews and saved the rule's choice. What predict applies, metrics.json and the card must agree."""
    record, metrics = read_calibration("imdb-sentiment"), read_metrics("imdb-sentiment")["validation"]
    assert record["threshold_objective"] == "accuracy" and record["threshold_p_value"] is not None
    assert record["threshold"] == 0.5 or record["threshold_p_value"] < THRESHOLD_SIGNIFICANCE
    assert (metrics["threshold"], metrics["threshold_p_value"]) == (record["threshold"], record["threshold_p_value"])
    card = (model_dir("imdb-sentiment") / "README.md").read_text()
    assert f"| {record['threshold']:.4f} (" in card and f"p = {record['threshold_p_value']:.2g}, sign test" in card
