"""Behaviour checks: the sentiment rule, the generated cases, pass rates against a reference computation with a
rule-based stand-in classifier, a real tiny model, and `llmclf check`."""

import json

import numpy as np
import pytest

from llmclf.behaviour import (CASES_PER_CHECK, DIR_TOLERANCE, NEGATIVE, POSITIVE, build_cases, run_checks,
                              sentiment_labels)
from llmclf.cli import main
from llmclf.errors import UserError


class KeywordClassifier:
    """Positive exactly when a positive word occurs and 'not' does not (or a negative word is negated);
    p(positive) grows with the number of intensifiers, so DIR checks have something to measure."""

    def __init__(self, id2label=None, threshold=None):
        self.id2label = id2label or {0: "neg", 1: "pos"}
        self.threshold = threshold

    def score(self, text: str) -> float:
        words = text.lower().replace(".", " ").replace(",", " ").split()
        positive = any(w in POSITIVE for w in words)
        negative = any(w in NEGATIVE for w in words)
        if "not" in words:
            positive, negative = negative, positive
        boost = 0.1 * sum(w in ("very", "really", "extremely") for w in words)
        if positive and not negative:
            return min(0.99, 0.8 + boost)
        if negative and not positive:
            return max(0.01, 0.2 - boost)
        return 0.5

    def predict_proba(self, texts):
        p = np.array([self.score(t) for t in texts])
        return np.stack([1 - p, p], axis=1)

    def decide(self, probs):
        return (probs[:, 1] >= (self.threshold or 0.5)).astype(np.int64)


def test_sentiment_rule():
    assert sentiment_labels({0: "neg", 1: "pos"}) == (0, 1)
    assert sentiment_labels({"0": "Negative", "1": "Positive"}) == (0, 1)
    assert sentiment_labels({0: "good", 1: "bad"}) == (1, 0)
    for labels in ({0: "0", 1: "1"}, {0: "spam", 1: "ham"}, {0: "neg", 1: "neutral", 2: "pos"}, {0: "neg", 1: "negative"}):
        assert sentiment_labels(labels) is None


def test_cases_are_fixed_sized_and_edits_change_the_text():
    checks = build_cases()
    assert [c["name"] for c in checks] == ["negation", "intensifiers", "sarcasm", "neutral_filler",
                                           "names_and_places", "typos"]
    assert checks == build_cases()  # the same texts every run
    for check in checks:
        assert len(check["cases"]) == CASES_PER_CHECK
        for case in check["cases"]:
            if "edited" in case:
                assert case["edited"] != case["text"]
            if check["kind"] != "INV":
                assert case["expected"] in ("negative", "positive")
    typos = checks[-1]["cases"]
    for case in typos:  # one word, two neighbouring letters swapped
        a, b = case["text"].split(" "), case["edited"].split(" ")
        (i,) = [i for i in range(len(a)) if a[i] != b[i]]
        assert sorted(a[i]) == sorted(b[i]) and sum(x != y for x, y in zip(a[i], b[i])) == 2


def reference_pass_rates(classifier) -> dict[str, float]:
    """The pass rate of every check, computed text by text."""
    names = {"negative": "neg", "positive": "pos"}
    label = lambda t: classifier.id2label[int(classifier.decide(classifier.predict_proba([t]))[0])]
    rates = {}
    for check in build_cases():
        passed = 0
        for case in check["cases"]:
            if check["kind"] == "MFT":
                passed += label(case["text"]) == names[case["expected"]]
            elif check["kind"] == "INV":
                passed += label(case["text"]) == label(case["edited"])
            else:
                column = 1 if case["expected"] == "positive" else 0
                before = classifier.predict_proba([case["text"]])[0, column]
                after = classifier.predict_proba([case["edited"]])[0, column]
                passed += after >= before - DIR_TOLERANCE
        rates[check["name"]] = passed / len(check["cases"])
    return rates


@pytest.mark.parametrize("threshold", [None, 0.9])
def test_pass_rates_match_the_reference(threshold):
    classifier = KeywordClassifier(threshold=threshold)
    report = run_checks(classifier)
    rates = {c["name"]: c["pass_rate"] for c in report["checks"]}
    assert rates == pytest.approx(reference_pass_rates(classifier))
    assert report["labels"] == {"negative": "neg", "positive": "pos"}
    assert report["n"] == 6 * CASES_PER_CHECK
    assert report["pass_rate"] == pytest.approx(sum(c["passed"] for c in report["checks"]) / report["n"])
    json.dumps(report)  # JSON-ready
    if threshold is None:
        # the keyword rule gets negation right and sarcasm (positive words) wrong
        assert rates["negation"] == 1.0 and rates["sarcasm"] < 0.5 and rates["names_and_places"] == 1.0
    for check in report["checks"]:
        assert len(check["failures"]) == min(5, check["n"] - check["passed"])


def test_labels_that_are_not_sentiment_need_names():
    classifier = KeywordClassifier({0: "bad_review", 1: "good_review"})
    with pytest.raises(UserError, match="--negative-label and --positive-label"):
        run_checks(classifier)
    with pytest.raises(UserError, match="among the model's labels"):
        run_checks(classifier, negative="bad_review", positive="nope")
    report = run_checks(classifier, negative="bad_review", positive="good_review")
    assert report["labels"] == {"negative": "bad_review", "positive": "good_review"}


class ConstantClassifier(KeywordClassifier):
    """p(positive) = 0.8 for every text: each check's pass count follows from its cases' expected labels alone."""

    def score(self, text: str) -> float:
        return 0.8


# Negation cases expect negative and positive in turn (6 each of 12); sarcasm cases all expect negative; a model
# that never changes its answer passes every DIR (intensifiers) and INV (filler, names, typos) case.
ALWAYS_POSITIVE = {"negation": 6, "intensifiers": 12, "sarcasm": 0, "neutral_filler": 12, "names_and_places": 12,
                   "typos": 12}
ALWAYS_NEGATIVE = {**ALWAYS_POSITIVE, "sarcasm": 12}


@pytest.mark.parametrize("threshold, expected", [(None, ALWAYS_POSITIVE), (0.9, ALWAYS_NEGATIVE)],
                         ids=["always-positive", "always-negative"])
def test_exact_pass_counts_for_a_classifier_that_never_changes_its_answer(threshold, expected):
    report = run_checks(ConstantClassifier(threshold=threshold))
    assert {c["name"]: c["passed"] for c in report["checks"]} == expected
    assert {c["name"]: c["pass_rate"] for c in report["checks"]} == {k: v / 12 for k, v in expected.items()}
    assert report["passed"] == sum(expected.values()) and report["pass_rate"] == sum(expected.values()) / 72
    assert [len(c["failures"]) for c in report["checks"]] == [min(5, 12 - v) for v in expected.values()]


def test_checks_on_a_tiny_model_and_the_cli(tiny_classifier_dir, tmp_path, capsys):
    from llmclf.predict import Classifier

    classifier = Classifier.from_pretrained(str(tiny_classifier_dir))
    calls = []
    predict_proba = classifier.predict_proba
    classifier.predict_proba = lambda texts: calls.append(list(texts)) or predict_proba(texts)
    report = run_checks(classifier)
    # What keeps the checks cheap enough to run after every training (timed in bench/behaviour_time.py): one
    # batched call over the distinct texts, never a call per case.
    distinct = {t for check in build_cases() for case in check["cases"] for t in (case["text"], case.get("edited"))}
    assert len(calls) == 1 and sorted(calls[0]) == sorted(distinct - {None}) and len(calls[0]) == len(set(calls[0]))
    rates = {c["name"]: c["pass_rate"] for c in report["checks"]}
    assert rates == pytest.approx(reference_pass_rates(classifier))
    out = tmp_path / "behaviour.json"
    assert main(["check", "--model", str(tiny_classifier_dir), "--output", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [c["name"] for c in report["checks"]] + ["all"]
    assert json.loads(out.read_text())["checks"] == report["checks"]  # deterministic
    assert main(["check", "--model", str(tiny_classifier_dir), "--output", str(out)]) == 2  # exists
    assert main(["check", "--model", str(tiny_classifier_dir), "--negative-label", "neg"]) == 2
    assert "--positive-label" in capsys.readouterr().err
