"""Evaluate a trained classifier on labelled data: metrics.json, plots, errors.jsonl, behaviour.json (sentiment
models) and report.html in --output, with the calibration and threshold saved with the model.

    llmclf evaluate --model runs/imdb --data ../shared/data/imdb/train.parquet --output runs/imdb-eval

Multi-label and regression models are scored by llmclf.type_eval: metrics.json holds the metrics their
training run reports (llmclf.type_report), under `test`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmclf.analysis import ScoredSplit, lookup_ratings, model_logits, split_metrics, write_analysis
from llmclf.artifacts import read_run_config, staged, write_metrics
from llmclf.data import encode_labels, load_labelled
from llmclf.errors import UserError
from llmclf.outputs import SINGLE_LABEL
from llmclf.predict import Classifier
from llmclf.problem_types import MULTI_LABEL, REGRESSION
from llmclf.type_eval import evaluate_typed, label_settings


def evaluate(model: str, data: str, output: str | None = None, text_column: str | None = None,
             label_column: str | None = None, overwrite: bool = False, options: dict | None = None,
             label_columns: str | None = None) -> dict:
    """Metrics of the model at `model` on `data` (the keys of `llmclf.analysis`, or for multi-label and
    regression models those of `llmclf.type_report`); with `output`, also writes metrics.json, plots,
    errors.jsonl, behaviour.json (sentiment models) and report.html there. `options` go to
    Classifier.from_pretrained (batch_size, max_length, truncation, device, precision...).

    Columns: the ones given, else "text" and "label" for single-label models; multi-label and regression models
    read their labels as they were trained (llmclf.type_eval.label_settings)."""
    out = Path(output) if output else None
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; give a directory for metrics.json, plots and report.html.")
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--output {out} is not empty; pass --overwrite to replace it, or choose another --output.")
    run = read_run_config(model)
    typed = run.get("problem_type") in (MULTI_LABEL, REGRESSION)
    settings = label_settings(run if typed else {}, text_column, label_column, label_columns)
    part = load_labelled(data, text_column=settings["text_column"], label_column=settings["label_column"],
                         what="--data", label_columns=settings["label_columns"])
    classifier = Classifier.from_pretrained(model, **(options or {}))
    if classifier.problem_type != SINGLE_LABEL:
        return evaluate_typed(classifier, model, data, part, settings, out, run)
    if label_columns:
        raise UserError("--label-columns reads the 0/1 label columns of a multi-label model; this one is "
                        "single-label: pass --label-column.")
    labels = np.asarray(encode_labels(part.labels, classifier.id2label, what=f"--data {data}"))
    logits, calibration = model_logits(classifier, part.texts, model)
    scored = ScoredSplit("test", part.texts, labels, logits, lookup_ratings(data, settings["text_column"], part.texts))
    if out is None:
        return split_metrics(scored, classifier.id2label, calibration)
    # Written beside the target and renamed, so an interrupted run leaves no half-filled --output.
    with staged(out) as stage:
        analysis = write_analysis(stage, [scored], classifier.id2label, calibration, classifier=classifier,
                                  run={"title": f"{Path(model).name} on {Path(data).name}",
                                       "data_info": {"test": data, "test_size": len(part)}})
        metrics = analysis.metrics["test"]
        write_metrics(stage, {"test": metrics, "model": model, "data": data})
    return metrics
