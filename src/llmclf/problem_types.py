"""What a label column holds: one class (single-label), a set of classes (multi-label) or a number (regression);
found from the data unless --problem-type says, and turned into what the model trains on.

>>> detect_problem_type([["anger", "joy"], ["joy"]])
'multi-label'
>>> detect_problem_type(["anger,disgust", "joy"])
'multi-label'
>>> detect_problem_type([3.5, 4, 1.25])
'regression'
>>> encode_multi_hot([["joy"], ["anger", "joy"]], {0: "anger", 1: "joy"})
[[0.0, 1.0], [1.0, 1.0]]

Labels stay raw (as `llmclf.data.load_labelled` read them) until the type is known: multi-label rows become
multi-hot float vectors in id2label order, regression rows floats on the original scale (standardised only on
their way into the Trainer, `llmclf.regression.Standardiser`).

Settings that belong to one problem type (`check_problem_options`, with `parse_class_weights`) are checked here too:
by `llmclf.config` when --problem-type names the type, and by `llmclf.train` once the data has shown it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from llmclf.errors import UserError

if TYPE_CHECKING:
    from llmclf.config import TrainArgs

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single-label", "multi-label", "regression"
# config.problem_type of the saved model: what transformers reads to pick its loss, and `pipeline` its activation.
HF_PROBLEM_TYPES = {SINGLE_LABEL: "single_label_classification", MULTI_LABEL: "multi_label_classification",
                    REGRESSION: "regression"}
# What Trainer logs each epoch (as eval_<key>), and so what --best-metric may name besides loss, per problem type.
EPOCH_METRICS = {
    SINGLE_LABEL: ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"),
    MULTI_LABEL: ("f1_micro", "f1_macro", "f1_weighted", "subset_accuracy", "hamming_loss", "roc_auc"),
    REGRESSION: ("mae", "rmse", "r2", "pearson", "spearman"),
}


def is_list(value: Any) -> bool:
    """A list cell: a Python list or tuple (JSONL), or a numpy array (a Parquet list column)."""
    return isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray"


def looks_like_list(value: Any, separator: str = ",") -> bool:
    """A text cell that spells a list: "[anger, disgust]" or "anger,disgust"."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return (text.startswith("[") and text.endswith("]")) or separator in text


def as_number(value: Any) -> float | None:
    """The value as a float when it is a number or a text that reads as one, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or type(value).__module__ == "numpy":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def detect_problem_type(labels: list, separator: str = ",", what: str = "--data") -> str:
    """The problem type a raw label column implies (see the module docstring); mixed lists and scalars are a
    user mistake."""
    lists = [is_list(v) for v in labels]
    if any(lists):
        if not all(lists):
            row = lists.index(False) if lists[0] else lists.index(True)
            raise UserError(f"{what}: the label column mixes lists and single values (row {row + 1} holds "
                            f"{labels[row]!r}); give every row a list, e.g. [\"joy\"], or none.")
        return MULTI_LABEL
    if any(looks_like_list(v, separator) for v in labels):
        return MULTI_LABEL
    numbers = [as_number(v) for v in labels]
    floats = [isinstance(v, float) for v in labels]  # real floats (JSONL, Parquet), not texts that read as numbers
    if all(n is not None for n in numbers) and any(not math.isfinite(n) or not n.is_integer() for n in numbers):
        return REGRESSION
    if any(floats) and any(n is None for n in numbers):
        row = numbers.index(None)
        raise UserError(f"{what}: the label column mixes numbers and text (row {row + 1} holds {labels[row]!r}); "
                        "use numbers throughout for regression or names throughout for classes.")
    return SINGLE_LABEL


def check_best_metric(best_metric: str | None, problem_type: str) -> None:
    if best_metric is not None and best_metric != "loss" and best_metric not in EPOCH_METRICS[problem_type]:
        raise UserError(f"--best-metric {best_metric} is not a {problem_type} metric; pass one of "
                        f"{', '.join(('loss',) + EPOCH_METRICS[problem_type])}.")


def parse_class_weights(value: str | None) -> str | list[float] | None:
    """`class_weights` as a setting: None (unweighted), "balanced", or explicit weights (their count is checked
    once the labels are known, by llmclf.train.resolve_class_weights).

    >>> parse_class_weights("1, 9"), parse_class_weights("none"), parse_class_weights("balanced")
    ([1.0, 9.0], None, 'balanced')
    """
    if value is None or value.strip().lower() == "none":
        return None
    if value.strip().lower() == "balanced":
        return "balanced"
    fix = "pass balanced, none, or one weight >= 0 per label in label-id order, e.g. --class-weights 1,9"
    try:
        weights = [float(part) for part in value.split(",")]
    except ValueError:
        raise UserError(f"--class-weights {value}: not a list of numbers; {fix}.") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise UserError(f"--class-weights {value}: weights must be finite and >= 0; {fix}.")
    if not any(w > 0 for w in weights):
        raise UserError(f"--class-weights {value}: every weight is 0, so nothing would be learnt; {fix}.")
    return weights


def check_problem_options(args: TrainArgs, problem_type: str) -> None:
    """Settings that belong to one problem type, checked once the type is known (given, or found in the data)."""
    if problem_type == "auto":
        return
    if args.interval is not None and problem_type != REGRESSION:
        raise UserError(f"--interval gives prediction intervals for regression, but this is {problem_type} "
                        "data; drop --interval (or pass --problem-type regression for numeric targets).")
    if args.loss is not None and problem_type != REGRESSION:
        raise UserError(f"--loss {args.loss} is for regression, but this is {problem_type} data; drop --loss.")
    if problem_type == REGRESSION:
        # Flags spelt out rather than built by config.flag: config imports this module.
        for option, given in (("--class-weights", parse_class_weights(args.class_weights) is not None),
                              ("--head-init", args.head_init == "label-words"),
                              ("--threshold-objective", args.threshold_objective != "accuracy")):
            if given:
                raise UserError(f"{option} is for classification, but this is regression data; drop it.")
    if problem_type == MULTI_LABEL and args.threshold_objective != "accuracy":
        raise UserError("--threshold-objective is for single-label models; multi-label runs tune one threshold "
                        "per label for its F1 on validation. Drop --threshold-objective.")


def resolve_problem_type(requested: str, labels: list, separator: str = ",", label_columns=None,
                         what: str = "--data") -> str:
    """--problem-type, or for `auto` the type found in the training labels."""
    if label_columns:
        return MULTI_LABEL
    if requested != "auto":
        return requested
    return detect_problem_type(labels, separator, what)


# --- multi-label --------------------------------------------------------------------------------------------

def split_cell(value: Any, separator: str = ",") -> list[str]:
    """One row's labels as names: a list as it is, a text cell split on `separator` (brackets and quotes
    dropped), a single value as a list of one.

    >>> split_cell("[anger, 'disgust']"), split_cell("joy"), split_cell(3)
    (['anger', 'disgust'], ['joy'], ['3'])
    """
    if is_list(value):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items = text.split(separator)
    else:
        items = [value]
    names = []
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        name = str(item).strip().strip("'\"").strip()
        if name and name not in names:
            names.append(name)
    return names


def label_lists(labels: list, separator: str = ",", allow_empty: bool = False, what: str = "--data") -> list[list[str]]:
    """Every row's label names; an empty list is refused unless `allow_empty`."""
    rows = [split_cell(v, separator) for v in labels]
    lists = [is_list(v) for v in labels]
    if any(lists) and not all(lists):
        row = lists.index(False) if lists[0] else lists.index(True)
        raise UserError(f"{what}: the label column mixes lists and single values (row {row + 1} holds "
                        f"{labels[row]!r}); give every row a list, e.g. [\"joy\"], or none.")
    if not allow_empty:
        for row, names in enumerate(rows):
            if not names:
                raise UserError(f"{what}: row {row + 1} has an empty list of labels; label it, remove it, or pass "
                                "--allow-empty-labels if texts with no label are meant.")
    return rows


def multi_label_names(rows: list[list[str]], label_names: list[str] | None = None) -> dict[int, str]:
    """id2label of a multi-label run: the names found, sorted, or in the order --label-names gives them."""
    found = sorted({name for names in rows for name in names})
    if label_names is not None:
        missing = sorted(set(found) - set(label_names))
        if missing:
            raise UserError(f"--label-names {','.join(label_names)} lacks the data's label(s) {', '.join(missing)}; "
                            "list every label, or leave --label-names out.")
        found = list(label_names)
    if len(found) < 2:
        raise UserError(f"the training data has {len(found)} distinct label(s) ({', '.join(found) or 'none'}); a "
                        "multi-label classifier needs at least two.")
    return dict(enumerate(found))


def encode_multi_hot(rows: list[list[str]], id2label: dict[int, str], what: str = "--data") -> list[list[float]]:
    """Multi-hot float vectors in id2label order; a name never seen in training is a user error."""
    label2id = {name: i for i, name in id2label.items()}
    vectors = []
    for row, names in enumerate(rows):
        vector = [0.0] * len(id2label)
        for name in names:
            if name not in label2id:
                raise UserError(f"{what}: row {row + 1} has label {name!r}, never seen in training (labels: "
                                f"{', '.join(id2label.values())}); fix the label or add it to the training data.")
            vector[label2id[name]] = 1.0
        vectors.append(vector)
    return vectors


def indicator_rows(labels: list, columns: list[str], what: str = "--data") -> list[list[float]]:
    """--label-columns: rows of 0/1 (or true/false) values, one per column, as multi-hot float vectors."""
    vectors = []
    for row, values in enumerate(labels):
        vector = []
        for column, value in zip(columns, values):
            number = 1.0 if str(value).strip().lower() == "true" else 0.0 if str(value).strip().lower() == "false" \
                else as_number(value)
            if number not in (0.0, 1.0):
                raise UserError(f"{what}: row {row + 1} has {value!r} in label column {column!r}; --label-columns "
                                "columns hold 0 or 1 (or true/false).")
            vector.append(number)
        vectors.append(vector)
    return vectors


def multi_label_targets(labels: list, id2label: dict[int, str], *, separator: str = ",", allow_empty: bool = False,
                        label_columns: list[str] | None = None, what: str = "--data") -> list[list[float]]:
    """Raw multi-label labels as multi-hot vectors for a model with labels `id2label`: lists or `separator`-
    separated names (each one known), or with `label_columns` rows of 0/1 values (those columns are the labels,
    in id order); a row without any label only with `allow_empty`."""
    if label_columns:
        vectors = indicator_rows(labels, list(label_columns), what)
        if not allow_empty:  # the rule of an empty list, for rows of zeros
            label_lists([[c for c, v in zip(label_columns, row) if v] for row in vectors], what=what)
        return vectors
    return encode_multi_hot(label_lists(labels, separator, allow_empty, what), id2label, what)


# --- regression ---------------------------------------------------------------------------------------------

def regression_targets(labels: list, what: str = "--data") -> list[float]:
    """Targets as floats; text, NaN and infinities are user errors that name the row."""
    targets = []
    for row, value in enumerate(labels):
        number = None if is_list(value) else as_number(value)
        if number is None:
            raise UserError(f"{what}: row {row + 1} has target {value!r}, not a number; regression targets must be "
                            "numbers (or pass --problem-type single-label for classes).")
        if not math.isfinite(number):
            raise UserError(f"{what}: row {row + 1} has target {value!r}; regression targets must be finite "
                            "numbers: fix or remove that row.")
        targets.append(number)
    return targets
