"""Multi-label and regression models at inference: Classifier, `llmclf predict` (texts and files) and `check`.

The models are tiny random Llamas saved with a problem_type and an llmclf record (tests/typed_models.py), so the
decision rules are checked against the model's own logits, not against trained behaviour.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import user_error
from llmclf.cli import main
from llmclf.errors import UserError
from llmclf.models import tiny_random_llama
from llmclf.predict import Classifier
from llmclf.scoring import score_file
from typed_models import MULTI_LABELS, REGRESSION_RECORD, multi_label_dir, regression_dir

TEXTS = ["a wonderful action film", "a dull drama", "funny comedy lol", "the war movie", "",
         " ".join(f"scene{i}" for i in range(300))]  # the last is several windows with truncation="chunks"
# The saved thresholds of typed_models.MULTI_RECORD, with drama's missing one at 0.5.
SAVED_THRESHOLDS = np.array([0.45, 0.55, 0.5])


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory):
    return multi_label_dir(tmp_path_factory.mktemp("typed"))


@pytest.fixture(scope="module")
def regression_model_dir(tmp_path_factory):
    return regression_dir(tmp_path_factory.mktemp("typed"))


@pytest.fixture(scope="module")
def multi(multi_dir):
    return Classifier.from_pretrained(str(multi_dir), batch_size=2)


@pytest.fixture(scope="module")
def regression(regression_model_dir):
    return Classifier.from_pretrained(str(regression_model_dir), batch_size=2)


def direct_window_outputs(classifier, text) -> torch.Tensor:
    """The model's raw outputs for each of the text's windows, one forward pass per window."""
    with torch.inference_mode():
        return torch.cat([classifier.model(input_ids=torch.tensor([w])).logits for w in classifier._encode(text)])


# --- multi-label -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("truncation", ["head", "chunks"])
def test_multi_label_probs_are_sigmoids_of_the_logits(multi_dir, truncation):
    clf = Classifier.from_pretrained(str(multi_dir), truncation=truncation, batch_size=3)
    assert clf.problem_type == "multi_label_classification" and clf.labels == list(MULTI_LABELS.values())
    expected = np.stack([torch.sigmoid(direct_window_outputs(clf, t)).mean(dim=0).numpy() for t in TEXTS])
    probs = clf.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), 3) and np.allclose(probs, expected, atol=1e-5)
    assert not np.allclose(probs.sum(axis=1), 1)  # independent per label, not a softmax
    assert (len(clf._encode(TEXTS[-1])) > 1) == (truncation == "chunks")
    assert np.allclose(clf.predict_proba(TEXTS[0]), probs[0], atol=1e-6)
    # The temperature is single-label calibration: it leaves sigmoid probabilities alone.
    hot = Classifier.from_pretrained(str(multi_dir), truncation=truncation, temperature=3.0)
    assert np.allclose(hot.predict_proba(TEXTS), probs, atol=1e-5)


def test_per_label_thresholds_choose_the_labels(multi):
    probs = multi.predict_proba(TEXTS)
    assert np.allclose(multi.thresholds, SAVED_THRESHOLDS)
    chosen = probs >= SAVED_THRESHOLDS
    assert chosen.any() and not chosen.all()  # the rule is exercised both ways
    expected = [[MULTI_LABELS[i] for i in np.flatnonzero(row)] for row in chosen]
    assert multi.predict(TEXTS) == expected
    assert multi.predict(TEXTS[1]) == expected[1]  # a single string: its list alone
    for record, row, labels in zip(multi.classify(TEXTS), probs, expected):
        assert record["labels"] == labels and record["needs_review"] is False
        assert record["score"] == pytest.approx(row.max())
        assert record["probs"] == pytest.approx(dict(zip(MULTI_LABELS.values(), row)))


def test_threshold_overrides_every_label(multi_dir, multi):
    probs = multi.predict_proba(TEXTS)
    for threshold in (0.5, 0.52):
        clf = Classifier.from_pretrained(str(multi_dir), threshold=threshold)
        assert np.allclose(clf.thresholds, threshold)
        assert clf.predict(TEXTS) == [[MULTI_LABELS[i] for i in np.flatnonzero(r >= threshold)] for r in probs]


def test_multi_label_needs_review_when_a_decision_is_unsure(multi_dir, multi):
    probs = multi.predict_proba(TEXTS)
    sure = np.maximum(probs, 1 - probs).min(axis=1)
    bar = float(np.median(sure))
    clf = Classifier.from_pretrained(str(multi_dir), min_confidence=bar)
    assert [r["needs_review"] for r in clf.classify(TEXTS)] == (sure < bar).tolist()


def test_threshold_still_refused_for_single_label_multiclass():
    model, tokenizer = tiny_random_llama({0: "a", 1: "b", 2: "c"})
    user_error("--threshold applies to binary classifiers only", Classifier, model, tokenizer, threshold=0.5)
    model.config.problem_type = "multi_label_classification"
    assert np.allclose(Classifier(model, tokenizer, threshold=0.5, device="cpu").thresholds, 0.5)


# --- regression --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("truncation", ["head", "chunks"])
def test_regression_values_are_destandardised_model_outputs(regression_model_dir, truncation):
    clf = Classifier.from_pretrained(str(regression_model_dir), truncation=truncation)
    assert clf.problem_type == "regression" and clf.labels == ["rating"]
    raw = np.array([direct_window_outputs(clf, t)[:, 0].mean().item() for t in TEXTS])
    expected = raw * REGRESSION_RECORD["target_std"] + REGRESSION_RECORD["target_mean"]
    values = clf.predict(TEXTS)
    assert isinstance(values, list) and all(isinstance(v, float) for v in values)
    assert np.allclose(values, expected, atol=1e-5)
    assert clf.predict(TEXTS[0]) == pytest.approx(values[0], abs=1e-6)
    assert np.allclose(clf.predict_values(TEXTS), values)
    halfwidth = REGRESSION_RECORD["interval"]["halfwidth"]
    for record, value in zip(clf.classify(TEXTS), values):
        assert record == pytest.approx({"value": value, "value_low": value - halfwidth,
                                        "value_high": value + halfwidth})


def test_regression_without_scale_or_interval_is_the_raw_output(tmp_path):
    model, tokenizer = tiny_random_llama({0: "score"}, seed=1)
    model.config.problem_type = "regression"
    clf = Classifier(model, tokenizer, max_length=64, device="cpu")
    raw, _ = clf.window_logits(TEXTS[:3])
    assert np.allclose(clf.predict(TEXTS[:3]), raw[:, 0], atol=1e-6)  # target_mean 0, target_std 1
    assert set(clf.classify(TEXTS[:1])[0]) == {"value"}


def test_regression_refuses_probabilities_and_decision_options(regression_model_dir, regression, multi):
    user_error("regression model, it outputs values, not probabilities; call predict", regression.predict_proba, TEXTS)
    user_error("predict_values is for regression models", multi.predict_values, TEXTS)
    for option, flag in (("threshold", "--threshold"), ("min_confidence", "--min-confidence")):
        user_error(f"{flag} is for classifiers; this is a regression model", Classifier.from_pretrained,
                   str(regression_model_dir), **{option: 0.5})


# --- file scoring ------------------------------------------------------------------------------------------


def write_table(frame, path):
    {".csv": lambda: frame.to_csv(path, index=False), ".jsonl": lambda: frame.to_json(path, orient="records",
     lines=True), ".parquet": lambda: frame.to_parquet(path)}[path.suffix]()


def read_table(path):
    return {".csv": lambda: pd.read_csv(path, dtype={"id": str}, keep_default_na=False),
            ".jsonl": lambda: pd.read_json(path, lines=True, dtype={"id": str}),
            ".parquet": lambda: pd.read_parquet(path)}[path.suffix]()


def input_frame():
    return pd.DataFrame({"id": [f"{i:03d}" for i in range(13)], "text": [TEXTS[i % len(TEXTS)] for i in range(13)]})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_multi_label_file_scoring(multi, tmp_path, suffix):
    frame = input_frame()
    write_table(frame, source := tmp_path / f"in{suffix}")
    assert score_file(multi, str(source), str(target := tmp_path / f"out{suffix}"), chunk_rows=4, progress=False) == 13
    scored = read_table(target)
    assert list(scored.columns) == ["id", "text", "labels", "prob_action", "prob_comedy", "prob_drama"]
    assert scored["id"].tolist() == frame["id"].tolist()
    probs = multi.predict_proba(frame["text"].tolist())
    assert np.allclose(scored[["prob_action", "prob_comedy", "prob_drama"]].to_numpy(), probs, atol=1e-5)
    expected = multi.predict(frame["text"].tolist())
    if suffix == ".csv":  # one cell, the labels joined by commas ("" for none)
        assert scored["labels"].tolist() == [",".join(labels) for labels in expected]
    else:  # a real list
        assert [list(labels) for labels in scored["labels"]] == expected
    if suffix == ".jsonl":  # four chunks, and no blank line between them
        assert len(target.read_text().splitlines()) == 13
    assert any(len(labels) > 1 for labels in expected) and not list(tmp_path.glob(".*partial"))


def test_csv_cells_join_labels_with_the_models_own_separator(multi_dir, tmp_path):
    """A model trained on "a|b" cells writes "a|b" cells: the scored CSV reads back with the same setting."""
    import shutil

    import yaml

    piped = tmp_path / "piped"
    shutil.copytree(multi_dir, piped)
    run = yaml.safe_load((piped / "llmclf_config.yaml").read_text())
    (piped / "llmclf_config.yaml").write_text(yaml.safe_dump({**run, "label_separator": "|"}))
    classifier = Classifier.from_pretrained(str(piped), batch_size=2)
    assert classifier.label_separator == "|" and Classifier.from_pretrained(str(multi_dir)).label_separator == ","
    write_table(frame := input_frame(), source := tmp_path / "in.csv")
    score_file(classifier, str(source), str(target := tmp_path / "out.csv"), progress=False)
    expected = classifier.predict(frame["text"].tolist())
    assert any(len(labels) > 1 for labels in expected)
    assert read_table(target)["labels"].tolist() == ["|".join(labels) for labels in expected]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_regression_file_scoring(regression, regression_model_dir, tmp_path, suffix):
    frame = input_frame()
    write_table(frame, source := tmp_path / f"in{suffix}")
    assert score_file(regression, str(source), str(target := tmp_path / f"out{suffix}"), chunk_rows=5,
                      progress=False) == 13
    scored = read_table(target)
    assert list(scored.columns) == ["id", "text", "value", "value_low", "value_high"]
    values = np.asarray(regression.predict(frame["text"].tolist()))
    assert np.allclose(scored["value"], values, atol=1e-5)
    assert np.allclose(scored["value_high"] - scored["value_low"], 2 * REGRESSION_RECORD["interval"]["halfwidth"])
    plain = Classifier.from_pretrained(str(regression_dir(tmp_path, interval=False)))
    score_file(plain, str(source), str(bare := tmp_path / f"bare{suffix}"), progress=False)
    assert list(read_table(bare).columns) == ["id", "text", "value"]


def test_scoring_refuses_columns_it_would_add(multi, regression, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a"], "labels": ["x"]}).to_csv(source, index=False)
    user_error("already has column.s. labels that scoring adds", score_file, multi, str(source),
               str(tmp_path / "out.csv"), progress=False)
    pd.DataFrame({"text": ["a"], "value_low": ["x"]}).to_csv(source, index=False)
    user_error("already has column.s. value_low", score_file, regression, str(source), str(tmp_path / "out.csv"),
               progress=False)


# --- the CLI -----------------------------------------------------------------------------------------------


def test_predict_cli_multi_label_and_threshold(multi_dir, multi, capsys):
    assert main(["predict", "--model", str(multi_dir), *TEXTS[:4]]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, text, labels, record in zip(lines, TEXTS, multi.predict(TEXTS[:4]), multi.classify(TEXTS[:4])):
        assert line == f"{','.join(labels)}\t{record['score']:.4f}\t{text}"
    assert main(["predict", "--model", str(multi_dir), "--threshold", "0.01", "--min-confidence", "0.9",
                 TEXTS[0]]) == 0
    assert capsys.readouterr().out == f"action,comedy,drama\t{multi.classify(TEXTS[:1])[0]['score']:.4f}" \
                                      f"\tneeds_review\t{TEXTS[0]}\n"


def test_predict_cli_regression(regression_model_dir, regression, capsys, tmp_path):
    assert main(["predict", "--model", str(regression_model_dir), *TEXTS[:2]]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, text, record in zip(lines, TEXTS, regression.classify(TEXTS[:2])):
        assert line == f"{record['value']:.4f}\t{record['value_low']:.4f}\t{record['value_high']:.4f}\t{text}"
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_table(input_frame(), source)
    assert main(["predict", "--model", str(regression_model_dir), "--input", str(source), "--output",
                 str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 13 and set(rows[0]) == {"id", "text", "value", "value_low", "value_high"}


@pytest.mark.parametrize("argv, message", [
    (["predict", "--threshold", "0.5", "hi"], "--threshold is for classifiers; this is a regression model"),
    (["predict", "--min-confidence", "0.5", "hi"], "--min-confidence is for classifiers"),
    (["serve", "--threshold", "0.5", "--port", "0"], "--threshold is for classifiers"),
    (["check"], "llmclf check runs sentiment checks on single-label classifiers"),
])
def test_cli_refusals_for_regression_are_one_line(regression_model_dir, capsys, argv, message):
    assert main([argv[0], "--model", str(regression_model_dir), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_check_refuses_a_multi_label_model(multi_dir, capsys):
    assert main(["check", "--model", str(multi_dir)]) == 2
    assert "is multi_label_classification: test it with `llmclf evaluate`" in capsys.readouterr().err


def test_single_label_model_unchanged(tiny_classifier_dir):
    clf = Classifier.from_pretrained(str(tiny_classifier_dir))
    assert clf.problem_type == "single_label_classification" and clf.thresholds is None and clf.scale is None
    assert set(clf.classify(["fine"])[0]) == {"label", "score", "probs", "needs_review"}
    with pytest.raises(UserError):
        clf.predict_values("fine")
