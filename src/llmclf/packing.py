"""Padding-free training batches: a batch's texts laid end to end in a few rows, each text pooled at its own
last token.

A padded batch costs its longest text times its size; IMDb padded to 512 tokens is about half padding. Here the
texts of a batch are packed first-fit-decreasing into rows of at most `row_length` tokens (the run's max_length),
so the attention cost per row never exceeds a padded row's, and only the rows' tails are padding. Position ids
restart at 0 for every text; transformers reads that as separate documents and masks attention across them
(`masking_utils.find_packed_sequence_indices`), so each text sees exactly what it would see alone. The
classification head runs on every position (as in every `*ForSequenceClassification` decoder); a forward hook on
it picks each text's last token, instead of the model's own pooling, which assumes one text per row.

Tests check the logits and loss against the padded path (tests/test_packing.py); llmclf.trainer's
PackedTrainer trains on these batches.
"""

from __future__ import annotations

from contextlib import contextmanager

from llmclf.heads import head_module

def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """Indices of texts per row, first-fit decreasing: longest texts first, each into the first row with room."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_length - lengths[i])
    return rows


class PackedCollator:
    """Features with `input_ids` (already truncated to max_length) and `labels` -> one packed batch:
    `input_ids` and `position_ids` of shape (rows, width), `text_ends` (the flat index of each text's last
    token, in the features' order) and `labels`."""

    def __init__(self, pad_token_id: int, row_length: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.row_length = row_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids = [list(f["input_ids"]) for f in features]
        rows = pack_rows([len(x) for x in ids], self.row_length)
        width = max(sum(len(ids[i]) for i in row) for row in rows)
        if self.pad_to_multiple_of:
            width = min(-(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of,
                        max(width, self.row_length))
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        # The tail padding of a row gets positions of its own (a document of its own): no text attends to it.
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        text_ends = torch.zeros(len(ids), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n = len(ids[i])
                input_ids[r, start : start + n] = torch.tensor(ids[i])
                position_ids[r, start : start + n] = torch.arange(n)
                text_ends[i] = r * width + start + n - 1
                start += n
            position_ids[r, start:] = torch.arange(width - start)
        batch = {"input_ids": input_ids, "position_ids": position_ids, "text_ends": text_ends}
        if "labels" in features[0]:
            labels = [f["labels"] for f in features]
            # class ids (single-label); multi-hot vectors and regression targets are floats
            whole = all(isinstance(y, int) for y in labels)
            batch["labels"] = torch.tensor(labels, dtype=torch.long if whole else torch.float32)
        return batch


@contextmanager
def capture_head_output(model):
    """Collects the head's output (logits at every position) during a forward pass."""
    captured: dict = {}
    hook = head_module(model).register_forward_hook(lambda module, args, output: captured.__setitem__("logits", output))
    try:
        yield captured
    finally:
        hook.remove()


def packed_logits(model, input_ids, position_ids, text_ends):
    """(texts, num_labels) logits of a packed batch, each text pooled at its last token."""
    with capture_head_output(model) as captured:
        # No attention mask and no cache: transformers then derives the per-text masks from position_ids.
        model(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    every = captured["logits"]
    return every.reshape(-1, every.shape[-1])[text_ends]
