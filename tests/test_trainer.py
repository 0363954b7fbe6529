"""The Trainer llmclf runs (llmclf.trainer): evaluation batches sorted by length, predictions in dataset order."""

import numpy as np
import pytest
import torch

from llmclf.models import tiny_random_llama
from llmclf.trainer import longest_first, trainer_class

LABELS = {0: "neg", 1: "pos"}
LENGTHS = (5, 40, 17, 2, 33, 9, 40, 21, 3, 12, 28)  # two of the longest: ties keep dataset order


def rows_of_lengths(lengths):
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 250, (n,), generator=generator).tolist(), "attention_mask": [1] * n,
             "labels": i % 2} for i, n in enumerate(lengths)]


class RecordingCollator:
    """The collator training uses, recording the padded width and the label order of every batch it builds."""

    def __init__(self, inner):
        self.inner, self.widths, self.labels = inner, [], []

    def __call__(self, features):
        batch = self.inner(features)
        self.widths.append(int(batch["input_ids"].shape[1]))
        self.labels.extend(int(x) for x in batch["labels"])
        return batch


def trainer_over(rows, packing, tmp_path, group_by_length=True):
    from transformers import DataCollatorWithPadding, TrainingArguments

    from llmclf.packing import PackedCollator

    model, tokenizer = tiny_random_llama(LABELS, seed=5)
    inner = (PackedCollator(tokenizer.pad_token_id, 64, 1) if packing
             else DataCollatorWithPadding(tokenizer))
    collator = RecordingCollator(inner)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], per_device_eval_batch_size=3,
                             remove_unused_columns=not packing,
                             train_sampling_strategy="group_by_length" if group_by_length else "random")
    trainer = trainer_class(packing=packing)(model=model, args=args, data_collator=collator, eval_dataset=rows)
    return trainer, model, collator


def test_longest_first_is_a_stable_descending_sort_and_needs_input_ids():
    order = longest_first(rows_of_lengths(LENGTHS))
    assert order.tolist() == [1, 6, 4, 10, 7, 2, 9, 5, 0, 8, 3]
    assert longest_first([{"text": "no ids"}]) is None


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("group_by_length", [True, False])
def test_evaluation_runs_longest_first_and_predict_answers_in_dataset_order(packing, group_by_length, tmp_path):
    rows = rows_of_lengths(LENGTHS)
    trainer, model, collator = trainer_over(rows, packing, tmp_path, group_by_length)
    output = trainer.predict(rows)

    # each batch holds the next 3 texts by length (longest first), so it is padded only to its own longest
    expected_order = longest_first(rows)
    assert collator.labels == [rows[i]["labels"] for i in expected_order]
    if not packing:
        sorted_lengths = [LENGTHS[i] for i in expected_order]
        assert collator.widths == [sorted_lengths[k] for k in range(0, len(rows), 3)]

    # ... and predict hands every prediction back beside its own text and label
    assert output.label_ids.tolist() == [r["labels"] for r in rows]
    model.eval()
    with torch.no_grad():
        alone = np.stack([model(input_ids=torch.tensor([r["input_ids"]])).logits[0].float().numpy() for r in rows])
    assert np.allclose(output.predictions, alone, atol=1e-4)


def test_evaluate_metrics_do_not_depend_on_the_order(tmp_path):
    from llmclf.trainer import trainer_metrics

    rows = rows_of_lengths(LENGTHS)
    trainer, model, _ = trainer_over(rows, False, tmp_path)
    trainer.compute_metrics = trainer_metrics(LABELS)
    evaluated = trainer.evaluate()
    model.eval()
    with torch.no_grad():
        logits = np.stack([model(input_ids=torch.tensor([r["input_ids"]])).logits[0].numpy() for r in rows])
    from transformers import EvalPrediction

    direct = trainer_metrics(LABELS)(EvalPrediction(predictions=logits, label_ids=np.array([r["labels"] for r in rows])))
    assert evaluated["eval_accuracy"] == pytest.approx(direct["accuracy"])
    assert evaluated["eval_roc_auc"] == pytest.approx(direct["roc_auc"], abs=1e-6)


@pytest.mark.slow
def test_training_with_torch_compile_ends_where_eager_training_ends(tmp_path, sentiment_csv):
    """--torch-compile changes how the steps run, not what they compute: the same loss and weights up to float
    error, and the saved model is a plain (uncompiled) one that predict loads."""
    import json

    from llmclf.cli import main
    from llmclf.predict import Classifier

    runs = {}
    for name, flags in (("eager", []), ("compiled", ["--torch-compile"])):
        out = tmp_path / name
        assert main(["train", "--data", str(sentiment_csv), "--model", "tiny-random-llama", "--epochs", "1",
                     "--text-column", "review", "--batch-size", "8", "--learning-rate", "1e-3", "--max-length", "48",
                     "--group-by-length", "--output", str(out), *flags]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    eager, compiled = runs["eager"]["training"], runs["compiled"]["training"]
    assert np.isclose(compiled["rank_param_checksums"][0], eager["rank_param_checksums"][0], rtol=1e-4)
    assert np.isclose(compiled["train_loss"], eager["train_loss"], rtol=1e-3)
    assert runs["compiled"]["validation"]["accuracy"] == runs["eager"]["validation"]["accuracy"]
    classifier = Classifier.from_pretrained(str(tmp_path / "compiled"))
    assert not any("_orig_mod" in name for name, _ in classifier.model.named_parameters())
    assert np.allclose(classifier.predict_proba(["a great film"]),
                       Classifier.from_pretrained(str(tmp_path / "eager")).predict_proba(["a great film"]), atol=1e-3)


def test_gradient_accumulation_reports_the_loss_of_one_batch_of_the_same_texts(tmp_path, sentiment_csv):
    """Batches of 8 accumulated twice train on the same 16 texts a step as batches of 16, and every reported loss
    is the mean over those texts. (transformers scaled a classifier's loss as a sum over a step's items, which the
    sequence-classification heads never compute: the logged loss and the gradients came out times the
    accumulation steps, and under DDP times the world size.)"""
    import json

    from llmclf.cli import main

    runs = {}
    for name, flags in (("one", ["--batch-size", "16"]), ("accumulated", ["--batch-size", "8",
                                                                           "--gradient-accumulation-steps", "2"])):
        out = tmp_path / name
        assert main(["train", "--data", str(sentiment_csv), "--model", "tiny-random-llama", "--epochs", "2",
                     "--text-column", "review", "--learning-rate", "1e-3", "--max-length", "48", "--seed", "7",
                     "--output", str(out), *flags]) == 0
        runs[name] = (json.loads((out / "metrics.json").read_text())["training"],
                      [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()])
    (one, one_history), (accumulated, accumulated_history) = runs["one"], runs["accumulated"]
    assert accumulated["steps"] == one["steps"]
    assert accumulated["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
    assert len(one_history) == len(accumulated_history) == 2
    for a, b in zip(one_history, accumulated_history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
