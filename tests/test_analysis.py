"""Error analysis and per-split calibration numbers against scikit-learn on fixed arrays; rating look-up; the
entry point's files; and a tiny-model train -> evaluate run with noisy labels, so the temperature is not 1."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_score, recall_score

from conftest import SENTIMENT, keyword_rows
from llmclf.analysis import (ScoredSplit, calibration_metrics, error_analysis, lookup_ratings, snippet, split_metrics,
                             write_analysis)
from llmclf.calibration import Calibration, expected_calibration_error, fit_calibration, fit_temperature
from llmclf.cli import main
from llmclf.metrics import softmax

NAMES = {0: "neg", 1: "pos"}
NEWS = {0: "business", 1: "sports", 2: "tech"}


def arrays(n=200, k=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = 2.5 * (rng.normal(size=(n, k)) + 1.0 * np.eye(k)[labels])
    texts = [" ".join(["word"] * int(m)) + f" text {i}" for i, m in enumerate(rng.integers(1, 60, n))]
    return texts, labels, logits


def test_calibration_metrics_agree_with_sklearn():
    texts, labels, logits = arrays()
    calibration = fit_calibration(logits, labels, "f1")
    m = calibration_metrics(labels, logits, calibration)
    probs = softmax(logits / calibration.temperature)
    chosen = (probs[:, 1] >= calibration.threshold).astype(int)
    at = m["at_threshold"]
    assert at["accuracy"] == pytest.approx(accuracy_score(labels, chosen))
    assert at["precision"] == pytest.approx(precision_score(labels, chosen))
    assert at["recall"] == pytest.approx(recall_score(labels, chosen))
    assert at["f1"] == pytest.approx(f1_score(labels, chosen))
    assert at["f1_macro"] == pytest.approx(f1_score(labels, chosen, average="macro"))
    assert m["loss_uncalibrated"] == pytest.approx(log_loss(labels, softmax(logits)))
    assert m["ece"] == pytest.approx(expected_calibration_error(labels, softmax(logits)))
    assert m["ece_calibrated"] < m["ece"]
    assert (m["temperature"], m["threshold"], m["threshold_objective"]) == (calibration.temperature,
                                                                            calibration.threshold, "f1")
    # coverage at 98% accuracy: the kept share, re-derived from the cut-off
    cut = m["min_confidence_at_98_accuracy"]
    kept = probs.max(axis=1) >= cut
    assert m["coverage_at_98_accuracy"] == pytest.approx(kept.mean())
    assert accuracy_score(labels[kept], chosen[kept]) >= 0.98
    full = split_metrics(ScoredSplit("validation", texts, labels, logits), NAMES, calibration)
    assert full["loss"] == pytest.approx(log_loss(labels, probs)) and full["accuracy"] == accuracy_score(
        labels, probs.argmax(axis=1))


def test_multiclass_has_no_threshold():
    texts, labels, logits = arrays(k=3)
    m = split_metrics(ScoredSplit("test", texts, labels, logits), NEWS, fit_calibration(logits, labels))
    assert m["threshold"] is None and m["at_threshold"] is None and m["threshold_objective"] is None
    assert len(m["confusion_matrix"]) == 3


@pytest.mark.parametrize("k,threshold", [(2, 0.7), (3, None)])
def test_error_analysis_against_reference(k, threshold):
    texts, labels, logits = arrays(k=k, seed=k)
    names = NAMES if k == 2 else NEWS
    ratings = [int(r) for r in np.random.default_rng(5).integers(1, 6, len(texts))]
    ratings[0] = None
    calibration = Calibration(1.3, threshold)
    records = error_analysis(ScoredSplit("test", texts, labels, logits, ratings), names, calibration)
    probs = softmax(logits / 1.3)
    chosen = (probs[:, 1] >= threshold).astype(int) if threshold else probs.argmax(axis=1)
    by_kind = {kind: [r for r in records if r["kind"] == kind]
               for kind in ("mistake", "length_bucket", "rating", "confused_pair")}
    assert len(records) == sum(map(len, by_kind.values()))

    wrong = np.flatnonzero(chosen != labels)
    surest = sorted(wrong, key=lambda i: -probs[i, chosen[i]])[:20]
    assert [r["index"] for r in by_kind["mistake"]] == [int(i) for i in surest]
    first = by_kind["mistake"][0]
    assert first["label"] == names[labels[surest[0]]] and first["predicted"] == names[chosen[surest[0]]]
    assert first["text"] == snippet(texts[surest[0]])
    assert first["confidence"] == pytest.approx(probs[surest[0], chosen[surest[0]]])

    words = np.array([len(t.split()) for t in texts])
    assert sum(r["n"] for r in by_kind["length_bucket"]) == len(texts)
    for r in by_kind["length_bucket"]:
        inside = (words >= r["min_words"]) & (words <= r["max_words"])
        assert r["n"] == inside.sum()
        assert r["accuracy"] == pytest.approx(accuracy_score(labels[inside], chosen[inside]))
        assert r["f1_macro"] == pytest.approx(f1_score(labels[inside], chosen[inside], average="macro"))
    assert 2 <= len(by_kind["length_bucket"]) <= 4

    assert [r["rating"] for r in by_kind["rating"]] == [1, 2, 3, 4, 5]
    for r in by_kind["rating"]:
        inside = np.array([x == r["rating"] for x in ratings])
        assert r["n"] == inside.sum() and r["accuracy"] == pytest.approx(accuracy_score(labels[inside], chosen[inside]))

    cm = confusion_matrix(labels, chosen, labels=list(range(k)))
    expected = sorted(((cm[i, j], i, j) for i in range(k) for j in range(k) if i != j and cm[i, j]),
                      key=lambda c: (-c[0], c[1], c[2]))
    assert [(r["count"], r["label"], r["predicted"]) for r in by_kind["confused_pair"]] == [
        (int(n), names[i], names[j]) for n, i, j in expected]
    assert by_kind["confused_pair"][0]["share_of_label"] == pytest.approx(expected[0][0] / cm[expected[0][1]].sum())


def test_snippet():
    assert snippet("one<br />two\n\nthree") == "one two three"
    long = snippet("x" * 1000)
    assert len(long) == 300 and long.endswith("…")


def test_ratings_are_found_by_text(tmp_path):
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 1], "rating": [2, 9, None]})
    for suffix, write in ((".csv", lambda p: frame.to_csv(p, index=False)),
                          (".jsonl", lambda p: frame.to_json(p, orient="records", lines=True)),
                          (".parquet", lambda p: frame.to_parquet(p))):
        path = tmp_path / f"data{suffix}"
        write(path)
        assert lookup_ratings(str(path), "text", ["c", "b", "a", "unknown"]) == [None, 9, 2, None], suffix
    frame.drop(columns="rating").to_csv(tmp_path / "plain.csv", index=False)
    assert lookup_ratings(str(tmp_path / "plain.csv"), "text", ["a"]) is None
    assert lookup_ratings("imdb", "text", ["a"]) is None and lookup_ratings(None, "text", ["a"]) is None
    for label, name, text in (("pos", "0_9.txt", "great"), ("neg", "1_2.txt", "bad")):
        (tmp_path / "acl" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "acl" / label / name).write_text(text)
    assert lookup_ratings(str(tmp_path / "acl"), "text", ["bad", "great"]) == [2, 9]


def test_write_analysis_writes_every_file(tmp_path):
    from test_behaviour import KeywordClassifier

    texts, labels, logits = arrays()
    calibration = fit_calibration(logits[:100], labels[:100])
    parts = [ScoredSplit("validation", texts[:100], labels[:100], logits[:100]), ScoredSplit("test", texts[100:], labels[100:],
                                                                               logits[100:])]
    result = write_analysis(tmp_path, parts, NAMES, calibration, classifier=KeywordClassifier(),
                            run={"title": "arrays"})
    assert set(result.metrics) == {"validation", "test"} and result.split == "test"
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"confusion_matrix.png", "roc.png", "reliability.png",
                                                                "risk_coverage.png"}
    records = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert records == result.errors and all(r["split"] == "test" for r in records)
    assert json.loads((tmp_path / "behaviour.json").read_text()) == result.behaviour
    assert result.report == tmp_path / "report.html" and "<h1>arrays</h1>" in result.report.read_text()
    # not sentiment: no behaviour checks; figure_dir=False keeps the two new figures in the report only
    other = tmp_path / "other"
    other.mkdir()
    result = write_analysis(other, parts[1:], {0: "ham", 1: "spam"}, calibration, classifier=KeywordClassifier(),
                            figure_dir=False)
    assert result.behaviour is None and not (other / "behaviour.json").exists()
    assert {p.name for p in (other / "plots").iterdir()} == {"confusion_matrix.png", "roc.png"}
    assert (other / "report.html").read_text().count("data:image/png;base64,") == 4


# --- a real tiny run ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """Binary sentiment where 15% of the labels are flipped, so the model makes mistakes on validation data
    and the fitted temperature is not 1."""
    root = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(0)
    rows = []
    for i, row in enumerate(keyword_rows(SENTIMENT, 200, seed=3)):
        label = row["label"] if rng.random() > 0.15 else ("pos" if row["label"] == "neg" else "neg")
        rows.append({"text": row["text"], "label": label, "stars": 1 + i % 5})
    pd.DataFrame(rows).to_csv(root / "noisy.csv", index=False)
    out = root / "run"
    assert main(["train", "--data", str(root / "noisy.csv"), "--test-data", str(root / "noisy.csv"), "--output",
                 str(out), "--model", "tiny-random-llama", "--epochs", "3", "--learning-rate", "3e-3",
                 "--threshold-objective", "f1"]) == 0
    return out, root / "noisy.csv"


def validation_texts_and_labels(out):
    from llmclf.config import resolve_train_args
    from llmclf.train import load_splits

    splits = load_splits(resolve_train_args(config=out / "llmclf_config.yaml"))
    return splits.validation.texts, np.array(splits.validation.labels)


@pytest.mark.slow
def test_train_saves_calibration_with_the_model(noisy_run):
    from transformers import pipeline

    from llmclf.predict import Classifier

    out, _ = noisy_run
    results = json.loads((out / "metrics.json").read_text())
    assert set(results) == {"validation", "test", "training"}
    validation = results["validation"]
    for key in ("ece", "ece_calibrated", "temperature", "threshold", "coverage_at_99_accuracy",
                "coverage_at_98_accuracy", "at_threshold", "loss_uncalibrated"):
        assert key in validation and key in results["test"], key
    assert validation["accuracy"] < 1.0 and validation["temperature"] != 1.0
    assert validation["loss"] <= validation["loss_uncalibrated"] + 1e-9  # T minimises validation NLL
    saved = json.loads((out / "config.json").read_text())["llmclf"]
    assert saved["fitted_temperature"] == pytest.approx(validation["temperature"])
    assert saved["temperature_in_head"] is True and "temperature" not in saved
    assert saved["threshold"] == validation["threshold"] and saved["threshold_objective"] == "f1"

    texts, labels = validation_texts_and_labels(out)
    classifier = Classifier.from_pretrained(str(out))
    assert classifier.threshold == validation["threshold"] and classifier.temperature == 1.0
    probs = classifier.predict_proba(texts)
    # the saved model gives the calibrated probabilities: refitting on the same data finds nothing to change
    logits, _ = classifier.window_logits(texts)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.01)
    assert log_loss(labels, probs, labels=[0, 1]) == pytest.approx(validation["loss"], abs=1e-4)
    assert expected_calibration_error(labels, probs) == pytest.approx(validation["ece_calibrated"], abs=1e-4)
    # ... and so does plain transformers, since the head carries the temperature
    answers = pipeline("text-classification", model=str(out))(texts[:8])
    assert [a["score"] for a in answers] == pytest.approx(probs[:8].max(axis=1).tolist(), abs=1e-4)


@pytest.mark.slow
def test_train_writes_errors_behaviour_report_and_card(noisy_run):
    out, _ = noisy_run
    for name in ("errors.jsonl", "behaviour.json", "report.html", "plots/reliability.png", "plots/risk_coverage.png"):
        assert (out / name).is_file(), name
    test = json.loads((out / "metrics.json").read_text())["test"]
    records = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    mistakes = [r for r in records if r["kind"] == "mistake"]
    n_wrong = round((1 - test["at_threshold"]["accuracy"]) * test["n"])
    assert len(mistakes) == min(20, n_wrong) > 0
    assert [r["rating"] for r in records if r["kind"] == "rating"] == [1, 2, 3, 4, 5]  # from the stars column
    behaviour = json.loads((out / "behaviour.json").read_text())
    assert behaviour["labels"] == {"negative": "neg", "positive": "pos"} and len(behaviour["checks"]) == 6
    card = (out / "README.md").read_text()
    for heading in ("## Calibration, decision threshold and abstention", "## Error analysis", "## Behaviour checks"):
        assert heading in card
    assert "plots/reliability.png" in card and "plots/risk_coverage.png" in card
    report = (out / "report.html").read_text()
    for anchor in ("summary", "results", "calibration", "threshold", "abstention", "errors", "behaviour", "history"):
        assert f'id="{anchor}"' in report


@pytest.mark.slow
def test_evaluate_uses_the_saved_calibration(noisy_run, tmp_path):
    from llmclf.predict import Classifier

    out, data = noisy_run
    target = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--output", str(target)]) == 0
    metrics = json.loads((target / "metrics.json").read_text())["test"]
    trained = json.loads((out / "metrics.json").read_text())["test"]  # the same file was the run's test data
    for key in ("accuracy", "loss", "ece", "ece_calibrated", "temperature", "threshold", "coverage_at_99_accuracy"):
        assert metrics[key] == pytest.approx(trained[key], abs=1e-4), key
    frame = pd.read_csv(data)
    classifier = Classifier.from_pretrained(str(out))
    probs = classifier.predict_proba(frame["text"].tolist())
    labels = (frame["label"] == "pos").to_numpy().astype(int)
    assert metrics["ece_calibrated"] == pytest.approx(expected_calibration_error(labels, probs), abs=1e-6)
    assert metrics["at_threshold"]["accuracy"] == pytest.approx(
        accuracy_score(labels, classifier.decide(probs)))
    for name in ("errors.jsonl", "behaviour.json", "report.html"):
        assert (target / name).is_file(), name
    assert (target / "report.html").read_text().count("data:image/png;base64,") == 4
