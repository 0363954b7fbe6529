"""Evaluate a trained classifier on labelled data: metrics.json, plots, errors.jsonl, behaviour.json (sentiment
models) and report.html in --output, with the calibration and threshold saved with the model.

    llmclf evaluate --model runs/imdb --data ../shared/data/imdb/train.parquet --output runs/imdb-eval
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmclf.analysis import ScoredSplit, lookup_ratings, model_logits, split_metrics, write_analysis
from llmclf.artifacts import staged, write_metrics
from llmclf.data import encode_labels, load_labelled
from llmclf.errors import UserError
from llmclf.predict import Classifier


def evaluate(model: str, data: str, output: str | None = None, text_column: str = "text",
             label_column: str = "label", overwrite: bool = False, options: dict | None = None) -> dict:
    """Metrics of the model at `model` on `data` (the keys of `llmclf.analysis`); with `output`, also writes
    metrics.json, plots, errors.jsonl, behaviour.json and report.html there. `options` go to
    Classifier.from_pretrained (batch_size, max_length, truncation, device, precision...)."""
    out = Path(output) if output else None
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; give a directory for metrics.json, plots and report.html.")
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--output {out} is not empty; pass --overwrite to replace it, or choose another --output.")
    part = load_labelled(data, text_column=text_column, label_column=label_column, what="--data")
    classifier = Classifier.from_pretrained(model, **(options or {}))
    labels = np.asarray(encode_labels(part.labels, classifier.id2label, what=f"--data {data}"))
    logits, calibration = model_logits(classifier, part.texts, model)
    scored = ScoredSplit("test", part.texts, labels, logits, lookup_ratings(data, text_column, part.texts))
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
