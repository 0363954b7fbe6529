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

from llmclf.analysis import ScoredSplit, lookup_ratings, write_analysis
from llmclf.artifacts import RUN_CONFIG_FILE, staged, staging_path, write_metrics, write_run_config
from llmclf.calibration import fit_calibration, save_calibration, scale_head
from llmclf.config import TrainArgs
from llmclf.data import LabelledTexts, encode_labels, load_labelled, make_label_maps, split_train_validation
from llmclf.errors import UserError
from llmclf.models import add_lora, load_backbone, quiet_progress, save_classifier
from llmclf.precision import default_device, device_summary, resolve_precision
from llmclf.predict import Classifier
from llmclf.problem_types import (HF_PROBLEM_TYPES, REGRESSION, SINGLE_LABEL, check_best_metric,
                                  check_problem_options, is_list, parse_class_weights, resolve_problem_type)
from llmclf.report import write_model_card
from llmclf.zeroshot import prepare_head


@dataclass
class Splits:
    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts | None
    id2label: dict[int, str]
    problem_type: str = SINGLE_LABEL
    standardiser: object = None
    """Regression: the training targets' llmclf.regression.Standardiser."""


def first(part: LabelledTexts, n: int | None) -> LabelledTexts:
    """The first n examples (all without n): --max-train-samples, --max-eval-samples."""
    return part if not n else LabelledTexts(part.texts[:n], part.labels[:n], part.source)


def check_output(output: Path, overwrite: bool, resume: bool) -> None:
    stage = staging_path(output)
    if resume:
        if not list((stage / "checkpoints").glob("checkpoint-*")):
            raise UserError(f"--resume: no unfinished run with checkpoints for --output {output} "
                            f"(looked in {stage}); start it without --resume.")
        return
    if stage.exists() and not overwrite:
        raise UserError(f"--output {output}: an unfinished run is in {stage}; pass --resume to continue it "
                        "or --overwrite to start over.")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        what = "holds a model" if (output / "config.json").exists() or (output / RUN_CONFIG_FILE).exists() else "is not empty"
        raise UserError(f"--output {output} {what}; pass --overwrite to replace it, or choose another --output.")


def load_splits(args: TrainArgs) -> Splits:
    if args.data is None:
        raise UserError("no training data; pass --data PATH_OR_NAME (a CSV/TSV/JSONL/Parquet file, a folder, or e.g. imdb).")
    columns = dict(text_column=args.text_column, label_column=args.label_column, label_columns=args.label_columns)
    data = load_labelled(args.data, what="--data", **columns)
    problem = resolve_problem_type(args.problem_type, data.labels, args.label_separator, args.label_columns,
                                   f"--data {args.data}")
    check_problem_options(args, problem)
    if problem != SINGLE_LABEL:
        from llmclf.train_types import typed_splits

        return typed_splits(args, data, problem)
    if any(is_list(label) for label in data.labels):
        raise UserError(f"--data {args.data}: --problem-type single-label, but the label column holds lists; drop "
                        "--problem-type (lists are found as multi-label) or give one label per row.")
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
    return Splits(first(train, args.max_train_samples), first(validation, args.max_eval_samples), test, id2label)


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


def rank_checksums(model, state) -> list[float]:
    """Every rank's sum of its trainable weights: under DDP they must be equal, whichever rank you ask."""
    import torch
    from accelerate.utils import gather_object

    with torch.no_grad():
        total = float(sum(p.double().sum() for p in model.parameters() if p.requires_grad))
    return gather_object([total]) if state.num_processes > 1 else [total]


def resolve_class_weights(spec: str | None, train_labels, id2label: dict[int, str]) -> list[float] | None:
    """`--class-weights` as one weight per label id: None (unweighted), `balanced` from the training labels as
    scikit-learn's compute_class_weight("balanced") gives them (n_samples / (num_labels * count)), or the
    explicit weights once their count is checked against the labels.

    >>> resolve_class_weights("balanced", [0, 0, 0, 1], {0: "neg", 1: "pos"})
    [0.6666666666666666, 2.0]
    """
    import numpy as np

    weights = parse_class_weights(spec)
    if weights is None:
        return None
    if weights == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.asarray(train_labels)
        present = np.unique(labels)
        found = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=labels)))
        # A label absent from the training part (seen only in validation) gets no weight: it cannot occur in the loss.
        return [float(found.get(i, 0.0)) * len(present) / len(id2label) for i in sorted(id2label)]
    if len(weights) != len(id2label):
        names = ", ".join(id2label[i] for i in sorted(id2label))
        raise UserError(f"--class-weights {spec}: {len(weights)} weight(s) for {len(id2label)} labels ({names}); "
                        "give one weight per label, in that order, or --class-weights balanced.")
    return weights


def check_report_to(report_to: str) -> None:
    import importlib.util

    module = {"tensorboard": "tensorboard", "mlflow": "mlflow"}.get(report_to)
    if module and importlib.util.find_spec(module) is None:
        raise UserError(f"--report-to {report_to}: {module} is not installed; run `pip install 'llmclf[{module}]'`.")


def build_model(args: TrainArgs, id2label: dict[int, str], precision: str, problem_type: str = SINGLE_LABEL):
    """The backbone with its head (random or from label words) and LoRA adapters for a LoRA run; its tokenizer;
    and the prompt template, checked against the tokenizer before anything is written."""
    import torch

    # A LoRA run never updates the backbone, so under bf16 it is stored in bf16: half the memory, no casts per step.
    frozen_bf16 = args.lora and precision == "bf16"
    with quiet_progress():  # a template or label word that does not fit the backbone stays a one-line error
        model, tokenizer = load_backbone(args.model, id2label, seed=args.seed, trust_remote_code=args.trust_remote_code,
                                         allow_pickle=args.allow_pickle, dtype=torch.bfloat16 if frozen_bf16 else None,
                                         problem_type=HF_PROBLEM_TYPES[problem_type])
    prompt = prepare_head(args, model, tokenizer)  # before LoRA wraps the head
    if args.lora:
        model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, top_layers=args.lora_layers,
                         under_autocast=frozen_bf16)  # the Trainer and Classifier run a bf16 run in autocast
    return model, tokenizer, prompt


def build_trainer(args: TrainArgs, model, tokenizer, prompt, splits: Splits, training_args,
                  class_weights: list[float] | None = None, extra_callbacks: tuple = ()):
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from llmclf.packing import PackedCollator
    from llmclf.train_types import trainer_view
    from llmclf.trainer import trainer_class, trainer_metrics

    # The card pads every text to max_length; "longest" pads each batch only to its own longest text; packing
    # pads only the tails of rows that hold several texts.
    if args.packing:
        collator = PackedCollator(tokenizer.pad_token_id, args.max_length, args.pad_to_multiple_of)
    else:
        collator = DataCollatorWithPadding(tokenizer, padding=args.padding, max_length=args.max_length,
                                           pad_to_multiple_of=args.pad_to_multiple_of if args.padding == "longest" else None)
    callbacks = [EarlyStoppingCallback(args.early_stopping_patience)] if args.early_stopping_patience else []
    callbacks += extra_callbacks
    cls = trainer_class(packing=args.packing, class_weights=class_weights, problem_type=splits.problem_type,
                        loss=args.loss)
    dataset = lambda part: TokenizedTexts(trainer_view(splits, part), tokenizer, args.max_length, args.truncation, prompt)
    return cls(model=model, args=training_args, data_collator=collator, train_dataset=dataset(splits.train),
               eval_dataset=dataset(splits.validation), callbacks=callbacks,
               compute_metrics=trainer_metrics(splits.id2label, splits.problem_type, splits.standardiser))


def train(args: TrainArgs, overwrite: bool = False, resume: bool = False) -> Path:
    """Fine-tune `args.model` on `args.data`; returns the finished output directory.

    >>> train(TrainArgs(data="reviews.csv", model="tiny-random-llama", output="runs/tiny"))  # doctest: +SKIP
    PosixPath('runs/tiny')
    """
    output = Path(args.output)
    check_output(output, overwrite, resume)
    check_report_to(args.report_to)
    splits = load_splits(args)
    args.label_names = [splits.id2label[i] for i in sorted(splits.id2label)]
    # The run config records the type found, so `--config llmclf_config.yaml` trains the same kind of model.
    args.problem_type = splits.problem_type
    if splits.problem_type == REGRESSION:
        args.loss = args.loss or "mse"
    check_best_metric(args.best_metric, splits.problem_type)
    class_weights = resolve_weights(args, splits)
    # Imported after the cheap checks: transformers' Trainer takes seconds to import, and a typo should not wait.
    from accelerate import PartialState

    from llmclf.trainer import (earlier_segments, finished_checkpoint, history_rows, load_finished,
                                save_every_minutes_callback, train_time_callback, training_arguments)

    precision = resolve_precision(args.precision, default_device())
    model, tokenizer, prompt = build_model(args, splits.id2label, precision, splits.problem_type)
    # Joins the process group under torchrun.
    training_args = training_arguments(args, staging_path(output) / "checkpoints", bf16=precision == "bf16")
    state = PartialState()
    state.wait_for_everyone()  # every rank has checked --output before rank 0 writes beside it
    # A failed or killed run keeps its staging directory, so that --resume can continue from its checkpoints.
    with staged(output, resume=resume, keep_on_failure=True, owner=state.is_main_process) as stage:
        if state.is_main_process:
            write_run_config(stage, args.to_dict())
        state.wait_for_everyone()
        device = device_summary(default_device())
        earlier = earlier_segments(Path(training_args.output_dir)) if resume else []
        train_time = train_time_callback(earlier or [], device, time.perf_counter())
        callbacks = [train_time]
        if args.save_minutes:
            callbacks.append(save_every_minutes_callback(args.save_minutes))
        trainer = build_trainer(args, model, tokenizer, prompt, splits, training_args, class_weights, tuple(callbacks))
        # FSDP checkpoints hold shards that only Trainer's own resume path gathers, so FSDP keeps it.
        finished = finished_checkpoint(Path(training_args.output_dir)) if resume and not args.fsdp else None
        if finished:  # killed in its finishing step: no training left, only the finishing step
            load_finished(trainer, finished)
            training_loss, segments = None, earlier or []
        else:
            training_loss = trainer.train(resume_from_checkpoint=True if resume else None).training_loss
            segments = train_time.segments(trainer.state.global_step)
        checksums = rank_checksums(trainer.model, state)
        if not state.is_main_process:  # rank 0 alone scores the final model and writes
            return output
        training = {
            # A resumed run: the earlier processes' time up to the checkpoint it continued from, plus its own
            # (only its own when that checkpoint kept no record: then train_segments is null).
            "train_seconds": round(sum(segment["seconds"] for segment in segments), 2),
            "train_segments": None if earlier is None else segments,
            "eval_each_epoch": args.eval_each_epoch,
            "train_examples": len(splits.train),
            "epochs": args.epochs,
            "steps": trainer.state.global_step,
            "train_loss": training_loss,  # this process's steps only (null when it took none)
            "best_checkpoint": trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).name,
            "world_size": state.num_processes,
            "bf16": precision == "bf16",
            "device": device,
            "resumed": resume,
            "rank_param_checksums": checksums,
            "class_weights": None if class_weights is None else dict(zip(args.label_names, class_weights)),
        }
        history = history_rows(trainer.state.log_history)
        if splits.problem_type == SINGLE_LABEL:
            parts = final_parts(args, trainer.model, tokenizer, splits, precision)
            finish_run(stage, output, args, trainer.model, tokenizer, splits, parts, history, training, precision)
        else:
            from llmclf.train_types import finish_typed_run, typed_parts

            training["loss"] = args.loss or "bce_with_logits"
            parts = typed_parts(args, trainer.model, tokenizer, splits, precision)
            finish_typed_run(stage, output, args, trainer.model, tokenizer, splits, parts, history, training)
    return output


def resolve_weights(args: TrainArgs, splits: Splits) -> list[float] | None:
    """--class-weights as the loss uses them: cross-entropy weights (single-label) or BCE's pos_weight."""
    if splits.problem_type == SINGLE_LABEL:
        return resolve_class_weights(args.class_weights, splits.train.labels, splits.id2label)
    from llmclf.train_types import resolve_pos_weight

    return resolve_pos_weight(args.class_weights, splits.train.labels, splits.id2label)


def run_classifier(args: TrainArgs, model, tokenizer, precision: str, **options) -> Classifier:
    """The trained model in memory as `llmclf predict` will run it once saved: the run's max_length, truncation
    and prompt template, in the precision it was trained in (a LoRA run's bf16 backbone needs autocast, whatever
    `auto` says here). `options`: temperature, threshold."""
    return Classifier(model, tokenizer, max_length=args.max_length, batch_size=args.eval_batch_size,
                      device=str(next(model.parameters()).device), truncation=args.truncation,
                      prompt_template=args.prompt_template, precision=precision, **options)


def final_parts(args: TrainArgs, model, tokenizer, splits: Splits, precision: str) -> list[ScoredSplit]:
    """Validation (and test) logits as `llmclf evaluate` computes them from the saved model: through
    `Classifier`, with the run's truncation mode and prompt template (for chunks, the log of the windows' mean
    probabilities), so evaluating the finished model on the same rows reproduces metrics.json."""
    from llmclf.analysis import model_logits

    classifier = run_classifier(args, model, tokenizer, precision, temperature=1.0)
    parts = []
    for name, part, source in (("validation", splits.validation, args.validation_data or args.data),
                               ("test", splits.test, args.test_data)):
        if part is not None:
            logits, _ = model_logits(classifier, part.texts)
            parts.append(ScoredSplit(name, part.texts, part.labels, logits,
                                     lookup_ratings(source, args.text_column, part.texts)))
    return parts


def finish_run(stage: Path, output: Path, args: TrainArgs, model, tokenizer, splits: Splits,
               parts: list[ScoredSplit], history: list[dict], training: dict, precision: str) -> None:
    """Everything after the weights are trained, written into the staging directory: calibration, analysis,
    report, model card and the saved model. `precision` is the one the model was trained in."""
    # Temperature, then (binary) threshold, fitted on validation data; from here on the head carries the temperature.
    calibration = fit_calibration(parts[0].logits, parts[0].labels, args.threshold_objective, args.target_precision,
                                  args.target_recall)
    in_head = scale_head(model, calibration.temperature)
    classifier = run_classifier(args, model, tokenizer, precision, threshold=calibration.threshold,
                                temperature=1.0 if in_head else calibration.temperature)
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
                     class_weights=training.get("class_weights"), training=training,
                     analysis={"split": analysis.split, "metrics": results[analysis.split], "errors": analysis.errors,
                               "behaviour": analysis.behaviour, "temperature_in_head": in_head})
    write_metrics(stage, results)
    if not args.keep_checkpoints:
        shutil.rmtree(stage / "checkpoints", ignore_errors=True)
