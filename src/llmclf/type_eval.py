"""Multi-label and regression models scored on labelled data exactly as `llmclf predict` scores them.

One path for both callers: a training run's validation and test metrics (llmclf.train_types) and
`llmclf evaluate` (llmclf.evaluate), so evaluating the saved model on its validation rows reproduces metrics.json.

    multi-label  Classifier.predict_proba: a sigmoid per label, the mean over a text's windows, (n, k); decided
                 at the thresholds the classifier applies (saved with the model)
    regression   Classifier.predict_values: values in the target's units, (n,); the interval as saved

    llmclf evaluate --model runs/emotions --data val.jsonl --output runs/emotions-eval

`llmclf evaluate` reads the labels with the settings the model was trained with (llmclf_config.yaml:
label_column, label_columns, label_separator, allow_empty_labels) unless its flags say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmclf import outputs, problem_types
from llmclf.errors import UserError

# Classifier.problem_type (transformers' names) -> the run's problem type (llmclf.problem_types' names).
RUN_TYPES = {hf: run for run, hf in problem_types.HF_PROBLEM_TYPES.items()}


@dataclass
class TypedSplit:
    """One split's texts, targets and the model's outputs on it (as `llmclf predict` computes them):
    multi-label: multi-hot targets (n, k) and mean sigmoid probabilities over a text's windows (n, k);
    regression: targets (n,) and predictions on the original scale (n,)."""

    name: str
    texts: list[str]
    targets: np.ndarray
    outputs: np.ndarray


def typed_outputs(classifier, texts: list[str]) -> np.ndarray:
    """Per text what `llmclf predict` reports: probabilities by label (multi-label) or the value (regression)."""
    if classifier.problem_type == outputs.REGRESSION:
        return np.atleast_1d(classifier.predict_values(list(texts)))
    return np.atleast_2d(classifier.predict_proba(list(texts)))


def score_split(classifier, name: str, texts: list[str], targets) -> TypedSplit:
    return TypedSplit(name, list(texts), np.asarray(targets, dtype=np.float64), typed_outputs(classifier, texts))


def saved_fit(classifier) -> dict:
    """The thresholds or interval the classifier applies (those saved with the model), in the form
    llmclf.train_types.fit_on_validation fitted them."""
    if classifier.problem_type == outputs.MULTI_LABEL:
        return {"thresholds": {label: float(t) for label, t in zip(classifier.labels, classifier.thresholds)}}
    scale = classifier.scale
    return {} if scale.halfwidth is None else {"interval": {"level": scale.level, "halfwidth": scale.halfwidth}}


# --- llmclf evaluate ---------------------------------------------------------------------------------------

def label_settings(run: dict, text_column: str | None, label_column: str | None,
                   label_columns: str | None) -> dict:
    """Where the labels are and how they read: the flags given, else the model's training settings."""
    columns = label_columns.split(",") if label_columns else run.get("label_columns")
    return {"text_column": text_column or run.get("text_column") or "text",
            "label_column": label_column or run.get("label_column") or "label",
            "label_columns": [c.strip() for c in columns] if columns else None,
            "separator": run.get("label_separator") or ",", "allow_empty": bool(run.get("allow_empty_labels"))}


def read_targets(labels: list, classifier, settings: dict, what: str) -> np.ndarray:
    """The data's raw labels as the model's targets; a label it does not know, a list where none belongs or a
    target that is no finite number is a user error naming the row."""
    if classifier.problem_type == outputs.REGRESSION:
        return np.asarray(problem_types.regression_targets(labels, what))
    columns = settings["label_columns"]
    if columns and len(columns) != len(classifier.labels):
        raise UserError(f"--label-columns {','.join(columns)}: {len(columns)} column(s) for the model's "
                        f"{len(classifier.labels)} labels ({', '.join(classifier.labels)}); give one 0/1 column "
                        "per label, in that order.")
    vectors = problem_types.multi_label_targets(labels, classifier.id2label, separator=settings["separator"],
                                                allow_empty=settings["allow_empty"], label_columns=columns, what=what)
    return np.asarray(vectors)


def evaluate_typed(classifier, model: str, data: str, part, settings: dict, out: Path | None, run: dict) -> dict:
    """`llmclf evaluate` of a multi-label or regression model on loaded data (see llmclf.evaluate)."""
    from llmclf.artifacts import staged, write_metrics
    from llmclf.type_report import typed_split_metrics, write_typed_analysis

    problem_type, id2label = RUN_TYPES[classifier.problem_type], classifier.id2label
    scored = score_split(classifier, "test", part.texts, read_targets(part.labels, classifier, settings,
                                                                      f"--data {data}"))
    fitted = saved_fit(classifier)
    if out is None:
        return typed_split_metrics(scored, id2label, problem_type, fitted)
    # Written beside the target and renamed, so an interrupted run leaves no half-filled --output.
    with staged(out) as stage:
        analysis = write_typed_analysis(stage, [scored], id2label, problem_type, fitted,
                                        run={"title": f"{Path(model).name} on {Path(data).name}", "config": run,
                                             "data_info": {"test": data, "test_size": len(part)}})
        metrics = analysis.metrics["test"]
        write_metrics(stage, {"test": metrics, "behaviour": analysis.behaviour, "model": model, "data": data})
    return metrics
