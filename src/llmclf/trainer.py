"""transformers' Trainer as llmclf runs it: its arguments from TrainArgs, evaluation kept in dataset order,
packed batches, metrics for its logs, and its log history as one row per epoch.

Imported lazily by llmclf.train (transformers' Trainer takes seconds to import).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmclf import metrics
from llmclf.config import TrainArgs
from llmclf.packing import packed_logits


def training_arguments(args: TrainArgs, checkpoints: Path, bf16: bool):
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    best = args.best_metric
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        lr_scheduler_type=args.lr_scheduler_type,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        seed=args.seed,
        data_seed=args.seed,
        bf16=bf16,
        use_cpu=not cuda,
        eval_strategy="epoch",
        # save_steps: also mid-epoch, so a killed long run loses at most that many steps (never with
        # best_metric, which needs save and evaluation to coincide: TrainArgs refuses the pair).
        save_strategy="steps" if args.save_steps else "epoch",
        save_steps=args.save_steps or 500,
        logging_strategy="epoch",
        save_total_limit=2 if best else 1,
        load_best_model_at_end=best is not None,
        metric_for_best_model=best,
        greater_is_better=None if best is None else best != "loss",
        report_to=[] if args.report_to == "none" else [args.report_to],
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight takes part in each forward pass
        fsdp="full_shard auto_wrap" if args.fsdp else "",  # wraps each decoder layer (model._no_split_modules)
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        disable_tqdm=False,
        remove_unused_columns=not args.packing,  # packed batches carry text_ends, which no forward() names
    )


def trainer_metrics(id2label: dict[int, str]):
    """Trainer's compute_metrics: our metrics on softmax probabilities, flattened to scalars for its logs."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        full = metrics.compute_metrics(np.asarray(labels), metrics.softmax(logits), id2label)
        keys = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc")
        return {k: full[k] for k in keys if full[k] is not None}

    return compute


def history_rows(log_history: list[dict]) -> list[dict]:
    """Trainer's log history -> one row per epoch: train_loss, eval_* metrics, learning_rate."""
    rows: dict[float, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = rows.setdefault(round(float(entry["epoch"]), 4), {"epoch": round(float(entry["epoch"]), 4)})
        for key, value in entry.items():
            if key == "loss":
                row["train_loss"] = value
            elif key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")):
                row[key] = value
            elif key == "learning_rate":
                row[key] = value
    return [rows[e] for e in sorted(rows) if any(k.startswith("eval_") for k in rows[e])]


def trainer_class(packing: bool = False, class_weights: list[float] | None = None):
    """transformers' Trainer, with evaluation and prediction always in dataset order; with `packing`, computing
    logits and loss from packed batches (llmclf.packing); with `class_weights` (one per label id), the loss is
    weighted cross-entropy.

    transformers 5 also length-groups *evaluation* batches under group_by_length, so `Trainer.predict` returns
    predictions in another order than the dataset's: metrics Trainer computes itself stay right (labels travel
    with the batch), but pairing the predictions with the texts does not (it gave chance-level accuracy).

    The weighted loss is torch's `cross_entropy(logits, labels, weight=w)` with mean reduction: sum_i w[y_i] *
    loss_i / sum_i w[y_i] over the batch, so a step's loss stays on the scale of an unweighted one and batches with
    more heavy-weight examples do not take larger steps. Trainer's num_items_in_batch is not used (as in the
    packed path): each step's loss is a mean, and Trainer scales it for gradient accumulation.
    """
    import torch
    from transformers import Trainer
    from transformers.modeling_outputs import SequenceClassifierOutput

    class OrderedEvalTrainer(Trainer):
        def _get_eval_sampler(self, eval_dataset):
            strategy = self.args.train_sampling_strategy
            self.args.train_sampling_strategy = "random"  # the training order alone is grouped by length
            try:
                return super()._get_eval_sampler(eval_dataset)
            finally:
                self.args.train_sampling_strategy = strategy

    class PackedTrainer(OrderedEvalTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # our loss is a mean per step: let Trainer scale accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = packed_logits(model, inputs["input_ids"], inputs["position_ids"], inputs["text_ends"])
            loss = torch.nn.functional.cross_entropy(logits.float(), inputs["labels"])  # mean per text, as padded
            return (loss, SequenceClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    if class_weights is None:
        return PackedTrainer if packing else OrderedEvalTrainer
    weights = torch.tensor(class_weights, dtype=torch.float32)

    class WeightedTrainer(PackedTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            if packing:
                logits = packed_logits(model, inputs["input_ids"], inputs["position_ids"], inputs["text_ends"])
            else:  # without labels the model computes no loss of its own
                logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            loss = weighted_cross_entropy(logits, labels, weights)
            return (loss, SequenceClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    return WeightedTrainer


def weighted_cross_entropy(logits, labels, weights):
    """Mean weighted cross-entropy in float32: sum_i w[y_i] * nll_i / sum_i w[y_i] (torch's weighted mean).

    >>> import torch
    >>> float(weighted_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([1.0, 3.0])))
    0.6931471824645996
    """
    import torch

    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights.to(logits.device))
