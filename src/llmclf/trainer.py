"""transformers' Trainer as llmclf runs it: its arguments from TrainArgs, evaluation run longest text first,
packed batches, metrics for its logs, its log history as one row per epoch, and training time kept with each
checkpoint.

Imported lazily by llmclf.train (transformers' Trainer takes seconds to import).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from llmclf import metrics
from llmclf.config import LOWER_IS_BETTER, TrainArgs
from llmclf.packing import packed_logits
from llmclf.problem_types import EPOCH_METRICS, MULTI_LABEL, REGRESSION, SINGLE_LABEL


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
        eval_strategy="epoch" if args.eval_each_epoch else "no",
        # save_steps: also mid-epoch, so a killed long run loses at most that many steps (never with
        # best_metric, which needs save and evaluation to coincide: TrainArgs refuses the pair).
        save_strategy="steps" if args.save_steps else "epoch",
        save_steps=args.save_steps or 500,
        logging_strategy="epoch",
        save_total_limit=2 if best else 1,
        load_best_model_at_end=best is not None,
        metric_for_best_model=best,
        greater_is_better=None if best is None else best not in LOWER_IS_BETTER,
        report_to=[] if args.report_to == "none" else [args.report_to],
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight takes part in each forward pass
        fsdp="full_shard auto_wrap" if args.fsdp else "",  # wraps each decoder layer (model._no_split_modules)
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        disable_tqdm=False,
        torch_compile=args.torch_compile,  # accelerate compiles with dynamic=None: new widths stop recompiling
        remove_unused_columns=not args.packing,  # packed batches carry text_ends, which no forward() names
    )


TRAIN_TIME_FILE = "llmclf_train_time.json"


def earlier_segments(checkpoints: Path) -> list[dict] | None:
    """The training time behind the checkpoint a resumed run continues from (the last one, as Trainer picks
    it): one {"seconds", "steps", "device"} per earlier process, up to its last checkpoint; None when that
    checkpoint has no record (saved by an older llmclf, or killed between the two writes)."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    record = Path(last) / TRAIN_TIME_FILE if last else None
    return json.loads(record.read_text(encoding="utf-8"))["segments"] if record and record.is_file() else None


def finished_checkpoint(checkpoints: Path) -> str | None:
    """The last checkpoint when its run has no steps left (global_step at max_steps), else None. A run killed in
    its finishing step leaves one. Resumed from it, Trainer would still take one more optimizer step (at learning
    rate 0, so the weights stay put, but the step count, loss and time would not) whenever the run ends
    mid-epoch, as `--epochs 1.35` does: it checks max_steps only after a step."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    state = Path(last) / "trainer_state.json" if last else None
    if not (state and state.is_file()):
        return None
    saved = json.loads(state.read_text(encoding="utf-8"))
    return last if saved["global_step"] >= saved["max_steps"] else None


def load_finished(trainer, checkpoint: str) -> None:
    """Puts a finished run's weights and state into `trainer`, as trainer.train(resume_from_checkpoint=...) would
    before its first step, without taking that step."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(checkpoint)  # adapter, head or full model, the way Trainer resumes each
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    if trainer.args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        trainer._load_best_model()  # as train() ends a --best-metric run


def train_time_callback(earlier: list[dict], device: str, started: float):
    """Writes the training time so far into each checkpoint as it is saved (the earlier processes' segments plus
    this one's, measured from `started`), so that a run resumed on another day, or another machine, reports
    the time of the work it kept; the time a killed process spent after its last checkpoint is not counted."""
    from transformers import TrainerCallback

    class TrainTime(TrainerCallback):
        def segments(self, step: int) -> list[dict]:
            """The earlier processes' segments plus this one's up to now, at optimizer step `step`."""
            return [*earlier, {"seconds": round(time.perf_counter() - started, 2), "steps": step, "device": device}]

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                record = {"segments": self.segments(state.global_step)}
                (folder / TRAIN_TIME_FILE).write_text(json.dumps(record), encoding="utf-8")

    return TrainTime()


def save_every_minutes_callback(minutes: float, clock=time.monotonic):
    """Asks Trainer for a checkpoint at the end of the first optimizer step that comes `minutes` or more after
    the last checkpoint (or the start of this process): a bound in time on the work a kill can lose, where
    save_steps is a bound in steps whose time depends on the machine."""
    from transformers import TrainerCallback

    class SaveEveryMinutes(TrainerCallback):
        def __init__(self):
            self.last = clock()

        def on_step_end(self, args, state, control, **kwargs):
            if due_on_any_rank(clock() - self.last >= minutes * 60):
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            self.last = clock()

    return SaveEveryMinutes()


def due_on_any_rank(due: bool) -> bool:
    """Under torchrun every rank must save together (FSDP gathers the shards to save): a checkpoint one rank's
    clock asks for is taken by all of them."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return due
    import torch

    flag = torch.tensor([int(due)])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def trainer_metrics(id2label: dict[int, str], problem_type: str = SINGLE_LABEL, standardiser=None):
    """Trainer's compute_metrics, flattened to scalars for its logs: our metrics on softmax probabilities; for
    multi-label on sigmoid probabilities at threshold 0.5; for regression on the original scale (`standardiser`
    undoes the standardisation of both outputs and targets)."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        if problem_type == MULTI_LABEL:
            from llmclf.multilabel import multilabel_metrics, sigmoid

            full = multilabel_metrics(labels, sigmoid(logits), [id2label[i] for i in sorted(id2label)])
        elif problem_type == REGRESSION:
            from llmclf.regression import regression_metrics

            full = regression_metrics(standardiser.undo(labels.reshape(-1)), standardiser.undo(logits.reshape(-1)))
        else:
            full = metrics.compute_metrics(labels, metrics.softmax(logits), id2label)
        return {k: full[k] for k in EPOCH_METRICS[problem_type] if full.get(k) is not None}

    return compute


def history_rows(log_history: list[dict]) -> list[dict]:
    """Trainer's log history -> one row per epoch: train_loss, eval_* metrics, learning_rate (the closing
    summary's mean `train_loss` over the whole run is left out)."""
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
    return [rows[e] for e in sorted(rows) if any(k.startswith("eval_") or k == "train_loss" for k in rows[e])]


def trainer_class(packing: bool = False, class_weights: list[float] | None = None, problem_type: str = SINGLE_LABEL,
                  loss: str | None = None):
    """transformers' Trainer, with evaluation and prediction run longest text first and predictions handed back
    in dataset order (`longest_first`); with `packing`, computing
    logits and loss from packed batches (llmclf.packing); with `class_weights` (one per label id), the loss is
    weighted cross-entropy.

    transformers 5 also length-groups *evaluation* batches under group_by_length, so `Trainer.predict` returns
    predictions in another order than the dataset's: metrics Trainer computes itself stay right (labels travel
    with the batch), but pairing the predictions with the texts does not (it gave chance-level accuracy). Plain
    dataset order pads most batches to the longest text among eval_batch_size random ones (512 tokens for IMDb at
    max_length 512: 25 minutes per epoch evaluation of the shipped model's 5,000 reviews on 2 cores), so the
    sampler runs the texts sorted by length and `predict` puts its outputs back.

    The weighted loss is torch's `cross_entropy(logits, labels, weight=w)` with mean reduction: sum_i w[y_i] *
    loss_i / sum_i w[y_i] over the batch, so a step's loss stays on the scale of an unweighted one and batches with
    more heavy-weight examples do not take larger steps. Trainer's num_items_in_batch is not used (as in the
    packed path): each step's loss is a mean, and Trainer scales it for gradient accumulation.

    Multi-label and regression runs always compute their loss here (`typed_loss`): BCE with logits (with
    `class_weights` as its pos_weight, one per label), or MSE / Huber on the standardised targets.
    """
    import torch
    from transformers import Trainer
    from transformers.modeling_outputs import SequenceClassifierOutput

    class OrderedEvalTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Every loss here is a mean over the batch's texts. transformers takes a model whose forward accepts
            # **kwargs to sum its loss over the items of the whole step (num_items_in_batch), so it neither
            # divides by the accumulation steps nor undoes DDP's averaging; but the sequence-classification
            # heads never pass num_items_in_batch to their loss, so the loss, its gradient and the logged loss
            # came out times the world size (and times the accumulation steps). Declared a mean, Trainer scales it.
            self.model_accepts_loss_kwargs = False

        def _get_eval_sampler(self, eval_dataset):
            order = self._eval_order(eval_dataset)
            if order is not None:
                return FixedOrderSampler(order)
            strategy = self.args.train_sampling_strategy
            self.args.train_sampling_strategy = "random"  # the training order alone is grouped by length
            try:
                return super()._get_eval_sampler(eval_dataset)
            finally:
                self.args.train_sampling_strategy = strategy

        def _eval_order(self, eval_dataset) -> np.ndarray | None:
            # One process only: under DDP accelerate shards the sampler's batches, and this path is not tested
            # there; it keeps the dataset order of before.
            if self.args.world_size > 1:
                return None
            return longest_first(eval_dataset)

        def predict(self, test_dataset, *args, **kwargs):
            output = super().predict(test_dataset, *args, **kwargs)
            order = self._eval_order(test_dataset)
            if order is None:
                return output
            back = np.argsort(order)  # for each dataset index, its position in the sorted run
            return output._replace(predictions=reorder(output.predictions, back),
                                   label_ids=reorder(output.label_ids, back))

    class PackedTrainer(OrderedEvalTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = packed_logits(model, inputs["input_ids"], inputs["position_ids"], inputs["text_ends"])
            loss = torch.nn.functional.cross_entropy(logits.float(), inputs["labels"])  # mean per text, as padded
            return (loss, SequenceClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    def forward_logits(model, inputs):
        if packing:
            return packed_logits(model, inputs["input_ids"], inputs["position_ids"], inputs["text_ends"])
        return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits  # without labels: no loss of its own

    if problem_type != SINGLE_LABEL:
        class TypedLossTrainer(PackedTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                logits = forward_logits(model, inputs)
                value = typed_loss(logits, inputs["labels"], problem_type, class_weights, loss)
                return (value, SequenceClassifierOutput(loss=value, logits=logits)) if return_outputs else value

        return TypedLossTrainer
    if class_weights is None:
        return PackedTrainer if packing else OrderedEvalTrainer
    weights = torch.tensor(class_weights, dtype=torch.float32)

    class WeightedTrainer(PackedTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            logits = forward_logits(model, inputs)
            loss = weighted_cross_entropy(logits, labels, weights)
            return (loss, SequenceClassifierOutput(loss=loss, logits=logits)) if return_outputs else loss

    return WeightedTrainer


class FixedOrderSampler:
    """A torch sampler over a precomputed index order (torch's DataLoader takes any sized iterable of indices)."""

    def __init__(self, order):
        self.order = [int(i) for i in order]

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def longest_first(dataset) -> np.ndarray | None:
    """Dataset indices by descending input_ids length (stable: ties keep dataset order), or None where the rows
    carry no input_ids. Longest first, so a batch too large for memory fails at once, not at the end.

    >>> longest_first([{"input_ids": [1]}, {"input_ids": [1, 2, 3]}, {"input_ids": [1, 2]}, {"input_ids": [4]}]).tolist()
    [1, 2, 0, 3]
    """
    from llmclf.predict import longest_first_order

    try:
        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
    except (KeyError, TypeError, IndexError):
        return None
    return np.asarray(longest_first_order(lengths), dtype=int)


def reorder(values, back: np.ndarray):
    """Rows of an array (or of each array in a tuple) taken in `back`'s order; None stays None."""
    if values is None:
        return None
    if isinstance(values, (tuple, list)):
        return type(values)(reorder(v, back) for v in values)
    return np.asarray(values)[back]


def weighted_cross_entropy(logits, labels, weights):
    """Mean weighted cross-entropy in float32: sum_i w[y_i] * nll_i / sum_i w[y_i] (torch's weighted mean).

    >>> import torch
    >>> float(weighted_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([1.0, 3.0])))
    0.6931471824645996
    """
    import torch

    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights.to(logits.device))


def typed_loss(logits, labels, problem_type: str, pos_weight: list[float] | None = None, loss: str | None = None):
    """The mean loss of a multi-label or regression batch, in float32.

    Multi-label: torch's BCEWithLogits over every (text, label) cell, `pos_weight` (one per label) multiplying
    the positive terms. Regression: MSE, or Huber (delta 1, on standardised targets) for loss "huber".

    >>> import torch
    >>> float(typed_loss(torch.zeros(1, 1), torch.tensor([2.0]), "regression"))
    4.0
    """
    import torch

    logits = logits.float()
    if problem_type == MULTI_LABEL:
        weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32, device=logits.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)
    outputs, targets = logits.reshape(-1), labels.float().reshape(-1)
    if loss == "huber":
        return torch.nn.functional.huber_loss(outputs, targets, delta=1.0)
    return torch.nn.functional.mse_loss(outputs, targets)
