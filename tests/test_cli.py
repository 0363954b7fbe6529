"""End-to-end CLI runs on tiny-random-llama: train -> artifacts -> reload with plain transformers -> evaluate
-> predict, for binary and 4-class data, full fine-tuning and LoRA."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from llmclf.cli import main
from llmclf.metrics import compute_metrics

pytestmark = pytest.mark.slow  # every test trains a model (or reads one of the two module-scoped runs)

ARTIFACTS = ["config.json", "model.safetensors", "tokenizer.json", "llmclf_config.yaml", "metrics.json",
             "history.jsonl", "README.md", "plots/loss.png", "plots/accuracy.png", "plots/confusion_matrix.png",
             "plots/roc.png"]
FAST = ["--model", "tiny-random-llama", "--epochs", "4", "--learning-rate", "3e-3", "--batch-size", "8"]
LORA = ["--model", "tiny-random-llama", "--epochs", "8", "--learning-rate", "1e-2", "--batch-size", "8"]


def run(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, sentiment_csv) -> Path:
    out = tmp_path_factory.mktemp("runs") / "binary"
    run("train", "--data", sentiment_csv, "--text-column", "review", "--label-names", "neg,pos",
        "--test-data", sentiment_csv, "--output", out, *FAST)
    return out


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, news_jsonl) -> Path:
    out = tmp_path_factory.mktemp("runs") / "news-lora"
    run("train", "--data", news_jsonl, "--output", out, "--lora", *LORA)
    return out


def test_binary_run_writes_every_artifact(binary_run):
    for name in ARTIFACTS:
        assert (binary_run / name).is_file(), name
    assert not list(binary_run.parent.glob(".*llmclf-partial")), "staging directory left behind"
    assert not (binary_run / "checkpoints").exists()
    for png in (binary_run / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_threshold_and_its_evidence_are_saved_reported_and_reproduced(binary_run, sentiment_csv, tmp_path):
    """The default objective (accuracy): the threshold's p-value against 0.5 travels from train's validation
    metrics to the saved calibration, the card and report, and the metrics of `evaluate`, which reads it back."""
    from llmclf.artifacts import read_calibration
    from llmclf.calibration import THRESHOLD_SIGNIFICANCE

    validation = json.loads((binary_run / "metrics.json").read_text())["validation"]
    p_value = validation["threshold_p_value"]
    assert 0 < p_value <= 1 and validation["threshold_objective"] == "accuracy"
    assert (validation["threshold"] == 0.5) == (p_value >= THRESHOLD_SIGNIFICANCE)
    assert read_calibration(binary_run)["threshold_p_value"] == p_value
    for page in ("README.md", "report.html"):
        assert f"p = {p_value:.2g}, sign test" in (binary_run / page).read_text(), page
    run("evaluate", "--model", binary_run, "--data", sentiment_csv, "--text-column", "review", "--output",
        tmp_path / "eval")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert (evaluated["threshold"], evaluated["threshold_p_value"]) == (validation["threshold"], p_value)


def test_binary_run_metrics_history_and_config(binary_run):
    results = json.loads((binary_run / "metrics.json").read_text())
    assert set(results) == {"validation", "test", "training"}
    validation = results["validation"]
    assert validation["label_names"] == ["neg", "pos"]
    assert validation["n"] == 24  # 20% of 120
    assert validation["accuracy"] >= 0.9, validation
    assert results["test"]["n"] == 120
    history = [json.loads(line) for line in (binary_run / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1.0, 2.0, 3.0, 4.0]
    assert all({"train_loss", "eval_loss", "eval_accuracy", "eval_roc_auc"} <= set(row) for row in history)
    assert history[-1]["eval_accuracy"] == pytest.approx(validation["accuracy"])  # the card keeps the last epoch
    config = yaml.safe_load((binary_run / "llmclf_config.yaml").read_text())
    assert config["epochs"] == 4.0 and config["learning_rate"] == 3e-3 and config["label_names"] == ["neg", "pos"]
    assert config["text_column"] == "review" and config["model"] == "tiny-random-llama"


def test_model_card_front_matter(binary_run):
    text = (binary_run / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["pipeline_tag"] == "text-classification"
    test_metrics = json.loads((binary_run / "metrics.json").read_text())["test"]
    values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values["accuracy"] == pytest.approx(test_metrics["accuracy"])
    assert "plots/roc.png" in text and "Limitations" in text and "# binary" in text

    # how long training took and on what hardware: metrics.json records it, the card says it
    import torch

    training = json.loads((binary_run / "metrics.json").read_text())["training"]
    assert training["device"].startswith("cpu: ") and f"{torch.get_num_threads()} threads" in training["device"]
    sentence = next(line for line in text.splitlines() if line.startswith("Trained in "))
    precision = "bf16" if training["bf16"] else "float32"
    assert training["device"] in sentence and f"in {precision}" in sentence
    assert f"{training['steps']:,} optimizer steps" in sentence


def test_reloads_with_plain_transformers_and_real_label_names(binary_run, sentiment_csv):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from llmclf.predict import Classifier

    model = AutoModelForSequenceClassification.from_pretrained(binary_run)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    texts = pd.read_csv(sentiment_csv)["review"].tolist()[:10]
    answers = pipeline("text-classification", model=str(binary_run))(texts)
    assert {a["label"] for a in answers} <= {"neg", "pos"}
    ours = Classifier.from_pretrained(str(binary_run)).predict_proba(texts)
    tokenizer = AutoTokenizer.from_pretrained(binary_run)
    for text, answer, probs in zip(texts, answers, ours):
        assert answer["label"] == ["neg", "pos"][int(probs.argmax())]
        assert answer["score"] == pytest.approx(float(probs.max()), abs=1e-4)
    # one text at a time, no padding: the same logits as the batched, padded path
    single = model(**tokenizer(texts[0], return_tensors="pt")).logits.detach().numpy()[0]
    assert np.allclose(Classifier(model, tokenizer).window_logits(texts[:3])[0][0], single, atol=1e-4)


def test_config_file_reproduces_the_run(binary_run, tmp_path, sentiment_csv):
    """The saved llmclf_config.yaml is a valid --config: same settings, same numbers."""
    config = yaml.safe_load((binary_run / "llmclf_config.yaml").read_text())
    config.update(output=str(tmp_path / "again"), test_data=None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run("train", "--config", tmp_path / "config.yaml")
    first = json.loads((binary_run / "metrics.json").read_text())["validation"]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())["validation"]
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-4)


def test_lora_four_classes_merged(lora_run, news_jsonl):
    from transformers import pipeline

    assert not (lora_run / "adapter_config.json").exists()  # merged by default
    assert "peft" not in (lora_run / "config.json").read_text()
    results = json.loads((lora_run / "metrics.json").read_text())["validation"]
    assert results["label_names"] == ["business", "sports", "tech", "world"]
    assert len(results["confusion_matrix"]) == 4 and results["accuracy"] >= 0.8, results
    answers = pipeline("text-classification", model=str(lora_run))(["election treaty minister", "goal league coach"])
    assert [a["label"] for a in answers] == ["world", "sports"]


def test_lora_adapter_only(tmp_path, news_jsonl):
    from llmclf.predict import Classifier

    out = tmp_path / "adapter"
    run("train", "--data", news_jsonl, "--output", out, "--lora", "--save-adapter", *LORA)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    classifier = Classifier.from_pretrained(str(out))
    assert classifier.predict(["election treaty minister", "shares merger profit"]) == ["world", "business"]
    saved = json.loads((out / "metrics.json").read_text())["validation"]
    # Reloaded from the adapter, the model gives the validation numbers the run reported.
    from llmclf.config import resolve_train_args
    from llmclf.train import load_splits

    validation = load_splits(resolve_train_args(config=out / "llmclf_config.yaml")).validation
    again = compute_metrics(np.array(validation.labels), classifier.predict_proba(validation.texts),
                            classifier.id2label)
    assert again["accuracy"] == pytest.approx(saved["accuracy"]) and again["loss"] == pytest.approx(saved["loss"], abs=1e-3)


def test_evaluate_writes_metrics_and_plots(binary_run, sentiment_csv, tmp_path):
    from llmclf.predict import Classifier

    out = tmp_path / "eval"
    run("evaluate", "--model", binary_run, "--data", sentiment_csv, "--text-column", "review", "--output", out)
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    frame = pd.read_csv(sentiment_csv)
    probs = Classifier.from_pretrained(str(binary_run)).predict_proba(frame["review"].tolist())
    expected = compute_metrics(frame["label"].to_numpy(), probs, {0: "neg", 1: "pos"})
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["roc_auc"] == pytest.approx(expected["roc_auc"])
    assert {p.name for p in (out / "plots").iterdir()} == {"confusion_matrix.png", "roc.png", "reliability.png",
                                                          "risk_coverage.png"}


def test_predict_prints_label_names(binary_run, capsys):
    from llmclf.predict import Classifier

    texts = ["a wonderful superb film", "dreadful boring terrible"]
    run("predict", "--model", binary_run, *texts)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    # the score printed is the probability of the printed label, to 4 decimals
    probs = Classifier.from_pretrained(str(binary_run)).predict_proba(texts)
    assert [float(line.split("\t")[1]) for line in lines] == pytest.approx([probs[0, 1], probs[1, 0]], abs=5e-5)


def test_best_epoch_and_early_stopping(tmp_path, news_jsonl):
    out = tmp_path / "best"
    run("train", "--data", news_jsonl, "--output", out, "--model", "tiny-random-llama", "--epochs", "6",
        "--learning-rate", "3e-3", "--best-metric", "accuracy", "--early-stopping-patience", "1")
    results = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    best = max(row["eval_accuracy"] for row in history)
    assert results["validation"]["accuracy"] == pytest.approx(best)
    assert results["training"]["best_checkpoint"].startswith("checkpoint-")
    # the optimizer steps taken: whole epochs of batches of 8, up to the epoch early stopping ended on
    steps_per_epoch = -(-results["training"]["train_examples"] // 8)
    assert results["training"]["steps"] == round(history[-1]["epoch"]) * steps_per_epoch


def test_console_script_runs_in_a_fresh_process(binary_run):
    done = subprocess.run([sys.executable, "-m", "llmclf", "predict", "--model", str(binary_run), "great superb"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[0] == "pos"  # two positive keywords, as in test_predict_prints_label_names


@pytest.mark.parametrize("truncation", ["head_tail", "chunks"])
def test_evaluate_with_each_truncation_mode_matches_predict(binary_run, sentiment_csv, truncation):
    """evaluate reads texts as predict does: chunks averages its windows' probabilities in both."""
    from llmclf.evaluate import evaluate
    from llmclf.predict import Classifier

    frame = pd.read_csv(sentiment_csv)
    options = {"truncation": truncation, "max_length": 8}  # short windows: most texts are cut
    metrics = evaluate(str(binary_run), str(sentiment_csv), text_column="review", options=options)
    probs = Classifier.from_pretrained(str(binary_run), **options).predict_proba(frame["review"].tolist())
    expected = compute_metrics(frame["label"].to_numpy(), probs, {0: "neg", 1: "pos"})
    assert metrics["roc_auc"] == pytest.approx(expected["roc_auc"])
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
