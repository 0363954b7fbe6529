"""The multi-label and regression parts of `llmclf train`: their splits, their validation scores, and what their
finished run saves (llmclf.train calls these where the single-label path does its own).

What the saved model carries beyond the weights (config.json "llmclf" for a full model, calibration.json beside
a LoRA adapter, as llmclf.artifacts.write_calibration places it):

    multi-label  {"problem_type": "multi_label_classification", "thresholds": {label: t, ...},
                  "fitted_temperature": 1.0, "temperature": 1.0, "temperature_in_head": false, "threshold": null,
                  "threshold_objective": "f1", ...}   a label is chosen when its sigmoid probability >= its t
    regression   {"problem_type": "regression", "target_mean": m, "target_std": s,
                  "interval": {"level": 0.9, "halfwidth": q}}   (interval only with --interval)
                 prediction = raw output * s + m; the interval is prediction +- q (original scale)

config.json's own `problem_type` is "multi_label_classification" or "regression" (num_labels 1, id2label {0:
the label column's name}), so transformers applies BCE-with-logits or MSE and `pipeline` a sigmoid or nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmclf.artifacts import write_calibration, write_metrics
from llmclf.calibration import Calibration
from llmclf.config import TrainArgs
from llmclf.data import LabelledTexts, load_labelled, split_train_validation
from llmclf.problem_types import (HF_PROBLEM_TYPES, MULTI_LABEL, REGRESSION, label_lists, multi_label_names,
                                  multi_label_targets, parse_class_weights, regression_targets)
from llmclf.regression import Standardiser
from llmclf.type_eval import TypedSplit, score_split


def typed_splits(args: TrainArgs, data: LabelledTexts, problem_type: str):
    """train.Splits for multi-label or regression data: labels encoded (multi-hot vectors, or floats on the
    original scale), the validation part split off unstratified, and for regression the training targets'
    standardiser."""
    from llmclf.train import Splits, first

    encode, id2label = _encoder(args, data, problem_type)
    parts = {}
    for name, source in (("--validation-data", args.validation_data), ("--test-data", args.test_data)):
        if source:
            part = load_labelled(source, text_column=args.text_column, label_column=args.label_column, what=name,
                                 label_columns=args.label_columns)
            part.labels = encode(part.labels, f"{name} {source}")
            parts[name] = part
    data.labels = encode(data.labels, f"--data {args.data}")
    if "--validation-data" in parts:
        train, validation = data, parts["--validation-data"]
    else:
        train, validation = split_train_validation(data, args.validation_fraction, args.seed, stratify=False)
    train, validation = first(train, args.max_train_samples), first(validation, args.max_eval_samples)
    standardiser = Standardiser.fit(train.labels, f"--data {args.data}") if problem_type == REGRESSION else None
    return Splits(train, validation, parts.get("--test-data"), id2label, problem_type, standardiser)


def _encoder(args: TrainArgs, data: LabelledTexts, problem_type: str):
    """(labels, what) -> encoded labels, and id2label, from the training data."""
    if problem_type == REGRESSION:
        return regression_targets, {0: args.label_column}
    separator, allow = args.label_separator, args.allow_empty_labels
    if args.label_columns:
        id2label = dict(enumerate(args.label_columns))
    else:
        id2label = multi_label_names(label_lists(data.labels, separator, allow, f"--data {args.data}"),
                                     args.label_names)
    return (lambda labels, what: multi_label_targets(labels, id2label, separator=separator, allow_empty=allow,
                                                     label_columns=args.label_columns, what=what)), id2label


def resolve_pos_weight(spec: str | None, train_labels, id2label: dict[int, str]) -> list[float] | None:
    """`--class-weights` of a multi-label run as BCE's pos_weight, one per label: `balanced` is negatives /
    positives per label on the training part (llmclf.multilabel.balanced_pos_weight); explicit weights are
    checked against the labels as single-label runs check them."""
    from llmclf.multilabel import balanced_pos_weight
    from llmclf.train import resolve_class_weights

    if parse_class_weights(spec) == "balanced":
        return balanced_pos_weight(train_labels)
    return resolve_class_weights(spec, [], id2label)


def trainer_view(splits, part: LabelledTexts) -> LabelledTexts:
    """What the Trainer sees of a split: regression targets standardised, other labels as they are."""
    if splits.standardiser is None:
        return part
    return LabelledTexts(part.texts, splits.standardiser.apply(part.labels).tolist(), part.source)


# --- after training ----------------------------------------------------------------------------------------

def typed_parts(args: TrainArgs, model, tokenizer, splits, precision: str) -> list[TypedSplit]:
    """Validation (and test) outputs of the trained model through the Classifier API `llmclf predict` uses
    (llmclf.type_eval), so that `llmclf evaluate` of the saved model on the same rows reproduces metrics.json."""
    from llmclf.train import run_classifier

    if splits.problem_type == REGRESSION:  # the scale the model is saved with: predict_values undoes it
        model.config.llmclf = {"problem_type": HF_PROBLEM_TYPES[REGRESSION], "target_mean": splits.standardiser.mean,
                               "target_std": splits.standardiser.std}
    classifier = run_classifier(args, model, tokenizer, precision, temperature=1.0)
    return [score_split(classifier, name, part.texts, part.labels)
            for name, part in (("validation", splits.validation), ("test", splits.test)) if part is not None]


def saved_record(args: TrainArgs, splits, fitted: dict) -> dict:
    """The "llmclf" record of a multi-label or regression model (see the module docstring)."""
    problem = splits.problem_type
    if problem == MULTI_LABEL:
        record = Calibration(1.0, None, "f1").to_record(temperature_in_head=False)
        return {"problem_type": HF_PROBLEM_TYPES[problem], **record, "thresholds": fitted["thresholds"]}
    record = {"problem_type": HF_PROBLEM_TYPES[problem], "target_mean": splits.standardiser.mean,
              "target_std": splits.standardiser.std}
    if fitted.get("interval"):
        record["interval"] = fitted["interval"]
    return record


def fit_on_validation(args: TrainArgs, splits, validation: TypedSplit) -> dict:
    """Multi-label: per-label thresholds tuned for F1; regression: the conformal interval (with --interval)."""
    from llmclf.multilabel import tune_thresholds
    from llmclf.regression import conformal_halfwidth

    if splits.problem_type == MULTI_LABEL:
        thresholds = tune_thresholds(validation.targets, validation.outputs)
        return {"thresholds": {splits.id2label[j]: float(t) for j, t in enumerate(thresholds)}}
    if args.interval is None:
        return {}
    halfwidth = conformal_halfwidth(validation.targets, validation.outputs, args.interval)
    return {"interval": {"level": args.interval, "halfwidth": halfwidth}}


def finish_typed_run(stage: Path, output: Path, args: TrainArgs, model, tokenizer, splits, parts: list[TypedSplit],
                     history: list[dict], training: dict) -> None:
    """finish_run for multi-label and regression: thresholds or interval fitted on validation, metrics, plots,
    report.html, the model with its record, the card and metrics.json, all into the staging directory."""
    from llmclf.models import save_classifier
    from llmclf.type_report import write_typed_analysis, write_typed_card

    fitted = fit_on_validation(args, splits, parts[0])
    (stage / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history), encoding="utf-8")
    data_info = {
        "train": args.data, "validation": args.validation_data, "test": args.test_data,
        "train_size": len(splits.train), "validation_size": len(splits.validation),
        "test_size": len(splits.test) if splits.test else None, "label_names": args.label_names,
    }
    run = {"config": args.to_dict(), "data_info": data_info, "training": training, "title": output.name}
    analysis = write_typed_analysis(stage, parts, splits.id2label, splits.problem_type, fitted, history, run)
    results = {**analysis.metrics, "training": training, "behaviour": analysis.behaviour}
    save_classifier(model, tokenizer, stage, merge=not args.save_adapter)
    write_calibration(stage, saved_record(args, splits, fitted))
    write_typed_card(stage, run, results, analysis, history)
    write_metrics(stage, results)
    if not args.keep_checkpoints:
        shutil.rmtree(stage / "checkpoints", ignore_errors=True)
