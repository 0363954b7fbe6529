"""Everything a run reports beyond the plain metrics: calibration numbers, the decision threshold, abstention,
error analysis and behaviour checks, written beside the model by one entry point, `write_analysis`.

>>> part = ScoredSplit("validation", texts, labels, logits)                                     # doctest: +SKIP
>>> calibration = fit_calibration(part.logits, part.labels, "f1")                        # doctest: +SKIP
>>> result = write_analysis("runs/x", [part], {0: "neg", 1: "pos"}, calibration)         # doctest: +SKIP
>>> result.metrics["validation"]["ece_calibrated"]                                       # doctest: +SKIP
0.018

What each split's metrics hold (the `validation` and `test` blocks of metrics.json): `compute_metrics` of the
calibrated probabilities -- the probabilities the saved model gives -- so `loss` is the calibrated NLL and
`accuracy`, `balanced_accuracy`, F1, per-class recall and the confusion matrix are of the argmax
(`average_precision` and `roc_auc` of the probabilities); then

    temperature         the T the logits were divided by (fitted on validation data)
    loss_uncalibrated   NLL of softmax(logits), before T
    ece, ece_calibrated expected calibration error (15 equal-width bins, top-class confidence) before/after T
    threshold           binary: label id 1 when its probability >= threshold (null: argmax)
    threshold_objective, target_precision, target_recall   what the threshold was tuned for
    threshold_p_value   objective accuracy: p-value of the best threshold's gain over 0.5 on validation (a
                        one-sided sign test); the threshold stays 0.5 unless it is below 0.05
    at_threshold        binary: accuracy, precision/recall/F1 of label id 1, macro F1 of the thresholded decisions
    coverage_at_99_accuracy, min_confidence_at_99_accuracy (and _98_): the largest share of examples that
                        `--min-confidence` can keep while the kept ones are that accurate, and the cut-off

errors.jsonl holds one JSON object per line, tagged by `kind` (each also names its `split`):

    mistake        the 20 surest wrong decisions: rank, index (in the split), label, predicted, confidence,
                   prob_label, words, text (a snippet of at most 300 characters)
    length_bucket  up to 4 groups cut at the word-count quartiles: bucket, min_words, max_words, n, accuracy,
                   f1_macro, errors, mean_confidence
    rating         the same per star rating, for data with a rating/stars/star_rating column (or aclImdb names)
    confused_pair  label, predicted, count, share_of_label, most frequent first

Decisions for abstention and error analysis are the ones `predict` makes: the threshold applied, confidence
the top calibrated probability. Error analysis and figures describe the last split given (test when a run
has one, else validation). behaviour.json is written for sentiment models only (rule in `llmclf.behaviour`);
where the calibration is saved is in `llmclf.calibration`.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from llmclf.metrics import compute_metrics, cross_entropy, softmax
from llmclf.artifacts import read_calibration
from llmclf.calibration import (COVERAGE_TARGETS, Calibration, coverage_at_accuracy, decisions,
                                expected_calibration_error)

TOP_MISTAKES = 20
SNIPPET_CHARS = 300
LENGTH_BUCKETS = 4
TOP_PAIRS = 10
RATING_COLUMNS = ("rating", "stars", "star_rating")


@dataclass
class ScoredSplit:
    """One split's texts, label ids and the model's logits before any temperature (n, num_labels)."""

    name: str
    texts: list[str]
    labels: np.ndarray
    logits: np.ndarray
    ratings: list | None = None
    """A star rating per text, when the data has one (None entries where unknown)."""

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.logits = np.asarray(self.logits, dtype=np.float64)


@dataclass
class Analysis:
    metrics: dict[str, dict]
    """Split name -> metrics (see the module docstring)."""
    split: str
    """The split the error analysis and figures describe."""
    errors: list[dict]
    behaviour: dict | None
    plots: list[Path] = field(default_factory=list)
    """Every figure written, in report order."""
    report: Path | None = None


# --- per-split numbers -------------------------------------------------------------------------------------

def calibration_metrics(labels, logits, calibration: Calibration) -> dict:
    """The calibration, threshold and abstention numbers of one split (keys in the module docstring)."""
    labels = np.asarray(labels).reshape(-1)
    raw = softmax(logits)
    probs = softmax(np.asarray(logits, dtype=np.float64) / calibration.temperature)
    chosen = decisions(probs, calibration.threshold)
    out = {
        "temperature": calibration.temperature,
        "loss_uncalibrated": cross_entropy(labels, raw),
        "ece": expected_calibration_error(labels, raw),
        "ece_calibrated": expected_calibration_error(labels, probs),
        "threshold": calibration.threshold,
        "threshold_objective": calibration.threshold_objective if calibration.threshold is not None else None,
        "target_precision": calibration.target_precision if calibration.threshold is not None else None,
        "target_recall": calibration.target_recall if calibration.threshold is not None else None,
        "threshold_p_value": calibration.threshold_p_value if calibration.threshold is not None else None,
        "at_threshold": None,
    }
    if calibration.threshold is not None:
        p, r, f, _ = precision_recall_fscore_support(labels, chosen, labels=[0, 1], average="binary", pos_label=1,
                                                     zero_division=0)
        out["at_threshold"] = {
            "accuracy": float(accuracy_score(labels, chosen)), "precision": float(p), "recall": float(r),
            "f1": float(f), "f1_macro": float(f1_score(labels, chosen, labels=[0, 1], average="macro", zero_division=0)),
        }
    confidence, correct = probs.max(axis=1), chosen == labels
    for target in COVERAGE_TARGETS:
        coverage, cut = coverage_at_accuracy(confidence, correct, target)
        out[f"coverage_at_{round(target * 100)}_accuracy"] = coverage
        out[f"min_confidence_at_{round(target * 100)}_accuracy"] = cut
    return out


def split_metrics(part: ScoredSplit, id2label: dict[int, str], calibration: Calibration) -> dict:
    probs = softmax(part.logits / calibration.temperature)
    return compute_metrics(part.labels, probs, id2label) | calibration_metrics(part.labels, part.logits, calibration)


# --- error analysis ----------------------------------------------------------------------------------------

def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of at most `limit` characters: HTML line breaks and runs of whitespace become single spaces.

    >>> snippet("Great<br /><br />film,   really", 12)
    'Great film,…'
    """
    flat = " ".join(re.sub(r"<br\s*/?>", " ", str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def word_counts(texts: list[str]) -> np.ndarray:
    return np.array([len(str(t).split()) for t in texts], dtype=np.int64)


def most_confident_mistakes(part: ScoredSplit, id2label, probs, chosen, top: int = TOP_MISTAKES) -> list[dict]:
    """The wrong decisions the model was surest of, surest first."""
    wrong = np.flatnonzero(chosen != part.labels)
    confidence = probs[wrong, chosen[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:top]
    words = word_counts([part.texts[i] for i in order])
    return [{"kind": "mistake", "split": part.name, "rank": rank + 1, "index": int(i),
             "label": id2label[int(part.labels[i])], "predicted": id2label[int(chosen[i])],
             "confidence": float(probs[i, chosen[i]]), "prob_label": float(probs[i, part.labels[i]]),
             "words": int(words[rank]), "text": snippet(part.texts[i])}
            for rank, i in enumerate(order)]


def _slice(labels, chosen, confidence, mask) -> dict:
    y, p = labels[mask], chosen[mask]
    return {"n": int(mask.sum()), "accuracy": float(accuracy_score(y, p)),
            # Over the labels that occur in the slice: a slice of one class would otherwise score 1/k.
            "f1_macro": float(f1_score(y, p, average="macro", zero_division=0)),
            "errors": int((y != p).sum()), "mean_confidence": float(confidence[mask].mean())}


def length_buckets(part: ScoredSplit, chosen, confidence, buckets: int = LENGTH_BUCKETS) -> list[dict]:
    """Metrics by text length in words, in up to `buckets` groups cut at the length quantiles."""
    words = word_counts(part.texts)
    cuts = np.unique(np.ceil(np.quantile(words, np.arange(1, buckets) / buckets)).astype(np.int64))
    index = np.searchsorted(cuts, words, side="left")  # bucket i: cuts[i-1] < words <= cuts[i]
    rows = []
    for b in np.unique(index):
        mask = index == b
        low, high = int(words[mask].min()), int(words[mask].max())
        rows.append({"kind": "length_bucket", "split": part.name,
                     "bucket": f"{low} words" if low == high else f"{low}–{high} words",
                     "min_words": low, "max_words": high, **_slice(part.labels, chosen, confidence, mask)})
    return rows


def rating_slices(part: ScoredSplit, chosen, confidence) -> list[dict]:
    """Metrics by star rating, for data with a rating column; [] without one."""
    if not part.ratings:
        return []
    ratings = np.array([r if r is not None else "" for r in part.ratings], dtype=object)
    known = sorted({r for r in ratings if r != ""}, key=lambda r: (isinstance(r, str), r))
    return [{"kind": "rating", "split": part.name, "rating": r,
             **_slice(part.labels, chosen, confidence, ratings == r)} for r in known]


def confused_pairs(part: ScoredSplit, id2label, chosen, top: int = TOP_PAIRS) -> list[dict]:
    """(true label, decided label) pairs by how often the model confused them, most often first."""
    k = len(id2label)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (part.labels, chosen), 1)
    support = counts.sum(axis=1)
    pairs = [(int(counts[i, j]), i, j) for i in range(k) for j in range(k) if i != j and counts[i, j] > 0]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"kind": "confused_pair", "split": part.name, "label": id2label[i], "predicted": id2label[j],
             "count": n, "share_of_label": n / int(support[i])} for n, i, j in pairs[:top]]


def error_analysis(part: ScoredSplit, id2label: dict[int, str], calibration: Calibration) -> list[dict]:
    """The errors.jsonl records of one split, each tagged with its `kind`: the most confident mistakes, metrics
    by length bucket and by star rating, and the most-confused label pairs."""
    probs = softmax(part.logits / calibration.temperature)
    chosen = decisions(probs, calibration.threshold)
    confidence = probs.max(axis=1)
    return (most_confident_mistakes(part, id2label, probs, chosen) + length_buckets(part, chosen, confidence)
            + rating_slices(part, chosen, confidence) + confused_pairs(part, id2label, chosen))


def _rating_value(value):
    """Ratings as read from a file: whole numbers become ints, other numbers floats, anything else text."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    return int(number) if number.is_integer() else number


def _text_and_rating(path: Path, text_column: str):
    """(texts, ratings) from a CSV/TSV/JSONL/Parquet file with a rating column, else None."""
    import io

    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = set(pq.ParquetFile(path).schema.names)
        column = next((c for c in RATING_COLUMNS if c in names), None)
        if column is None or text_column not in names:
            return None
        frame = pd.read_parquet(path, columns=[text_column, column])
    else:
        if suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=object, keep_default_na=False)
        elif suffix in (".jsonl", ".json"):
            raw = path.read_text(encoding="utf-8-sig")
            frame = pd.read_json(io.StringIO(raw), lines=not raw.lstrip().startswith("["), dtype=False)
        else:
            return None
        column = next((c for c in RATING_COLUMNS if c in frame.columns), None)
        if column is None or text_column not in frame.columns:
            return None
    return frame[text_column].tolist(), frame[column].tolist()


def lookup_ratings(source: str | None, text_column: str, texts: list[str]) -> list | None:
    """Star ratings for `texts`, matched by text, from a data file with a rating column (rating, stars or
    star_rating) or an aclImdb-style folder (ratings in file names such as 123_8.txt). None when there are none.

    Matching by text finds the rating whatever split or sample of the file the texts came from.
    """
    if not source:
        return None
    path = Path(source)
    found: dict[str, object] = {}
    try:
        if path.is_dir():
            root = path / "train" if any((path / "train").glob("*/*.txt")) else path
            for file in sorted(root.glob("*/*_*.txt")):
                match = re.fullmatch(r"\d+_(\d+)\.txt", file.name)
                if match:
                    found.setdefault(file.read_bytes().decode("utf-8-sig"), int(match.group(1)))
        elif path.is_file() and (columns := _text_and_rating(path, text_column)) is not None:
            for text, rating in zip(*columns):
                found.setdefault(text, _rating_value(rating))
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # ratings are an optional extra; the data itself was read and checked already
    ratings = [found.get(t) for t in texts]
    return ratings if any(r is not None for r in ratings) else None


# --- saved models ------------------------------------------------------------------------------------------

def model_logits(classifier, texts: list[str], model_dir: str | None = None) -> tuple[np.ndarray, Calibration]:
    """Logits of a saved model before any temperature, and the calibration it applies, for evaluation.

    A model whose head carries its fitted temperature gives logits / T; multiplying back recovers the
    uncalibrated ones, so evaluation can report ECE before and after. With truncation `chunks` a text's logits
    are the log of its windows' mean probabilities, as `Classifier.predict_proba` averages them.
    """
    record = read_calibration(model_dir) if model_dir is not None else {}
    logits, owner = classifier.window_logits(texts)
    in_head = float(record.get("fitted_temperature", 1.0)) if record.get("temperature_in_head") else 1.0
    logits = np.asarray(logits, dtype=np.float64) * in_head
    if not np.array_equal(owner, np.arange(len(texts))):  # several windows per text
        mean = np.zeros((len(texts), logits.shape[1]))
        np.add.at(mean, owner, softmax(logits))
        logits = np.log(mean / np.bincount(owner, minlength=len(texts))[:, None])
    calibration = Calibration(temperature=in_head * classifier.temperature, threshold=classifier.threshold,
                              threshold_objective=record.get("threshold_objective") or "accuracy",
                              target_precision=record.get("target_precision"),
                              target_recall=record.get("target_recall"),
                              threshold_p_value=record.get("threshold_p_value"))
    return logits, calibration


# --- the entry point ---------------------------------------------------------------------------------------

def write_analysis(out_dir, parts: list[ScoredSplit], id2label: dict[int, str], calibration: Calibration, *,
                   classifier=None, history: list[dict] | None = None, figure_dir=None, run: dict | None = None
                   ) -> Analysis:
    """Compute every split's metrics and write, into `out_dir`: the standard plots and the reliability and
    risk-coverage figures (under `figure_dir`, default out_dir/plots; with figure_dir=False those two go only
    into the report), errors.jsonl, behaviour.json (sentiment models, when a `classifier` is given) and
    report.html. `run` adds the report's summary: config, data_info, training, title.
    Returns the numbers; metrics.json and the model card stay with the caller.
    """
    from llmclf.behaviour import run_checks, sentiment_labels
    from llmclf.plots import plot_reliability, plot_risk_coverage, write_plots
    from llmclf.report_html import write_report_html

    out_dir, run = Path(out_dir), dict(run or {})
    id2label = {int(i): str(name) for i, name in id2label.items()}
    metrics = {part.name: split_metrics(part, id2label, calibration) for part in parts}
    part = parts[-1]
    errors = error_analysis(part, id2label, calibration)
    (out_dir / "errors.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in errors),
                                          encoding="utf-8")
    behaviour = None
    if classifier is not None and sentiment_labels(id2label) is not None:
        behaviour = run_checks(classifier)
        (out_dir / "behaviour.json").write_text(json.dumps(behaviour, indent=2), encoding="utf-8")

    raw = softmax(part.logits)
    probs = softmax(part.logits / calibration.temperature)
    plots = write_plots(out_dir, metrics[part.name], part.labels, probs, history)
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) if figure_dir is False else Path(figure_dir or out_dir / "plots")
        extra = [plot_reliability(part.labels, raw, probs, figures / "reliability.png", calibration.temperature),
                 plot_risk_coverage(probs.max(axis=1), decisions(probs, calibration.threshold) == part.labels,
                                    figures / "risk_coverage.png")]
        report = write_report_html(out_dir, metrics={**metrics, **({"training": run["training"]} if run.get("training")
                                                                   else {})},
                                   plots=plots + extra, errors=errors, behaviour=behaviour, split=part.name,
                                   config=run.get("config"), history=history, data_info=run.get("data_info"),
                                   title=run.get("title"))
    return Analysis(metrics, part.name, errors, behaviour, plots + ([] if figure_dir is False else extra), report)
