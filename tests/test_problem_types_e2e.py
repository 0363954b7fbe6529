"""Multi-label and regression models end to end, as a user runs them: `llmclf train` (via llmclf.cli.main), the
saved model reopened by plain transformers, `llmclf predict` on a CSV file, `llmclf evaluate` on the validation
rows (which must reproduce the training run's metrics.json), a real `llmclf serve` process, and a killed file
scoring run resumed. Tiny data, one epoch, --max-length 32: each model trains in seconds on a CPU."""

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import llmclf.scoring as scoring_module
from llmclf.cli import main
from llmclf.predict import Classifier
from llmclf.testing import ServerProcess

pytestmark = pytest.mark.slow  # trains models and starts servers

KEYWORDS = {"anger": ["furious", "rage"], "fear": ["scared", "dread"], "joy": ["happy", "delight"]}
LABELS = list(KEYWORDS)
RATINGS = {1.0: "awful", 2.5: "fine", 4.5: "superb"}
FILLER = "the a report said today new people after before during week film story".split()
# Longer than --max-length 32: read in several windows (truncation "chunks"), whose outputs are averaged.
LONG = " ".join(["story"] * 40 + ["happy", "superb"] + ["week"] * 40)
TRAIN = ["--model", "tiny-random-llama", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
         "--learning-rate", "1e-3"]
TEXTS = ["furious and happy", "scared of the dark", "a superb film", "", LONG]


def emotion_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = sorted(rng.choice(LABELS, size=1 + i % 2, replace=False).tolist())
        words = rng.choice(FILLER, size=4).tolist() + [str(rng.choice(KEYWORDS[name])) for name in labels]
        rows.append({"text": " ".join(words), "label": labels})
    return rows


def rating_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        value = list(RATINGS)[i % len(RATINGS)]
        words = rng.choice(FILLER, size=4).tolist() + [RATINGS[value]]
        rows.append({"review": " ".join(words), "rating": round(value + rng.uniform(-0.4, 0.4), 3)})
    return rows


def write_data(kind: str, root: Path) -> tuple[Path, list[str]]:
    """The training and validation files of one kind of run; returns the validation file and train's flags."""
    if kind == "regression":
        train, validation = rating_rows(40, 0), rating_rows(12, 1) + [{"review": LONG, "rating": 4.4}]
        for name, rows in (("train", train), ("val", validation)):
            pd.DataFrame(rows).to_csv(root / f"{name}.csv", index=False)
        flags = ["--text-column", "review", "--label-column", "rating", "--interval", "0.8"]
        return root / "val.csv", ["--data", str(root / "train.csv"), "--validation-data", str(root / "val.csv"), *flags]
    train, validation = emotion_rows(40, 0), emotion_rows(12, 1) + [{"text": LONG, "label": ["joy"]}]
    if kind == "label-columns":  # one 0/1 column per label, in a CSV
        for name, rows in (("train", train), ("val", validation)):
            pd.DataFrame([{"text": r["text"], **{n: int(n in r["label"]) for n in LABELS}} for r in rows]).to_csv(
                root / f"{name}.csv", index=False)
        return root / "val.csv", ["--data", str(root / "train.csv"), "--validation-data", str(root / "val.csv"),
                                  "--label-columns", ",".join(LABELS)]
    for name, rows in (("train", train), ("val", validation)):
        pd.DataFrame(rows).to_json(root / f"{name}.jsonl", orient="records", lines=True)
    return root / "val.jsonl", ["--data", str(root / "train.jsonl"), "--validation-data", str(root / "val.jsonl")]


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """(kind, model directory, validation file) of a model `llmclf train` trained, once per kind and module."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    validation, flags = write_data(kind, root)
    assert main(["train", *flags, *TRAIN, "--output", str(root / "run")]) == 0
    return kind, root / "run", validation


def kinds(*names):
    return pytest.mark.parametrize("trained", names, indirect=True)


def assert_same_numbers(got, want, where="metrics"):
    """Equal structure and values; floats to 1e-6 (one model, one scoring path, the same rows)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            assert_same_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_numbers(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6), where
    else:
        assert got == want, where


@kinds("multi-label", "label-columns", "regression")
def test_saved_model_opens_in_transformers_with_its_problem_type(trained):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kind, out, _ = trained
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    expected = "regression" if kind == "regression" else "multi_label_classification"
    assert model.config.problem_type == expected
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS[:3], padding=True, return_tensors="pt")).logits
    assert logits.shape == (3, 1 if kind == "regression" else 3)
    assert list(model.config.id2label.values()) == (["rating"] if kind == "regression" else LABELS)


@kinds("multi-label", "regression")
def test_predict_file_has_the_types_columns_and_the_classifiers_values(trained, tmp_path):
    kind, out, _ = trained
    pd.DataFrame({"id": ["001", "002", "003", "004", "005"], "text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "o.csv")]) == 0
    scored = pd.read_csv(tmp_path / "o.csv", dtype=str, keep_default_na=False)
    records = Classifier.from_pretrained(str(out)).classify(TEXTS)
    assert scored["id"].tolist() == ["001", "002", "003", "004", "005"] and scored["text"].tolist() == TEXTS
    if kind == "regression":
        assert list(scored.columns) == ["id", "text", "value", "value_low", "value_high"]
        for column in ("value", "value_low", "value_high"):
            assert np.allclose(scored[column].astype(float), [r[column] for r in records], atol=1e-5)
        return
    assert list(scored.columns) == ["id", "text", "labels", *(f"prob_{n}" for n in LABELS)]
    assert scored["labels"].tolist() == [",".join(r["labels"]) for r in records]
    for name in LABELS:
        assert np.allclose(scored[f"prob_{name}"].astype(float), [r["probs"][name] for r in records], atol=1e-5)


@kinds("multi-label", "label-columns", "regression")
def test_evaluate_on_the_validation_rows_reproduces_metrics_json(trained, tmp_path):
    kind, out, validation = trained
    # No column flags: a typed model reads its labels as it was trained (columns, separator, --label-columns).
    assert main(["evaluate", "--model", str(out), "--data", str(validation), "--output", str(tmp_path / "eval")]) == 0
    trained_metrics = json.loads((out / "metrics.json").read_text())["validation"]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert_same_numbers(evaluated["test"], trained_metrics)
    assert evaluated["test"]["n"] == 13 and evaluated["behaviour"]["skipped"]
    plots = ("predicted_vs_true.png", "residuals.png") if kind == "regression" else ("per_label_f1.png",
                                                                                     "per_label_roc.png")
    for name in plots:
        assert (tmp_path / "eval" / "plots" / name).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "eval" / "errors.jsonl").is_file()
    if kind == "regression":  # the saved interval, its coverage measured again on these rows
        assert evaluated["test"]["interval"]["level"] == 0.8


@kinds("multi-label", "regression")
def test_served_answers_equal_the_classifiers(trained):
    kind, out, _ = trained
    classifier = Classifier.from_pretrained(str(out))
    records = classifier.classify(TEXTS)
    with ServerProcess(out, max_wait_ms=5) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        predictions = client.post("/v1/predict", json={"texts": TEXTS}).json()["predictions"]
        data = client.post("/classify", json={"input": TEXTS}).json()["data"]
    assert len(predictions) == len(data) == len(TEXTS)
    if kind == "regression":
        for got, item, record in zip(predictions, data, records):
            assert got == pytest.approx(record, abs=1e-5)
            assert item["label"] == "rating" and item["probs"] == pytest.approx([record["value"]], abs=1e-5)
            assert item["value_low"] == pytest.approx(record["value_low"], abs=1e-5)
        return
    for got, item, record in zip(predictions, data, records):
        assert got["labels"] == item["labels"] == record["labels"]
        assert got["probs"] == pytest.approx(record["probs"], abs=1e-5)
        assert item["probs"] == pytest.approx([record["probs"][n] for n in LABELS], abs=1e-5)


@kinds("multi-label")
def test_resumed_file_scoring_equals_an_uninterrupted_run(trained, tmp_path, monkeypatch):
    _, out, _ = trained
    texts = [f"{TEXTS[i % len(TEXTS)]} number {i}" for i in range(23)]
    pd.DataFrame({"id": range(23), "text": texts}).to_csv(tmp_path / "in.csv", index=False)
    base = ["predict", "--model", str(out), "--input", str(tmp_path / "in.csv"), "--chunk-rows", "5"]
    assert main([*base, "--output", str(tmp_path / "fresh.csv")]) == 0
    original, calls = scoring_module.score_frame, []

    def killed_on_third_chunk(classifier, frame, text_column):
        calls.append(len(frame))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C: the two finished chunks stay for --resume
        return original(classifier, frame, text_column)

    monkeypatch.setattr(scoring_module, "score_frame", killed_on_third_chunk)
    assert main([*base, "--output", str(tmp_path / "resumed.csv")]) == 130
    assert not (tmp_path / "resumed.csv").exists()
    calls.clear()
    monkeypatch.setattr(scoring_module, "score_frame", lambda c, f, t: calls.append(len(f)) or original(c, f, t))
    assert main([*base, "--output", str(tmp_path / "resumed.csv"), "--resume"]) == 0
    assert calls == [5, 5, 3], "the two finished chunks are not scored again"
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "fresh.csv").read_bytes()
