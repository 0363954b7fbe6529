"""The model card: a Hugging Face README.md with YAML front matter, results, plots and limitations.

>>> write_model_card("runs/x", config=cfg, metrics=val, history=hist,
...                  data_info={"train": "reviews.csv", "train_size": 900}, plots=["plots/roc.png"])  # doctest: +SKIP
PosixPath('runs/x/README.md')
"""

from __future__ import annotations

import numbers
import pathlib

import yaml

CARD_METRICS = (("accuracy", "accuracy", "accuracy"), ("f1", "f1_macro", "f1 (macro)"),
                ("precision", "precision_macro", "precision (macro)"), ("recall", "recall_macro", "recall (macro)"),
                ("roc_auc", "roc_auc", "ROC-AUC"))
RESULT_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "loss")
HISTORY_KEYS = ("epoch", "train_loss", "eval_loss", "eval_accuracy", "eval_f1_macro", "eval_roc_auc")
SPLITS = ("train", "validation", "test")


def fmt_number(value) -> str:
    """Metric value for a table: ``fmt_number(0.91234) == "0.9123"``, ``fmt_number(None) == "n/a"``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4f}"
    return str(value)


def fmt_config(value) -> str:
    """Config value for a table; keeps small floats such as learning rates readable (``2e-05``, not ``0.0000``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_config(v) for v in value) or "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten_config(config: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested keys joined by dots: ``flatten_config({"lora": {"r": 8}}) == [("lora.r", 8)]``."""
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        rows += flatten_config(value, f"{name}.") if isinstance(value, dict) and value else [(name, value)]
    return rows


def method(config: dict) -> str:
    """How the weights were trained: ``method({"lora": True, "lora_r": 16}) == "LoRA (rank 16)"``.

    ``lora`` is a bool with the rank in ``lora_r``, or a dict holding ``r`` (on unless ``enabled: false``).
    """
    lora = config.get("lora")
    if isinstance(lora, dict):
        on, rank = lora.get("enabled", bool(lora)), lora.get("r")
    else:
        on, rank = bool(lora), config.get("lora_r")
    if not on:
        return "full fine-tuning"
    return f"LoRA (rank {rank})" if rank is not None else "LoRA"


def front_matter(name: str, config: dict, data_info: dict, metrics: dict, split: str) -> str:
    """YAML header the Hub reads for widgets and leaderboards; metrics with no value are left out."""
    card_metrics = [
        {"type": kind, "value": float(metrics[key]), "name": f"{split} {label}"}
        for kind, key, label in CARD_METRICS
        if metrics.get(key) is not None
    ]
    train = str(data_info.get("train"))
    header = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": config.get("model"),
        "tags": ["llmclf", "text-classification"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": {"name": train, "type": train},
                "metrics": card_metrics,
            }],
        }],
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: ``table(["a"], [["1"]]) == "| a |\\n| --- |\\n| 1 |"``."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def merge_history(history: list[dict]) -> list[dict]:
    """One row per epoch; trainers log training and evaluation numbers as separate rows."""
    merged: dict[float, dict] = {}
    for row in history:
        if row.get("epoch") is None:
            continue
        slot = merged.setdefault(float(row["epoch"]), {"epoch": float(row["epoch"])})
        slot.update({k: v for k, v in row.items() if v is not None})
    return [merged[e] for e in sorted(merged)]


def _data_section(data_info: dict, label_names: list[str]) -> list[str]:
    rows = []
    for split in SPLITS:
        source = data_info.get(split)
        size = data_info.get(f"{split}_size", data_info.get(f"n_{split}"))
        if split == "validation" and source is None:
            source = f"held out from {data_info.get('train')}"
        if source is not None or size is not None:
            rows.append([split, fmt_config(source), fmt_number(size)])
    labels = ", ".join(f"`{n}`" for n in label_names)
    return ["## Data", "", table(["Split", "Source", "Examples"], rows), "", f"Labels: {labels}.", ""]


def _results_section(splits: dict[str, dict], history: list[dict]) -> list[str]:
    out = ["## Results", "", table(["Metric", *splits], [[k] + [fmt_number(m.get(k)) for m in splits.values()]
                                                      for k in RESULT_KEYS]), ""]
    for split, m in splits.items():
        rows = [[name, *(fmt_number(c[k]) for k in ("precision", "recall", "f1", "support"))]
                for name, c in m.get("per_class", {}).items()]
        out += [f"### Per class ({split})", "", table(["Label", "Precision", "Recall", "F1", "Support"], rows), ""]
    rows = merge_history(history)
    keys = [k for k in HISTORY_KEYS if any(k in r for r in rows)]
    if rows:
        body = [[f"{r['epoch']:g}"] + [fmt_number(r.get(k)) for k in keys[1:]] for r in rows]
        out += ["### Training history", "", table(keys, body), ""]
    return out


def _plot_link(out_dir: pathlib.Path, plot) -> str:
    # write_plots returns paths that include out_dir; the card must link relative to itself.
    path, root = pathlib.Path(plot), out_dir.resolve()
    if path.resolve().is_relative_to(root):
        path = path.resolve().relative_to(root)
    return f"![{path.stem.replace('_', ' ')}]({path.as_posix()})"


def write_model_card(out_dir, *, config: dict, metrics: dict, history: list[dict], data_info: dict,
                     plots: list[str], test_metrics: dict | None = None, name: str | None = None) -> pathlib.Path:
    """Write ``out_dir/README.md`` and return its path.

    ``data_info`` holds ``train``/``validation``/``test`` sources and optional ``train_size``-style
    counts and ``label_names``. Headline numbers come from ``test_metrics`` when given, else validation.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or out_dir.resolve().name  # a staging directory passes the final name
    headline, split = (test_metrics, "test") if test_metrics else (metrics, "validation")
    labels = list(data_info.get("label_names") or metrics.get("label_names", []))
    base, train = config.get("model"), data_info.get("train")
    splits = {"validation": metrics} | ({"test": test_metrics} if test_metrics else {})
    scored_on = ("the held-out test data" if test_metrics
                 else "a validation split carved from the training data, not on independent test data")
    lines = [
        front_matter(name, config, data_info, headline, split),
        f"# {name}", "",
        f"A text classifier fine-tuned from `{base}` with llmclf by {method(config)}. "
        f"It predicts one of {len(labels)} labels: {', '.join(f'`{n}`' for n in labels)}.", "",
        "## How to use", "",
        "```python", "from transformers import pipeline", "",
        f'classifier = pipeline("text-classification", model="{name}")  # local directory or Hub repo id',
        'print(classifier("I loved every minute of it."))', "```", "",
        "```bash", f'llmclf predict --model {name} "I loved every minute of it."', "```", "",
        *_data_section(data_info, labels),
        "## Training recipe", "",
        table(["Setting", "Value"], [[k, fmt_config(v)] for k, v in flatten_config(config)]), "",
        *_results_section(splits, history),
        "## Plots", "",
        *[_plot_link(out_dir, p) + "\n" for p in plots],
        "## Limitations", "",
        f"- Trained on `{train}` only; expect weaker results on text unlike it (domain shift: other topics, "
        "registers, time periods or languages).",
        "- Like most text classifiers it can miss sarcasm, negation and other meaning that depends on context.",
        "- Output probabilities are softmax scores and are not calibrated unless stated otherwise.",
        f"- Reported numbers are measured on {scored_on}.",
        "- Do not use it for decisions about people (hiring, credit, health, moderation) without human oversight.",
        "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
