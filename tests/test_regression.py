"""Regression training: detection, metrics (checked against scikit-learn and scipy), target standardisation,
split-conformal intervals, MSE / Huber losses, the user mistakes, and a tiny model trained end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from llmclf.cli import main
from llmclf.config import TrainArgs
from llmclf.problem_types import REGRESSION, SINGLE_LABEL, detect_problem_type
from llmclf.regression import Standardiser, conformal_halfwidth, coverage, regression_metrics
from llmclf.train import load_splits
from test_multilabel import refused

WORDS = {0.5: "awful", 1.5: "poor", 2.5: "fine", 3.5: "good", 4.5: "superb"}
FILLER = "the a report said today new people after before during week film story".split()


def rating_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        value = list(WORDS)[i % len(WORDS)]
        words = rng.choice(FILLER, size=4).tolist() + [WORDS[value]]
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "rating": round(value + rng.uniform(-0.3, 0.3), 3)})
    return rows


def test_metrics_match_scikit_learn_and_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(3, 2, 50)
    p = y + rng.normal(0, 0.7, 50)
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert m["r2"] == pytest.approx(r2_score(y, p))
    assert m["pearson"] == pytest.approx(pearsonr(y, p)[0]) and m["spearman"] == pytest.approx(spearmanr(y, p)[0])
    assert regression_metrics([1.0, 2.0], [3.0, 3.0])["spearman"] is None  # constant predictions: undefined
    json.dumps(m)


def test_standardisation_round_trip():
    targets = np.array([1.0, 2.5, 7.0, 4.0])
    s = Standardiser.fit(targets)
    assert (s.mean, s.std) == pytest.approx((targets.mean(), targets.std()))
    z = s.apply(targets)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    assert s.undo(z) == pytest.approx(targets)


def test_conformal_halfwidth_is_the_finite_sample_quantile_and_covers():
    residuals = np.arange(1, 11, dtype=float)  # |residuals| 1..10, n = 10
    # ceil(11 * 0.9) = 10: the 10th smallest; ceil(11 * 0.5) = 6: the 6th
    assert conformal_halfwidth(residuals, np.zeros(10), 0.9) == 10.0
    assert conformal_halfwidth(residuals, np.zeros(10), 0.5) == 6.0
    rng = np.random.default_rng(1)
    calibration, fresh = rng.normal(size=2000), rng.normal(size=20000)  # exchangeable residuals
    q = conformal_halfwidth(calibration, np.zeros(2000), 0.9)
    assert 0.89 <= coverage(fresh, np.zeros(20000), q) <= 0.92
    assert coverage([0.0, 1.0, 3.0], [0.0, 0.0, 0.0], 1.0) == pytest.approx(2 / 3)


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_losses_are_torchs(loss, tmp_path):
    from transformers import DataCollatorWithPadding, TrainingArguments

    from llmclf.models import tiny_random_llama
    from llmclf.trainer import trainer_class

    model, tokenizer = tiny_random_llama({0: "rating"}, seed=2, problem_type="regression")
    model.eval()
    rows = [dict(tokenizer(t), labels=y) for t, y in zip(["one", "two words", "three words here"], [-1.5, 0.2, 2.5])]
    batch = DataCollatorWithPadding(tokenizer)(rows)
    trainer = trainer_class(problem_type=REGRESSION, loss=loss)(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    with torch.no_grad():
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.reshape(-1)
        got = trainer.compute_loss(model, dict(batch))
        own = model(**batch).loss  # transformers' own regression loss (MSE)
    fn = torch.nn.HuberLoss(delta=1.0) if loss == "huber" else torch.nn.MSELoss()
    assert torch.allclose(got, fn(outputs, batch["labels"]), atol=1e-6)
    if loss == "mse":
        assert torch.allclose(got, own, atol=1e-6)


def test_detection_of_numeric_targets(tmp_path):
    assert detect_problem_type([3.5, 4, 1.25]) == REGRESSION
    assert detect_problem_type(["3.5", "4", "1"]) == REGRESSION  # CSV cells
    assert detect_problem_type([1, 2, 3]) == SINGLE_LABEL  # whole numbers are classes unless told otherwise
    rows = rating_rows(20)
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    splits = load_splits(TrainArgs(data=str(tmp_path / "d.csv"), text_column="review", label_column="rating"))
    assert splits.problem_type == REGRESSION and splits.id2label == {0: "rating"}
    assert splits.standardiser.mean == pytest.approx(np.mean(splits.train.labels))
    whole = pd.DataFrame({"text": [f"t{i}" for i in range(10)], "label": [1, 2, 3, 4, 5] * 2})
    whole.to_json(tmp_path / "w.jsonl", orient="records", lines=True)
    forced = load_splits(TrainArgs(data=str(tmp_path / "w.jsonl"), problem_type="regression"))
    assert forced.problem_type == REGRESSION and all(isinstance(v, float) for v in forced.train.labels)


def test_target_and_option_mistakes(tmp_path, capsys):
    rows = rating_rows(20)
    base = ["--text-column", "review", "--label-column", "rating"]
    for bad, match in (("inf", r"row 4 has target 'inf'; regression targets must be finite numbers"),
                       ("nan", r"row 4 has target 'nan'; regression targets must be finite")):
        frame = pd.DataFrame(rows).astype({"rating": str})
        frame.loc[3, "rating"] = bad
        frame.to_csv(tmp_path / f"{bad}.csv", index=False)
        refused(tmp_path, capsys, ["--data", str(tmp_path / f"{bad}.csv"), *base], match)
    text = pd.DataFrame(rows).astype({"rating": object})
    text.loc[2, "rating"] = "high"
    text.to_csv(tmp_path / "text.csv", index=False)
    refused(tmp_path, capsys, ["--data", str(tmp_path / "text.csv"), *base, "--problem-type", "regression"],
            r"row 3 has target 'high', not a number; regression targets must be numbers")
    text.to_json(tmp_path / "mixed.jsonl", orient="records", lines=True)
    refused(tmp_path, capsys, ["--data", str(tmp_path / "mixed.jsonl"), *base],
            r"the label column mixes numbers and text \(row 3 holds 'high'\)")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    data = ["--data", str(tmp_path / "d.csv"), *base]
    refused(tmp_path, capsys, [*data, "--interval", "1.5"], r"--interval must be in \(0, 1\), e\.g\. 0\.9, got 1\.5")
    refused(tmp_path, capsys, [*data, "--interval", "0"], r"--interval must be in \(0, 1\)")
    refused(tmp_path, capsys, [*data, "--class-weights", "balanced"], r"--class-weights is for classification")
    refused(tmp_path, capsys, [*data, "--best-metric", "accuracy"], r"--best-metric accuracy is not a regression metric")
    refused(tmp_path, capsys, [*data, "--loss", "l1"], r"--loss must be one of mse, huber, got 'l1'")
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "y"] * 2}).to_csv(tmp_path / "c.csv", index=False)
    refused(tmp_path, capsys, ["--data", str(tmp_path / "c.csv"), "--interval", "0.9"],
            r"--interval gives prediction intervals for regression, but this is single-label data")
    refused(tmp_path, capsys, ["--data", str(tmp_path / "c.csv"), "--loss", "huber"],
            r"--loss huber is for regression, but this is single-label data")
    refused(tmp_path, capsys, ["--data", str(tmp_path / "c.csv"), "--problem-type", "single-label", "--interval", "0.9"],
            r"--interval gives prediction intervals for regression")
    pd.DataFrame({"text": ["a", "b", "c"], "label": [2.5, 2.5, 2.5]}).to_csv(tmp_path / "flat.csv", index=False)
    refused(tmp_path, capsys, ["--data", str(tmp_path / "flat.csv"), "--problem-type", "regression",
                               "--validation-fraction", "0.34"], r"every training target is 2\.5; regression needs")


@pytest.mark.slow
def test_trained_model_opens_as_a_transformers_regressor_and_its_scale_is_saved(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = rating_rows(100)
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rating_rows(25, seed=5)).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--test-data", str(tmp_path / "test.csv"),
                 "--text-column", "review", "--label-column", "rating", "--model", "tiny-random-llama",
                 "--epochs", "3", "--batch-size", "8", "--max-length", "32", "--learning-rate", "1e-3",
                 "--loss", "huber", "--interval", "0.9", "--best-metric", "mae", "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "rating"}
    record = config["llmclf"]
    splits = load_splits(TrainArgs(data=str(tmp_path / "train.csv"), text_column="review", label_column="rating"))
    assert (record["target_mean"], record["target_std"]) == pytest.approx(
        (np.mean(splits.train.labels), np.std(splits.train.labels)))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    with torch.no_grad():
        raw = model(**tokenizer(splits.validation.texts, padding=True, return_tensors="pt")).logits
    assert raw.shape == (len(splits.validation), 1)
    predictions = raw.numpy()[:, 0] * record["target_std"] + record["target_mean"]  # the saved scale undone
    metrics = json.loads((out / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["mae"] == pytest.approx(mean_absolute_error(splits.validation.labels, predictions), abs=1e-5)
    q = conformal_halfwidth(splits.validation.labels, predictions, 0.9)
    assert record["interval"] == {"level": 0.9, "halfwidth": pytest.approx(q, abs=1e-5)}
    assert validation["interval"]["coverage"] >= 0.9 and "coverage" in metrics["test"]["interval"]
    assert metrics["training"]["loss"] == "huber" and metrics["behaviour"]["skipped"]
    run_config = (out / "llmclf_config.yaml").read_text()
    assert "problem_type: regression" in run_config and "loss: huber" in run_config and "interval: 0.9" in run_config
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"eval_mae", "eval_rmse", "eval_r2", "eval_spearman"} <= set(history[-1])
    for name in ("predicted_vs_true.png", "residuals.png", "loss.png"):
        assert (out / "plots" / name).read_bytes().startswith(b"\x89PNG")
    assert "| mae |" in (out / "README.md").read_text() and "Prediction interval" in (out / "report.html").read_text()
