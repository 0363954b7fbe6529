"""Imbalanced classes: weighted cross-entropy (`--class-weights`), and the numbers that matter under imbalance.

The metrics themselves are checked against scikit-learn in test_metrics.py, the recall objective in
test_calibration.py, and the user mistakes in test_bad_input.py.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from helpers import user_error
from llmclf.config import TrainArgs
from llmclf.models import tiny_random_llama
from llmclf.problem_types import parse_class_weights
from llmclf.train import resolve_class_weights

LABELS = {0: "neg", 1: "pos"}
WEIGHTS = [0.5, 4.0]


def trainer_for(model, packing: bool, class_weights, tmp_path):
    from transformers import TrainingArguments

    from llmclf.trainer import trainer_class

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=not packing)
    return trainer_class(packing=packing, class_weights=class_weights)(model=model, args=args)


def batch_of(tokenizer, packing: bool):
    from transformers import DataCollatorWithPadding

    from llmclf.packing import PackedCollator

    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 250, (n,), generator=generator).tolist() for n in (5, 30, 17, 2, 24, 9)]
    rows = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": y} for x, y in zip(ids, [0, 1, 0, 0, 1, 0])]
    if packing:
        return PackedCollator(tokenizer.pad_token_id, 64, 16)([{k: r[k] for k in ("input_ids", "labels")} for r in rows])
    return DataCollatorWithPadding(tokenizer)(rows)


@pytest.mark.parametrize("packing", [False, True])
def test_weighted_loss_is_torch_weighted_cross_entropy(packing, tmp_path):
    model, tokenizer = tiny_random_llama(LABELS, seed=3)
    model.eval()
    batch = batch_of(tokenizer, packing)
    labels = batch["labels"]
    with torch.no_grad():
        if packing:
            from llmclf.packing import packed_logits

            logits = packed_logits(model, batch["input_ids"], batch["position_ids"], batch["text_ends"]).float()
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        weighted = trainer_for(model, packing, WEIGHTS, tmp_path).compute_loss(model, dict(batch))
        plain = trainer_for(model, packing, None, tmp_path).compute_loss(model, dict(batch))
    w = torch.tensor(WEIGHTS)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=w)
    nll = -torch.log_softmax(logits, dim=-1)[torch.arange(len(labels)), labels]
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert torch.allclose(weighted, (w[labels] * nll).sum() / w[labels].sum(), atol=1e-6)  # the weighted mean
    assert torch.allclose(plain, nll.mean(), atol=1e-5)  # no weights: the loss of before
    assert not torch.allclose(weighted, plain, atol=1e-4)
    # equal weights are the unweighted loss, whatever their scale
    assert torch.allclose(trainer_for(model, packing, [3.0, 3.0], tmp_path).compute_loss(model, dict(batch)), plain,
                          atol=1e-5)


def test_without_class_weights_the_trainer_is_the_one_of_before():
    from llmclf.trainer import trainer_class

    assert trainer_class().__name__ == "OrderedEvalTrainer"
    assert trainer_class(packing=True).__name__ == "PackedTrainer"
    assert trainer_class(class_weights=[1.0, 2.0]).__name__ == "WeightedTrainer"


def test_balanced_weights_are_sklearns():
    labels = np.array([0] * 45 + [1] * 5 + [2] * 10)
    names = {0: "a", 1: "b", 2: "c"}
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert resolve_class_weights("balanced", labels, names) == pytest.approx(expected.tolist())
    # a label that only validation has: no weight, the others still n_samples / (num_labels * count)
    absent = resolve_class_weights("balanced", labels[labels != 2], names)
    assert absent == pytest.approx([50 / (3 * 45), 50 / (3 * 5), 0.0])
    assert resolve_class_weights(None, labels, names) is None and resolve_class_weights("none", labels, names) is None
    assert resolve_class_weights("1,2.5,0", labels, names) == [1.0, 2.5, 0.0]


def test_class_weight_mistakes_name_the_problem_and_the_fix():
    assert parse_class_weights(" Balanced ") == "balanced" and parse_class_weights("1, 9") == [1.0, 9.0]
    user_error(r"--class-weights 1,-2: weights must be finite and >= 0; pass balanced, none, or one weight",
               TrainArgs, class_weights="1,-2")
    user_error(r"--class-weights 1,nan: weights must be finite", TrainArgs, class_weights="1,nan")
    user_error(r"--class-weights heavy: not a list of numbers", TrainArgs, class_weights="heavy")
    user_error(r"--class-weights 0,0: every weight is 0", TrainArgs, class_weights="0,0")
    user_error(r"--class-weights 1,2,3: 3 weight\(s\) for 2 labels \(neg, pos\); give one weight per label",
               resolve_class_weights, "1,2,3", [0, 1], LABELS)


@pytest.mark.slow
def test_training_with_balanced_weights_records_them_and_the_imbalance_metrics(tmp_path):
    from conftest import SENTIMENT, keyword_rows

    from llmclf.cli import main
    from llmclf.train import load_splits

    rows = keyword_rows(SENTIMENT, 400, seed=2)
    rows = [r for i, r in enumerate(rows) if r["label"] == "neg" or i % 20 == 1][:200]  # ~9% pos
    data = tmp_path / "imbalanced.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "tiny-random-llama", "--epochs", "1", "--batch-size", "16",
                 "--max-length", "32", "--class-weights", "balanced", "--threshold-objective", "recall",
                 "--target-recall", "0.9", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    splits = load_splits(TrainArgs(data=str(data)))
    counts = np.bincount(splits.train.labels, minlength=2)
    assert 0.03 < counts[1] / counts.sum() < 0.15
    expected = compute_class_weight("balanced", classes=np.arange(2), y=np.asarray(splits.train.labels))
    assert list(metrics["training"]["class_weights"]) == ["neg", "pos"]
    assert list(metrics["training"]["class_weights"].values()) == pytest.approx(expected.tolist())
    validation = metrics["validation"]
    for key in ("balanced_accuracy", "average_precision", "average_precision_per_class", "per_class"):
        assert key in validation
    assert (validation["threshold_objective"], validation["target_recall"]) == ("recall", 0.9)
    card = (out / "README.md").read_text()
    assert "| balanced_accuracy |" in card and "| average_precision |" in card
    assert "weighted cross-entropy, class weights `neg`" in card
    assert json.loads((out / "config.json").read_text())["llmclf"]["target_recall"] == 0.9
