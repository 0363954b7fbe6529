"""Evaluate a trained classifier on labelled data: metrics.json and plots in --output.

    llmclf evaluate --model runs/imdb --data ../shared/data/imdb/train.parquet --output runs/imdb-eval
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from llmclf import metrics as M
from llmclf.data import encode_labels, load_labelled
from llmclf.errors import UserError
from llmclf.plots import write_plots
from llmclf.predict import Classifier


def evaluate(model: str, data: str, output: str | None = None, text_column: str = "text",
             label_column: str = "label", batch_size: int = 16, max_length: int | None = None,
             overwrite: bool = False) -> dict:
    """Metrics of the model at `model` on `data`; with `output`, also writes metrics.json and plots there."""
    out = Path(output) if output else None
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--output {out} is not empty; pass --overwrite to replace it, or choose another --output.")
    part = load_labelled(data, text_column=text_column, label_column=label_column, what="--data")
    options = {"max_length": max_length} if max_length else {}
    classifier = Classifier.from_pretrained(model, batch_size=batch_size, **options)
    labels = np.asarray(encode_labels(part.labels, classifier.id2label, what=f"--data {data}"))
    probs = classifier.predict_proba(part.texts)
    metrics = M.compute_metrics(labels, probs, classifier.id2label)
    if out is not None:
        # Written beside the target and renamed, so an interrupted run leaves no half-filled --output.
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
        (stage / "metrics.json").write_text(json.dumps({"test": metrics, "model": model, "data": data}, indent=2))
        write_plots(stage, metrics, labels, probs)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    return metrics
