"""Packed training batches (llmclf/packing.py) give the padded path's logits, loss and training run."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmclf.cli import main
from llmclf.models import add_lora, tiny_random_llama
from llmclf.packing import PackedCollator, pack_rows, packed_logits
from llmclf.problem_types import HF_PROBLEM_TYPES, MULTI_LABEL, REGRESSION
from llmclf.trainer import trainer_class, typed_loss

LABELS = {0: "neg", 1: "pos"}


@given(st.lists(st.integers(1, 64), min_size=1, max_size=40), st.integers(64, 128))
def test_pack_rows_places_every_text_once_within_the_row_length(lengths, row_length):
    rows = pack_rows(lengths, row_length)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= row_length for row in rows)
    assert len(rows) <= len(lengths)


def texts_of_lengths(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 250, (n,), generator=generator).tolist() for n in lengths]


@pytest.mark.parametrize("lora", [False, True])
def test_packed_logits_and_loss_equal_one_text_at_a_time(lora):
    model, tokenizer = tiny_random_llama(LABELS, seed=3)
    if lora:
        model = add_lora(model)
    model.eval()
    ids = texts_of_lengths([5, 64, 17, 1, 40, 23, 64, 9])
    labels = [0, 1, 1, 0, 1, 0, 0, 1]
    batch = PackedCollator(tokenizer.pad_token_id, row_length=64, pad_to_multiple_of=16)(
        [{"input_ids": x, "labels": y} for x, y in zip(ids, labels)])
    assert batch["input_ids"].shape[0] < len(ids)  # several texts share rows
    with torch.no_grad():
        packed = packed_logits(model, batch["input_ids"], batch["position_ids"], batch["text_ends"])
        alone = torch.cat([model(input_ids=torch.tensor([x])).logits for x in ids])
        padded = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        padded_loss = model(**padded, labels=torch.tensor(labels)).loss
    assert torch.allclose(packed, alone, atol=1e-5)
    assert torch.allclose(torch.nn.functional.cross_entropy(packed, batch["labels"]), padded_loss, atol=1e-5)


@pytest.mark.slow
def test_training_with_packing_ends_where_padded_training_ends(tmp_path, sentiment_csv):
    """Same data order, same gradients up to float error: the trained weights and metrics agree."""
    runs = {}
    for name, flags in (("padded", []), ("packed", ["--packing"])):
        out = tmp_path / name
        assert main(["train", "--data", str(sentiment_csv), "--model", "tiny-random-llama", "--epochs", "2",
                     "--text-column", "review", "--batch-size", "8", "--learning-rate", "1e-3", "--max-length", "48",
                     "--output", str(out),
                     *flags]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    padded, packed = runs["padded"], runs["packed"]
    assert np.isclose(packed["training"]["rank_param_checksums"][0], padded["training"]["rank_param_checksums"][0],
                      rtol=1e-4)
    assert np.isclose(packed["training"]["train_loss"], padded["training"]["train_loss"], rtol=1e-3)
    assert packed["validation"]["accuracy"] == padded["validation"]["accuracy"]


# --- multi-label and regression ------------------------------------------------------------------------------

TYPED = {  # problem type -> (id2label, targets of the 8 texts below, loss options)
    MULTI_LABEL: ({0: "anger", 1: "fear", 2: "joy"},
                  [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0],
                   [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], {"class_weights": [0.5, 3.0, 2.0]}),
    REGRESSION: ({0: "rating"}, [-1.5, 0.2, 2.5, -0.3, 1.1, 0.0, -2.2, 0.7], {"loss": "huber"}),
}


@pytest.mark.parametrize("problem_type", [MULTI_LABEL, REGRESSION])
@pytest.mark.parametrize("lora", [False, True])
def test_packed_typed_logits_and_loss_equal_the_padded_path(tmp_path, problem_type, lora):
    """The loss TypedLossTrainer takes on a packed batch is the one it takes on the same texts padded: float
    labels survive the packed collator, and BCE (with pos_weight) / MSE / Huber see the same logits."""
    from transformers import DataCollatorWithPadding, TrainingArguments

    id2label, targets, options = TYPED[problem_type]
    model, tokenizer = tiny_random_llama(id2label, seed=3, problem_type=HF_PROBLEM_TYPES[problem_type])
    if lora:
        model = add_lora(model)
    model.eval()
    ids = texts_of_lengths([5, 64, 17, 1, 40, 23, 64, 9])
    features = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": y} for x, y in zip(ids, targets)]
    packed_batch = PackedCollator(tokenizer.pad_token_id, row_length=64, pad_to_multiple_of=16)(
        [{k: f[k] for k in ("input_ids", "labels")} for f in features])
    padded_batch = DataCollatorWithPadding(tokenizer)(features)
    assert packed_batch["input_ids"].shape[0] < len(ids)  # several texts share rows
    assert packed_batch["labels"].dtype == padded_batch["labels"].dtype == torch.float32
    assert torch.equal(packed_batch["labels"], padded_batch["labels"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    packed_trainer = trainer_class(packing=True, problem_type=problem_type, **options)(model=model, args=args)
    padded_trainer = trainer_class(problem_type=problem_type, **options)(model=model, args=args)
    with torch.no_grad():
        packed = packed_logits(model, *(packed_batch[k] for k in ("input_ids", "position_ids", "text_ends")))
        alone = torch.cat([model(input_ids=torch.tensor([x])).logits for x in ids])
        packed_loss, outputs = packed_trainer.compute_loss(model, dict(packed_batch), return_outputs=True)
        padded_loss = padded_trainer.compute_loss(model, dict(padded_batch))
        own = model(**padded_batch).loss  # transformers' own BCE / MSE, no pos_weight, no Huber
    assert packed.shape == (len(ids), len(id2label))
    assert torch.allclose(packed, alone, atol=1e-5) and torch.allclose(outputs.logits, packed)
    assert torch.allclose(packed_loss, padded_loss, atol=1e-5)
    assert torch.allclose(typed_loss(packed, packed_batch["labels"], problem_type), own, atol=1e-5)


def typed_data(tmp_path, problem_type):
    """A tiny multi-label (emotions) or regression (ratings) data set, its run flags and the validation metrics
    to compare."""
    import pandas as pd

    from test_multilabel import emotion_rows
    from test_regression import rating_rows

    path = tmp_path / f"{problem_type}.jsonl"
    if problem_type == MULTI_LABEL:
        pd.DataFrame(emotion_rows(64)).to_json(path, orient="records", lines=True)
        return path, ["--class-weights", "balanced"], ("f1_macro", "f1_micro", "loss")
    pd.DataFrame(rating_rows(64)).to_json(path, orient="records", lines=True)
    return path, ["--text-column", "review", "--label-column", "rating", "--loss", "huber"], ("mae", "rmse", "r2")


@pytest.mark.slow
@pytest.mark.parametrize("problem_type", [MULTI_LABEL, REGRESSION])
def test_typed_training_with_packing_ends_where_padded_training_ends(tmp_path, problem_type):
    """As for single-label: the same data order and the same gradients up to float error, so the trained
    weights, the training loss and the type's validation metrics agree."""
    data, flags, names = typed_data(tmp_path, problem_type)
    runs = {}
    for name, packing in (("padded", []), ("packed", ["--packing"])):
        out = tmp_path / name
        assert main(["train", "--data", str(data), "--model", "tiny-random-llama", "--epochs", "2", "--batch-size", "8",
                     "--learning-rate", "1e-3", "--max-length", "32", "--output", str(out), *flags, *packing]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    padded, packed = runs["padded"], runs["packed"]
    assert packed["training"]["loss"] == padded["training"]["loss"]
    assert np.isclose(packed["training"]["rank_param_checksums"][0], padded["training"]["rank_param_checksums"][0],
                      rtol=1e-4)
    assert np.isclose(packed["training"]["train_loss"], padded["training"]["train_loss"], rtol=1e-3)
    for name in names:
        assert packed["validation"][name] == pytest.approx(padded["validation"][name], rel=1e-3, abs=1e-4), name
