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
