"""Multi-label training: label detection, metrics (checked against scikit-learn), per-label thresholds, BCE
pos_weight, the user mistakes, and a tiny model trained end to end and reopened by plain transformers."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support, roc_auc_score

from llmclf.cli import main
from llmclf.config import TrainArgs
from llmclf.multilabel import balanced_pos_weight, multilabel_metrics, sigmoid, tune_thresholds
from llmclf.problem_types import MULTI_LABEL, SINGLE_LABEL, detect_problem_type, split_cell
from llmclf.train import load_splits

KEYWORDS = {"anger": ["furious", "rage"], "fear": ["scared", "dread"], "joy": ["happy", "delight"]}
FILLER = "the a report said today new people after before during week film story".split()


def emotion_rows(n: int, seed: int = 0) -> list[dict]:
    """Texts holding one keyword per label they carry: one or two labels each."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = sorted(rng.choice(list(KEYWORDS), size=1 + i % 2, replace=False).tolist())
        words = rng.choice(FILLER, size=4).tolist() + [rng.choice(KEYWORDS[name]) for name in labels]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": labels})
    return rows


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(tmp_path, capsys, argv: list[str], match: str) -> str:
    """`llmclf train ...` exits 2 with one error line matching `match`, and writes nothing."""
    before = snapshot(tmp_path)
    code = main(["train", "--model", "tiny-random-llama", "--output", str(tmp_path / "out"), *argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("llmclf: error: "), lines
    assert re.search(match, lines[0]), lines[0]
    assert snapshot(tmp_path) == before
    return lines[0]


# --- metrics and thresholds --------------------------------------------------------------------------------

def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 4)) < 0.35).astype(int)
    labels[:, 3] = 0  # a label with one class in this split: no ROC-AUC
    probs = np.clip(0.6 * labels + 0.5 * rng.random((60, 4)), 0, 1)
    thresholds = [0.5, 0.4, 0.6, 0.5]
    m = multilabel_metrics(labels, probs, ["a", "b", "c", "d"], thresholds)
    preds = (probs >= np.array(thresholds)).astype(int)
    for avg in ("micro", "macro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(f1_score(labels, preds, average=avg, zero_division=0))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(labels, preds))
    p, r, f, s = precision_recall_fscore_support(labels, preds, average=None, zero_division=0)
    for j, name in enumerate("abc"):
        got = m["per_label"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[j], r[j], f[j], s[j]))
        assert got["roc_auc"] == pytest.approx(roc_auc_score(labels[:, j], probs[:, j]))
    assert m["per_label"]["d"]["roc_auc"] is None and m["per_label"]["d"]["support"] == 0
    assert m["roc_auc"] == pytest.approx(np.mean([roc_auc_score(labels[:, j], probs[:, j]) for j in range(3)]))
    expected_bce = torch.nn.functional.binary_cross_entropy(torch.tensor(probs), torch.tensor(labels, dtype=torch.float64))
    assert m["loss"] == pytest.approx(float(expected_bce), rel=1e-6)
    json.dumps(m)  # plain Python types


def test_thresholds_maximise_each_labels_f1():
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    probs = np.array([[0.30, 0.9, 0.8], [0.25, 0.1, 0.2], [0.22, 0.7, 0.9], [0.10, 0.2, 0.6], [0.40, 0.3, 0.95]])
    thresholds = tune_thresholds(labels, probs)
    # label 0: every positive above 0.235 and the negatives below: F1 1 needs a threshold in (0.22, 0.25]
    assert thresholds[0] == pytest.approx(0.235)
    assert thresholds[1] == 0.5  # no positives: F1 says nothing, the default stays
    assert thresholds[2] == pytest.approx(0.7)  # midpoint of 0.6 (the negative) and 0.8: F1 1
    for j in (0, 2):  # no candidate threshold beats the chosen one
        best = f1_score(labels[:, j], probs[:, j] >= thresholds[j])
        assert all(f1_score(labels[:, j], probs[:, j] >= t) <= best for t in np.linspace(0, 1, 101))


def test_pos_weight_loss_is_torch_bce_with_logits(tmp_path):
    from transformers import DataCollatorWithPadding, TrainingArguments

    from llmclf.models import tiny_random_llama
    from llmclf.trainer import trainer_class

    model, tokenizer = tiny_random_llama({0: "a", 1: "b", 2: "c"}, seed=1, problem_type="multi_label_classification")
    model.eval()
    targets = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert balanced_pos_weight(targets) == [1.0, 3.0, 1.0]
    rows = [dict(tokenizer(text), labels=y) for text, y in zip(["a short one", "rather longer text here", "x", "yz"],
                                                               targets)]
    batch = DataCollatorWithPadding(tokenizer)(rows)
    assert batch["labels"].dtype == torch.float32
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    weights = [0.5, 3.0, 2.0]
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        weighted = trainer_class(class_weights=weights, problem_type=MULTI_LABEL)(model=model, args=args).compute_loss(
            model, dict(batch))
        plain = trainer_class(problem_type=MULTI_LABEL)(model=model, args=args).compute_loss(model, dict(batch))
        own = model(**batch).loss  # transformers' own multi-label loss
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights))(logits, batch["labels"])
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert torch.allclose(plain, torch.nn.BCEWithLogitsLoss()(logits, batch["labels"]), atol=1e-6)
    assert torch.allclose(plain, own, atol=1e-6) and not torch.allclose(weighted, plain, atol=1e-4)


# --- detection ----------------------------------------------------------------------------------------------

def test_detection_from_lists_separator_cells_and_brackets():
    assert detect_problem_type([["a", "b"], ["c"]]) == MULTI_LABEL
    assert detect_problem_type([np.array(["a"]), np.array(["b", "c"])]) == MULTI_LABEL  # a Parquet list column
    assert detect_problem_type(["anger,disgust", "joy"]) == MULTI_LABEL
    assert detect_problem_type(["[anger]", "joy"]) == MULTI_LABEL
    assert detect_problem_type(["a;b", "c"], separator=";") == MULTI_LABEL
    assert detect_problem_type(["pos", "neg", 1]) == SINGLE_LABEL
    assert split_cell("[anger, 'disgust']") == ["anger", "disgust"] and split_cell("a; b", ";") == ["a", "b"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "csv-brackets"])
def test_list_labels_are_found_in_every_format(tmp_path, fmt):
    rows = emotion_rows(30)
    frame = pd.DataFrame(rows)
    path = tmp_path / f"d.{fmt.split('-')[0]}"
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        join = (lambda names: "[" + ", ".join(names) + "]") if fmt == "csv-brackets" else ",".join
        frame.assign(label=[join(r["label"]) for r in rows]).to_csv(path, index=False)
    splits = load_splits(TrainArgs(data=str(path)))
    assert splits.problem_type == MULTI_LABEL and splits.id2label == {0: "anger", 1: "fear", 2: "joy"}
    everything = {r["text"]: r["label"] for r in rows}
    for text, vector in zip(splits.train.texts + splits.validation.texts, splits.train.labels + splits.validation.labels):
        assert [name for name, v in zip(["anger", "fear", "joy"], vector) if v == 1.0] == everything[text]


def test_label_columns_and_forced_multi_label(tmp_path):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(10)], "a": [1, 0] * 5, "b": [1, 1, 0, 1, 1, 1, 0, 1, 1, 1],
                          "label": ["x", "y"] * 5})
    frame.to_csv(tmp_path / "d.csv", index=False)
    splits = load_splits(TrainArgs(data=str(tmp_path / "d.csv"), label_columns=["b", "a"]))
    assert splits.problem_type == MULTI_LABEL and splits.id2label == {0: "b", 1: "a"}
    by_text = dict(zip(frame.text, zip(frame.b, frame.a)))
    assert all(tuple(v) == by_text[t] for t, v in zip(splits.train.texts, splits.train.labels))
    forced = load_splits(TrainArgs(data=str(tmp_path / "d.csv"), problem_type="multi-label"))
    assert forced.problem_type == MULTI_LABEL and forced.id2label == {0: "x", 1: "y"}


def test_allow_empty_labels(tmp_path):
    rows = emotion_rows(20)
    rows[3]["label"] = []
    pd.DataFrame(rows).to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    splits = load_splits(TrainArgs(data=str(tmp_path / "d.jsonl"), allow_empty_labels=True, validation_fraction=0.5))
    vectors = splits.train.labels + splits.validation.labels
    assert [0.0, 0.0, 0.0] in vectors


# --- user mistakes ------------------------------------------------------------------------------------------

def write(path, rows):
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return str(path)


def test_unknown_label_in_validation_or_test_is_refused(tmp_path, capsys):
    data = write(tmp_path / "d.jsonl", emotion_rows(20))
    val = write(tmp_path / "v.jsonl", [{"text": "x", "label": ["joy"]}, {"text": "y", "label": ["joy", "meh"]}])
    refused(tmp_path, capsys, ["--data", data, "--validation-data", val],
            r"--validation-data .*v\.jsonl: row 2 has label 'meh', never seen in training \(labels: anger, fear, joy\)")
    refused(tmp_path, capsys, ["--data", data, "--test-data", val], r"--test-data .*: row 2 has label 'meh'")


def test_empty_list_mixed_types_and_label_column_mistakes(tmp_path, capsys):
    rows = emotion_rows(20)
    rows[4]["label"] = []
    data = write(tmp_path / "empty.jsonl", rows)
    refused(tmp_path, capsys, ["--data", data], r"row 5 has an empty list of labels; .*--allow-empty-labels")
    rows[4]["label"] = "joy"
    mixed = write(tmp_path / "mixed.jsonl", rows)
    refused(tmp_path, capsys, ["--data", mixed], r"mixes lists and single values \(row 5 holds 'joy'\)")
    refused(tmp_path, capsys, ["--data", mixed, "--problem-type", "single-label"], r"--problem-type single-label, but the label column holds lists")
    pd.DataFrame({"text": ["a", "b", "c"], "x": [1, 0, 1], "y": [0, 2, 1]}).to_csv(tmp_path / "c.csv", index=False)
    refused(tmp_path, capsys, ["--data", str(tmp_path / "c.csv"), "--label-columns", "x,z"],
            r"no label column 'z'; columns found: text, x, y\. Pass --label-columns")
    refused(tmp_path, capsys, ["--data", str(tmp_path / "c.csv"), "--label-columns", "x,y"],
            r"row 2 has 2 in label column 'y'; --label-columns columns hold 0 or 1")


def test_class_weight_and_option_mistakes(tmp_path, capsys):
    data = write(tmp_path / "d.jsonl", emotion_rows(20))
    refused(tmp_path, capsys, ["--data", data, "--class-weights", "1,2"],
            r"--class-weights 1,2: 2 weight\(s\) for 3 labels \(anger, fear, joy\); give one weight per label")
    refused(tmp_path, capsys, ["--data", data, "--class-weights", "1,-2,1"], r"weights must be finite and >= 0")
    refused(tmp_path, capsys, ["--data", data, "--interval", "0.9"],
            r"--interval gives prediction intervals for regression, but this is multi-label data")
    refused(tmp_path, capsys, ["--data", data, "--best-metric", "mae"],
            r"--best-metric mae is not a multi-label metric; pass one of loss, f1_micro")
    refused(tmp_path, capsys, ["--data", data, "--problem-type", "multi"], r"--problem-type must be one of auto")


# --- end to end ---------------------------------------------------------------------------------------------

TRAIN = ["--model", "tiny-random-llama", "--epochs", "2", "--batch-size", "8", "--max-length", "32",
         "--learning-rate", "1e-3"]


@pytest.mark.slow
def test_trained_model_opens_as_a_multi_label_transformers_model(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    data = write(tmp_path / "d.jsonl", emotion_rows(90))
    out = tmp_path / "run"
    assert main(["train", "--data", data, *TRAIN, "--class-weights", "balanced", "--best-metric", "f1_macro",
                 "--output", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert set(config["llmclf"]["thresholds"]) == {"anger", "fear", "joy"}
    assert config["llmclf"]["fitted_temperature"] == 1.0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.problem_type == "multi_label_classification" and model.config.num_labels == 3
    with torch.no_grad():
        logits = model(**tokenizer(["furious and happy", "scared"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 3)
    scores = pipeline("text-classification", model=str(out), top_k=None, function_to_apply="sigmoid")(["furious"])[0]
    assert sorted(s["label"] for s in scores) == ["anger", "fear", "joy"]
    assert all(0 < s["score"] < 1 for s in scores) and sum(s["score"] for s in scores) != pytest.approx(1.0)

    metrics = json.loads((out / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["per_label"]["joy"]["threshold"] == config["llmclf"]["thresholds"]["joy"]
    assert metrics["behaviour"]["skipped"] and validation["temperature"] == 1.0
    splits = load_splits(TrainArgs(data=data))
    pos_weight = balanced_pos_weight(splits.train.labels)
    assert list(metrics["training"]["class_weights"].values()) == pytest.approx(pos_weight)
    # metrics.json is of the saved model: rescored with plain transformers (one window per text at max_length 32)
    with torch.no_grad():
        encoded = tokenizer(splits.validation.texts, padding=True, return_tensors="pt")
        probs = sigmoid(model(**encoded).logits.numpy())
    again = multilabel_metrics(splits.validation.labels, probs, ["anger", "fear", "joy"],
                               [config["llmclf"]["thresholds"][n] for n in ("anger", "fear", "joy")])
    assert again["f1_micro"] == pytest.approx(validation["f1_micro"], abs=1e-6)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"eval_f1_micro", "eval_f1_macro", "eval_hamming_loss"} <= set(history[-1])
    for name in ("per_label_f1.png", "per_label_roc.png", "loss.png"):
        assert (out / "plots" / name).read_bytes().startswith(b"\x89PNG")
    card = (out / "README.md").read_text()
    assert "Temperature scaling: not applied" in card and "Behaviour checks: skipped" in card
    assert "pos_weight" in card and "per_label_f1.png" in (out / "README.md").read_text()
    assert "Trained in " in card and metrics["training"]["device"] in card
    assert "Per label" in (out / "report.html").read_text()


@pytest.mark.slow
def test_lora_adapter_keeps_thresholds_beside_it_and_resume_finishes_a_failed_run(tmp_path, monkeypatch):
    import llmclf.train_types as train_types

    data = write(tmp_path / "d.jsonl", emotion_rows(40))
    out = tmp_path / "run"
    argv = ["train", "--data", data, *TRAIN, "--lora", "--save-adapter", "--output", str(out)]
    real = train_types.finish_typed_run

    def crash(*args, **kwargs):
        raise RuntimeError("killed after training")

    monkeypatch.setattr(train_types, "finish_typed_run", crash)
    with pytest.raises(RuntimeError):
        main(argv)
    assert not out.exists()
    monkeypatch.setattr(train_types, "finish_typed_run", real)
    assert main([*argv, "--resume"]) == 0
    record = json.loads((out / "calibration.json").read_text())
    assert record["problem_type"] == "multi_label_classification" and len(record["thresholds"]) == 3
    assert "problem_type: multi-label" in (out / "llmclf_config.yaml").read_text()
    from llmclf.models import load_classifier

    model, _ = load_classifier(str(out))
    assert model.config.problem_type == "multi_label_classification" and model.config.num_labels == 3
