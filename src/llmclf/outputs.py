"""What a model's outputs mean, by problem type: the decision rules and the records and columns they give.

- single-label (`single_label_classification`, the default): softmax probabilities, one label per text;
- multi-label (`multi_label_classification`): a sigmoid probability per label, and every label whose probability
  reaches its threshold (config.json "llmclf": {"thresholds": {label: t}}, 0.5 when missing);
- regression (`regression`): one standardised output per text, de-standardised as
  value = raw * target_std + target_mean, with an optional interval value +/- halfwidth.

>>> Scale(mean=3.0, std=2.0, halfwidth=0.5).values(np.array([1.0]))
array([5.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmclf.errors import UserError
from llmclf import problem_types

# A saved model's config.problem_type (transformers' names, which Classifier reads).
SINGLE_LABEL = problem_types.HF_PROBLEM_TYPES[problem_types.SINGLE_LABEL]
MULTI_LABEL = problem_types.HF_PROBLEM_TYPES[problem_types.MULTI_LABEL]
REGRESSION = problem_types.HF_PROBLEM_TYPES[problem_types.REGRESSION]
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)


def problem_type_of(config, saved: dict) -> str:
    """The model's problem type: config.json's `problem_type`, else the llmclf record's (a LoRA adapter's base
    config may not carry it), else single-label as every model before multi-label and regression."""
    value = getattr(config, "problem_type", None) or saved.get("problem_type") or SINGLE_LABEL
    if value not in PROBLEM_TYPES:
        raise UserError(f"the model's problem_type {value!r} is not one of {', '.join(PROBLEM_TYPES)}; fix "
                        "problem_type in its config.json.")
    return value


def check_decision_options(problem_type: str, num_labels: int, threshold: float | None,
                           min_confidence: float | None) -> None:
    """Refuse the decision options that mean nothing for this kind of model, before any text is scored."""
    if problem_type == REGRESSION and (threshold is not None or min_confidence is not None):
        option = "--threshold" if threshold is not None else "--min-confidence"
        raise UserError(f"{option} is for classifiers; this is a regression model (it outputs a value): drop {option}.")
    if problem_type == SINGLE_LABEL and threshold is not None and num_labels != 2:
        raise UserError("--threshold applies to binary classifiers only; this model has "
                        f"{num_labels} labels.")


def label_thresholds(labels: list[str], saved: dict, override: float | None) -> np.ndarray:
    """A multi-label model's threshold per label, in id order: `override` for every label when given, else the
    saved ones, else 0.5 (the sigmoid's even odds)."""
    if override is not None:
        return np.full(len(labels), float(override))
    saved_thresholds = saved.get("thresholds") or {}
    return np.asarray([float(saved_thresholds.get(label, 0.5)) for label in labels])


@dataclass(frozen=True)
class Scale:
    """A regression model's way back from its standardised output to the target's units, and its interval."""

    mean: float = 0.0
    std: float = 1.0
    halfwidth: float | None = None  # value +/- halfwidth covers `level` of held-out targets
    level: float | None = None

    @classmethod
    def from_saved(cls, saved: dict) -> "Scale":
        interval = saved.get("interval") or {}
        halfwidth = interval.get("halfwidth")
        return cls(mean=float(saved.get("target_mean", 0.0) or 0.0),
                   std=float(1.0 if saved.get("target_std") is None else saved["target_std"]),
                   halfwidth=None if halfwidth is None else float(halfwidth),
                   level=None if interval.get("level") is None else float(interval["level"]))

    def values(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64) * self.std + self.mean


def single_label_records(probs: np.ndarray, best: np.ndarray, labels: list[str],
                         min_confidence: float | None) -> list[dict]:
    """label, score (its probability), probs by label, needs_review (top probability below min_confidence)."""
    return [{"label": labels[int(b)], "score": float(row[b]),
             "probs": {label: float(p) for label, p in zip(labels, row)},
             "needs_review": min_confidence is not None and float(row.max()) < min_confidence}
            for row, b in zip(probs, best)]


def multi_label_records(probs: np.ndarray, chosen: np.ndarray, labels: list[str],
                        min_confidence: float | None) -> list[dict]:
    """labels (those chosen, in id order), probs by label, score (the highest probability), needs_review.

    needs_review: some label's decision is less sure than min_confidence, that is max(p, 1 - p) < min_confidence
    for a label (the top probability alone would flag every text the model confidently gives no label)."""
    sure = np.maximum(probs, 1 - probs).min(axis=1) if len(probs) else np.zeros(0)
    return [{"labels": [label for label, c in zip(labels, row_chosen) if c], "score": float(row.max()),
             "probs": {label: float(p) for label, p in zip(labels, row)},
             "needs_review": min_confidence is not None and float(least) < min_confidence}
            for row, row_chosen, least in zip(probs, chosen, sure)]


def regression_records(values: np.ndarray, scale: Scale) -> list[dict]:
    """value, and value_low / value_high when the model was saved with an interval."""
    records = []
    for value in values:
        record = {"value": float(value)}
        if scale.halfwidth is not None:
            record |= {"value_low": float(value - scale.halfwidth), "value_high": float(value + scale.halfwidth)}
        records.append(record)
    return records


def added_columns(problem_type: str, labels: list[str], with_review: bool, with_interval: bool) -> list[str]:
    """The columns file and CSV scoring add, in order (an input must not have them already)."""
    if problem_type == REGRESSION:
        return ["value"] + (["value_low", "value_high"] if with_interval else [])
    first = ["labels"] if problem_type == MULTI_LABEL else ["label", "score"]
    return first + [f"prob_{label}" for label in labels] + (["needs_review"] if with_review else [])


def record_columns(records: list[dict], columns: list[str]) -> dict[str, list]:
    """`columns` (from added_columns) filled from classify records; prob_<label> from each record's probs."""
    out = {}
    for column in columns:
        if column.startswith("prob_"):  # no record key starts so: these are the probs by label
            out[column] = [r["probs"][column[len("prob_"):]] for r in records]
        else:
            out[column] = [r[column] for r in records]
    return out
