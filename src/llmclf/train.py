"""Fine-tune a decoder LLM as a sequence classifier: data -> model -> Trainer -> metrics, plots, card, model.

    llmclf train --data ../shared/data/imdb/train.parquet --recipe seed --output runs/imdb

Reads top to bottom: `train()` checks every input before it writes anything, trains in a staging directory
beside --output, and renames it into place only when the run is complete, so a run that fails or is killed
never leaves a directory that looks finished (`--resume` continues it from its last epoch checkpoint).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from llmclf import metrics as M
from llmclf.analysis import Part, lookup_ratings, write_analysis
from llmclf.calibration import fit_calibration, save_calibration, scale_head
from llmclf.config import TrainArgs
from llmclf.data import (LabelledTexts, encode_labels, load_labelled, make_label_maps, publish_dir,
                         split_train_validation)
from llmclf.errors import UserError
from llmclf.models import CONFIG_FILE, add_lora, load_backbone, quiet_progress, save_classifier
from llmclf.packing import PackedCollator, packed_trainer_class
from llmclf.predict import Classifier
from llmclf.report import write_model_card
from llmclf.zeroshot import prepare_head


@dataclass
class Splits:
    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts | None
    id2label: dict[int, str]


def staging_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.llmclf-partial"


def check_output(output: Path, overwrite: bool, resume: bool) -> None:
    stage = staging_dir(output)
    if resume:
        if not list((stage / "checkpoints").glob("checkpoint-*")):
            raise UserError(f"--resume: no unfinished run with checkpoints for --output {output} "
                            f"(looked in {stage}); start it without --resume.")
        return
    if stage.exists() and not overwrite:
        raise UserError(f"--output {output}: an unfinished run is in {stage}; pass --resume to continue it "
                        "or --overwrite to start over.")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        what = "holds a model" if (output / "config.json").exists() or (output / CONFIG_FILE).exists() else "is not empty"
        raise UserError(f"--output {output} {what}; pass --overwrite to replace it, or choose another --output.")


def load_splits(args: TrainArgs) -> Splits:
    if args.data is None:
        raise UserError("no training data; pass --data PATH_OR_NAME (a CSV/TSV/JSONL/Parquet file, a folder, or e.g. imdb).")
    columns = dict(text_column=args.text_column, label_column=args.label_column)
    data = load_labelled(args.data, what="--data", **columns)
    id2label, _ = make_label_maps(data.labels, args.label_names)
    if args.validation_data:
        train, validation = data, load_labelled(args.validation_data, what="--validation-data", **columns)
    else:
        train, validation = split_train_validation(data, args.validation_fraction, args.seed)
    test = load_labelled(args.test_data, what="--test-data", **columns) if args.test_data else None
    if len(set(encode_labels(train.labels, id2label))) < 2:
        raise UserError(f"--data {args.data}: after the split the training part has a single class; add examples.")
    for name, part in (("--validation-data", validation), ("--test-data", test)):
        if part is not None:
            part.labels = encode_labels(part.labels, id2label, what=f"{name} {part.source}")
    train.labels = encode_labels(train.labels, id2label)
    if args.max_train_samples:
        train = LabelledTexts(train.texts[: args.max_train_samples], train.labels[: args.max_train_samples], train.source)
    if args.max_eval_samples:
        validation = LabelledTexts(validation.texts[: args.max_eval_samples], validation.labels[: args.max_eval_samples],
                                   validation.source)
    return Splits(train, validation, test, id2label)


class TokenizedTexts:
    """A list-backed dataset of tokenized examples, one window per text as `Classifier` cuts it
    (llmclf.prompts.training_windows); padding happens per batch in the collator."""

    def __init__(self, part: LabelledTexts, tokenizer, max_length: int, truncation: str = "head", prompt=None):
        from llmclf.prompts import training_windows

        self.rows = [{"input_ids": window, "attention_mask": [1] * len(window), "labels": label}
                     for window, label in zip(training_windows(part.texts, tokenizer, max_length, truncation, prompt),
                                              part.labels)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def trainer_metrics(id2label: dict[int, str]):
    """Trainer's compute_metrics: our metrics on softmax probabilities, flattened to scalars for its logs."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        full = M.compute_metrics(np.asarray(labels), M.softmax(logits), id2label)
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


def use_bf16(args: TrainArgs) -> bool:
    import torch

    from llmclf.models import auto_bf16

    return args.bf16 if args.bf16 is not None else auto_bf16("cuda" if torch.cuda.is_available() else "cpu")


def training_arguments(args: TrainArgs, checkpoints: Path):
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
        bf16=use_bf16(args),
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
        fsdp="full_shard auto_wrap" if args.fsdp else "",
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",  # wraps each decoder layer (model._no_split_modules)
        disable_tqdm=False,
        remove_unused_columns=not args.packing,  # packed batches carry text_ends, which no forward() names
    )


def trainer_class():
    """transformers' Trainer, with evaluation and prediction always in dataset order.

    transformers 5 also length-groups *evaluation* batches under group_by_length, so `Trainer.predict` returns
    predictions in another order than the dataset's: metrics Trainer computes itself stay right (labels travel
    with the batch), but pairing the predictions with the texts does not (it gave chance-level accuracy).
    """
    from transformers import Trainer

    class OrderedEvalTrainer(Trainer):
        def _get_eval_sampler(self, eval_dataset):
            strategy = self.args.train_sampling_strategy
            self.args.train_sampling_strategy = "random"  # the training order alone is grouped by length
            try:
                return super()._get_eval_sampler(eval_dataset)
            finally:
                self.args.train_sampling_strategy = strategy

    return OrderedEvalTrainer


def rank_checksums(model, state) -> list[float]:
    """Every rank's sum of its trainable weights: under DDP they must be equal, whichever rank you ask."""
    import torch
    from accelerate.utils import gather_object

    with torch.no_grad():
        total = float(sum(p.double().sum() for p in model.parameters() if p.requires_grad))
    return gather_object([total]) if state.num_processes > 1 else [total]


def check_report_to(report_to: str) -> None:
    import importlib.util

    module = {"tensorboard": "tensorboard", "mlflow": "mlflow"}.get(report_to)
    if module and importlib.util.find_spec(module) is None:
        raise UserError(f"--report-to {report_to}: {module} is not installed; run `pip install 'llmclf[{module}]'`.")


def train(args: TrainArgs, overwrite: bool = False, resume: bool = False) -> Path:
    """Fine-tune `args.model` on `args.data`; returns the finished output directory.

    >>> train(TrainArgs(data="reviews.csv", model="tiny-random-llama", output="runs/tiny"))  # doctest: +SKIP
    PosixPath('runs/tiny')
    """
    output = Path(args.output)
    check_output(output, overwrite, resume)
    check_report_to(args.report_to)
    splits = load_splits(args)
    # Imported after the cheap checks: transformers' Trainer takes seconds to import, and a typo should not wait.
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    args.label_names = [splits.id2label[i] for i in sorted(splits.id2label)]
    import torch

    # A LoRA run never updates the backbone, so under bf16 it is stored in bf16: half the memory, no casts per step.
    frozen_bf16 = args.lora and use_bf16(args)
    with quiet_progress():  # a template or label word that does not fit the backbone stays a one-line error
        model, tokenizer = load_backbone(args.model, splits.id2label, seed=args.seed,
                                         trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
                                         dtype=torch.bfloat16 if frozen_bf16 else None)
    prompt = prepare_head(args, model, tokenizer)  # checks the template and label words before anything is written
    if args.lora:
        model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, top_layers=args.lora_layers)

    stage = staging_dir(output)
    training_args = training_arguments(args, stage / "checkpoints")  # joins the process group under torchrun
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()  # every rank has checked --output before rank 0 writes beside it
    if state.is_main_process:
        if not resume:
            shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True, exist_ok=True)
        (stage / CONFIG_FILE).write_text(yaml.safe_dump(args.to_dict(), sort_keys=False), encoding="utf-8")
    state.wait_for_everyone()

    started = time.perf_counter()
    train_set = TokenizedTexts(splits.train, tokenizer, args.max_length, args.truncation, prompt)
    validation_set = TokenizedTexts(splits.validation, tokenizer, args.max_length, args.truncation, prompt)
    # The card pads every text to max_length; "longest" pads each batch only to its own longest text; packing
    # pads only the tails of rows that hold several texts.
    if args.packing:
        collator = PackedCollator(tokenizer.pad_token_id, args.max_length, args.pad_to_multiple_of)
    else:
        collator = DataCollatorWithPadding(tokenizer, padding=args.padding, max_length=args.max_length,
                                           pad_to_multiple_of=args.pad_to_multiple_of if args.padding == "longest" else None)
    callbacks = [EarlyStoppingCallback(args.early_stopping_patience)] if args.early_stopping_patience else []
    trainer = (packed_trainer_class() if args.packing else trainer_class())(
        model=model, args=training_args, train_dataset=train_set,
        eval_dataset=validation_set, data_collator=collator, compute_metrics=trainer_metrics(splits.id2label),
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - started
    history = history_rows(trainer.state.log_history)

    checksums = rank_checksums(trainer.model, state)
    if not state.is_main_process:  # rank 0 alone scores the final model and writes
        return output
    parts = final_parts(args, trainer.model, tokenizer, splits)
    training = {
        "train_seconds": round(train_seconds, 2),
        "train_examples": len(splits.train),
        "epochs": args.epochs,
        "train_loss": result.training_loss,
        "best_checkpoint": trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).name,
        "world_size": state.num_processes,
        "bf16": use_bf16(args),
        "rank_param_checksums": checksums,
    }

    finish_run(stage, output, args, trainer.model, tokenizer, splits, parts, history, training)
    return output


def final_parts(args: TrainArgs, model, tokenizer, splits: Splits) -> list[Part]:
    """Validation (and test) logits as `llmclf evaluate` computes them from the saved model: through
    `Classifier`, with the run's truncation mode and prompt template (for chunks, the log of the windows' mean
    probabilities), so evaluating the finished model on the same rows reproduces metrics.json."""
    from llmclf.analysis import model_logits

    classifier = Classifier(model, tokenizer, max_length=args.max_length, batch_size=args.eval_batch_size,
                            device=str(next(model.parameters()).device), truncation=args.truncation,
                            prompt_template=args.prompt_template, temperature=1.0,
                            precision="bf16" if use_bf16(args) else "fp32")
    parts = []
    for name, part, source in (("validation", splits.validation, args.validation_data or args.data),
                               ("test", splits.test, args.test_data)):
        if part is not None:
            logits, _ = model_logits(classifier, part.texts)
            parts.append(Part(name, part.texts, part.labels, logits,
                              lookup_ratings(source, args.text_column, part.texts)))
    return parts


def finish_run(stage: Path, output: Path, args: TrainArgs, model, tokenizer, splits: Splits, parts: list[Part],
               history: list[dict], training: dict) -> None:
    """Everything after the weights are trained: calibration, analysis, report, model card, the saved model,
    and the rename of the staging directory to `output`."""
    # Temperature, then (binary) threshold, fitted on validation data; from here on the head carries the temperature.
    calibration = fit_calibration(parts[0].logits, parts[0].labels, args.threshold_objective, args.target_precision)
    in_head = scale_head(model, calibration.temperature)
    classifier = Classifier(model, tokenizer, max_length=args.max_length, batch_size=args.eval_batch_size,
                            device=str(next(model.parameters()).device), threshold=calibration.threshold,
                            temperature=1.0 if in_head else calibration.temperature,
                            truncation=args.truncation, prompt_template=args.prompt_template,
                            # as trained: a LoRA run's bf16 backbone needs autocast, whatever `auto` says here
                            precision="bf16" if use_bf16(args) else "fp32")
    (stage / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history), encoding="utf-8")
    data_info = {
        "train": args.data, "validation": args.validation_data, "test": args.test_data,
        "train_size": len(splits.train), "validation_size": len(splits.validation),
        "test_size": len(splits.test) if splits.test else None, "label_names": args.label_names,
    }
    # Before saving: merging a LoRA model unloads it, and the behaviour checks run on the model in memory.
    analysis = write_analysis(stage, parts, splits.id2label, calibration, classifier=classifier, history=history,
                              run={"config": args.to_dict(), "data_info": data_info, "training": training,
                                   "title": output.name})
    results = {**analysis.metrics, "training": training}
    save_classifier(model, tokenizer, stage, merge=not args.save_adapter)
    save_calibration(stage, calibration, in_head)
    write_model_card(stage, config=args.to_dict(), metrics=results["validation"], history=history, data_info=data_info,
                     plots=[str(p) for p in analysis.plots], test_metrics=results.get("test"), name=output.name,
                     analysis={"split": analysis.split, "metrics": results[analysis.split], "errors": analysis.errors,
                               "behaviour": analysis.behaviour, "temperature_in_head": in_head})
    (stage / "metrics.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    if not args.keep_checkpoints:
        shutil.rmtree(stage / "checkpoints", ignore_errors=True)
    publish_dir(stage, output)
