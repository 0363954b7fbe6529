"""`llmclf evaluate` of multi-label and regression models (llmclf.type_eval) on tiny random models saved as
training saves them (tests/typed_models.py): where the labels are read from, the forms multi-label labels take,
the metrics against the model's own outputs, and the user mistakes. That evaluating a trained model on its
validation rows reproduces its metrics.json is tests/test_problem_types_e2e.py's."""

import numpy as np
import pandas as pd
import pytest

from helpers import user_error
from llmclf.cli import main
from llmclf.evaluate import evaluate
from llmclf.multilabel import multilabel_metrics
from llmclf.predict import Classifier
from llmclf.regression import coverage
from llmclf.type_eval import label_settings
from typed_models import MULTI_LABELS, REGRESSION_RECORD, multi_label_dir, regression_dir

TEXTS = ["a wonderful action film", "a dull drama", "funny comedy lol", "the war movie", "two of them",
         " ".join(f"scene{i}" for i in range(300))]  # several windows (truncation "chunks")
LABELS = [["action"], ["drama"], ["comedy"], ["action", "drama"], ["comedy", "drama"], ["action"]]


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    root = tmp_path_factory.mktemp("typed-eval")
    return {"multi": str(multi_label_dir(root)), "regression": str(regression_dir(root))}


def test_label_settings_are_the_flags_then_the_training_settings_then_the_defaults():
    run = {"text_column": "review", "label_column": "tags", "label_separator": "|", "allow_empty_labels": True,
           "label_columns": ["x", "y"]}
    assert label_settings(run, None, None, None) == {"text_column": "review", "label_column": "tags",
                                                     "label_columns": ["x", "y"], "separator": "|",
                                                     "allow_empty": True}
    flagged = label_settings(run, "body", "genre", "a, b")
    assert (flagged["text_column"], flagged["label_column"], flagged["label_columns"]) == ("body", "genre", ["a", "b"])
    assert label_settings({}, None, None, None) == {"text_column": "text", "label_column": "label",
                                                    "label_columns": None, "separator": ",", "allow_empty": False}


def test_lists_separated_names_and_label_columns_give_the_models_metrics(typed, tmp_path):
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_json(tmp_path / "lists.jsonl", orient="records", lines=True)
    pd.DataFrame({"text": TEXTS, "label": [",".join(names) for names in LABELS]}).to_csv(tmp_path / "names.csv",
                                                                                          index=False)
    # Other column names than the labels: --label-columns maps them onto the model's labels in order.
    columns = {f"is_{name}": [int(name in names) for names in LABELS] for name in MULTI_LABELS.values()}
    pd.DataFrame({"text": TEXTS, **columns}).to_csv(tmp_path / "columns.csv", index=False)
    from_lists = evaluate(typed["multi"], str(tmp_path / "lists.jsonl"))
    assert evaluate(typed["multi"], str(tmp_path / "names.csv")) == from_lists
    assert evaluate(typed["multi"], str(tmp_path / "columns.csv"), label_columns=",".join(columns)) == from_lists
    classifier = Classifier.from_pretrained(typed["multi"])
    targets = [[int(name in names) for name in MULTI_LABELS.values()] for names in LABELS]
    expected = multilabel_metrics(targets, classifier.predict_proba(TEXTS), list(MULTI_LABELS.values()),
                                  [0.45, 0.55, 0.5])  # the saved thresholds, drama's missing one at 0.5
    for key in ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "loss", "roc_auc"):
        assert from_lists[key] == pytest.approx(expected[key]), key
    assert from_lists["per_label"]["comedy"]["threshold"] == 0.55 and from_lists["n"] == len(TEXTS)


def test_regression_metrics_are_of_the_models_values_and_saved_interval(typed, tmp_path):
    targets = [1.0, 2.5, 3.0, 4.5, 5.0, 3.25]
    pd.DataFrame({"text": TEXTS, "label": targets}).to_csv(tmp_path / "r.csv", index=False)
    metrics = evaluate(typed["regression"], str(tmp_path / "r.csv"))
    values = np.asarray(Classifier.from_pretrained(typed["regression"]).predict(TEXTS))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(values - targets)))
    halfwidth = REGRESSION_RECORD["interval"]["halfwidth"]
    assert metrics["interval"] == pytest.approx({"level": 0.9, "halfwidth": halfwidth,
                                                 "coverage": coverage(targets, values, halfwidth)})
    assert main(["evaluate", "--model", typed["regression"], "--data", str(tmp_path / "r.csv"),
                 "--output", str(tmp_path / "eval")]) == 0
    for name in ("metrics.json", "errors.jsonl", "report.html", "plots/predicted_vs_true.png", "plots/residuals.png"):
        assert (tmp_path / "eval" / name).is_file(), name


def test_mistakes_are_one_line_and_write_nothing(typed, tiny_classifier_dir, tmp_path):
    pd.DataFrame({"text": TEXTS[:2], "a": [1, 0], "b": [0, 1]}).to_csv(tmp_path / "two.csv", index=False)
    out = str(tmp_path / "eval")
    user_error(r"--label-columns a,b: 2 column\(s\) for the model's 3 labels \(action, comedy, drama\)",
               evaluate, typed["multi"], str(tmp_path / "two.csv"), out, label_columns="a,b")
    user_error(r"--label-columns reads the 0/1 label columns of a multi-label model; this one is single-label",
               evaluate, str(tiny_classifier_dir), str(tmp_path / "two.csv"), out, label_columns="a,b")
    pd.DataFrame({"text": TEXTS[:2], "label": [["action"], []]}).to_json(tmp_path / "e.jsonl", orient="records",
                                                                          lines=True)
    user_error(r"--data .*e\.jsonl: row 2 has an empty list of labels", evaluate, typed["multi"],
               str(tmp_path / "e.jsonl"), out)
    pd.DataFrame({"text": TEXTS[:2], "label": ["2.5", "nan"]}).to_csv(tmp_path / "nan.csv", index=False)
    user_error(r"--data .*nan\.csv: row 2 has target 'nan'; regression targets must be finite", evaluate,
               typed["regression"], str(tmp_path / "nan.csv"), out)
    assert not (tmp_path / "eval").exists()
