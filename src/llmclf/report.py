"""The model card: a Hugging Face README.md with YAML front matter, results, plots and limitations.

>>> write_model_card("runs/x", config=cfg, metrics=val, history=hist,
...                  data_info={"train": "reviews.csv", "train_size": 900}, plots=["plots/roc.png"])  # doctest: +SKIP
PosixPath('runs/x/README.md')
"""

from __future__ import annotations

import numbers
import pathlib

import yaml

from llmclf.calibration import THRESHOLD_SIGNIFICANCE
from llmclf.models import HUB_IDS

CARD_METRICS = (("accuracy", "accuracy", "accuracy"), ("f1", "f1_macro", "f1 (macro)"),
                ("precision", "precision_macro", "precision (macro)"), ("recall", "recall_macro", "recall (macro)"),
                ("roc_auc", "roc_auc", "ROC-AUC"),
                # multi-label and regression runs (single-label metrics have none of these keys)
                ("f1", "f1_micro", "f1 (micro)"), ("accuracy", "subset_accuracy", "subset accuracy"),
                ("mae", "mae", "MAE"), ("rmse", "rmse", "RMSE"), ("r_squared", "r2", "R²"),
                ("spearmanr", "spearman", "Spearman"))
RESULT_KEYS = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc",
               "average_precision", "loss")
HISTORY_KEYS = ("epoch", "train_loss", "eval_loss", "eval_accuracy", "eval_f1_macro", "eval_roc_auc")
SPLITS = ("train", "validation", "test")
# Data sets a card names by their Hub id and citation when the training data is one of their files, laid out
# as DATA/<folder>/<split>.parquet (as in ../shared/data), or their Hub name (`--data imdb:test`).
KNOWN_DATASETS = {
    "imdb": ("imdb", "IMDb (Maas et al., 2011)"),
    "goemotions": ("go_emotions", "GoEmotions (Demszky et al., 2020)"),
    "go_emotions": ("go_emotions", "GoEmotions (Demszky et al., 2020)"),
    "ag_news": ("ag_news", "AG News (Zhang et al., 2015)"),
}


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


def fmt_duration(seconds: float) -> str:
    """``fmt_duration(8121) == "2 h 15 min"``, ``fmt_duration(95) == "1 min 35 s"``, ``fmt_duration(4.2) == "4 s"``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def training_lines(training: dict | None) -> list[str]:
    """The card's sentence on how long training took and on what hardware (metrics.json's `training`)."""
    if not training or training.get("train_seconds") is None:
        return []
    seconds = training["train_seconds"]
    where = f" on {training['device']}" if training.get("device") else ""
    world = training.get("world_size") or 1
    processes = f" in {world} processes" if world > 1 else ""
    steps = f"{training['steps']:,} optimizer steps over " if training.get("steps") is not None else ""
    examples = f"{training['train_examples']:,} examples" if training.get("train_examples") is not None else "the data"
    epochs = training.get("epochs")
    exact = f"{seconds:,.0f} s, " if seconds >= 60 else ""
    validation = "per-epoch validation included" if training.get("eval_each_epoch", True) else "no per-epoch validation"
    return [f"Trained in {fmt_duration(seconds)} ({exact}{validation}{resumed_clause(training)}) in "
            f"{'bf16' if training.get('bf16') else 'float32'}{where}{processes}; {steps}{examples}"
            + (f", {epochs:g} epoch{'' if epochs == 1 else 's'}" if epochs is not None else "") + ".", ""]


def resumed_clause(training: dict) -> str:
    """How a resumed run's time adds up: each process's time up to the checkpoint the next one continued from."""
    if not training.get("resumed"):
        return ""
    segments = training.get("train_segments")
    if not segments:  # the checkpoint it resumed from kept no record of the earlier time
        return "; resumed from a checkpoint: the resumed part only"
    parts = [f"{fmt_duration(s['seconds'])} to step {s['steps']:,} on {s['device']}" for s in segments]
    return f"; {len(segments)} processes, each resumed from the last one's checkpoint: {', then '.join(parts)}"


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


def base_model(config: dict) -> str | None:
    """The backbone's Hub id, for an llmclf alias too: ``base_model({"model": "llama-3.2-1b"}) ==
    "meta-llama/Llama-3.2-1B"``; anything else (a Hub id, a path) as it was given."""
    model = config.get("model")
    return HUB_IDS.get(model, model)


def describe_base_model(config: dict, code: str = "`") -> str:
    """The backbone as a reader should see it: the Hub id, with the llmclf alias the user typed beside it, e.g.
    "`HuggingFaceTB/SmolLM2-135M-Instruct` (llmclf alias `smollm2-135m`)"; ``code=""`` gives plain text (HTML)."""
    model = config.get("model")
    alias = f" (llmclf alias {code}{model}{code})" if model in HUB_IDS else ""
    return f"{code}{base_model(config)}{code}{alias}"


def known_dataset(source) -> tuple[str, str] | None:
    """(Hub id, name to cite) of a well-known data set that `source` (a --data value) reads, else None.

    >>> known_dataset("../shared/data/imdb/train.parquet")
    ('imdb', 'IMDb (Maas et al., 2011)')
    """
    if source is None:
        return None
    text = str(source)
    path = pathlib.PurePath(text)
    if path.suffix == ".parquet" and len(path.parts) > 1:
        return KNOWN_DATASETS.get(path.parent.name)
    return KNOWN_DATASETS.get(text.split(":")[0]) if "/" not in text else None


def data_source(source) -> str:
    """Where a split came from, for a table cell: a known data set by name, and what it was read from."""
    known = known_dataset(source)
    return fmt_config(source) if known is None else f"{known[1]}, read from {fmt_config(source)}"


def front_matter(name: str, config: dict, data_info: dict, metrics: dict, split: str) -> str:
    """YAML header the Hub reads for widgets and leaderboards; metrics with no value are left out."""
    card_metrics = [
        {"type": kind, "value": float(metrics[key]), "name": f"{split} {label}"}
        for kind, key, label in CARD_METRICS
        if metrics.get(key) is not None
    ]
    train = str(data_info.get("train"))
    known = known_dataset(data_info.get("train"))
    header = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "base_model": base_model(config),
        **({"datasets": [known[0]]} if known else {}),
        "tags": ["llmclf", "text-classification"],
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": {"name": known[1], "type": known[0]} if known else {"name": train, "type": train},
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
            train = data_info.get("train")
            known = known_dataset(train)
            rows.append([split, fmt_config(f"held out from {known[1] if known else train}"), fmt_number(size)])
        elif source is not None or size is not None:
            rows.append([split, data_source(source), fmt_number(size)])
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
                     plots: list[str], test_metrics: dict | None = None, name: str | None = None,
                     analysis: dict | None = None, class_weights: dict[str, float] | None = None,
                     training: dict | None = None) -> pathlib.Path:
    """Write ``out_dir/README.md`` and return its path.

    ``data_info`` holds ``train``/``validation``/``test`` sources and optional ``train_size``-style
    counts and ``label_names``. Headline numbers come from ``test_metrics`` when given, else validation.
    ``analysis`` (see `trust_card_sections`) adds calibration, threshold, abstention, error analysis and
    behaviour-check sections. ``class_weights`` (label -> weight) are the resolved weights of a weighted loss.
    ``training`` (metrics.json's block) adds how long training took and on what hardware.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or out_dir.resolve().name  # a staging directory passes the final name
    headline, split = (test_metrics, "test") if test_metrics else (metrics, "validation")
    labels = list(data_info.get("label_names") or metrics.get("label_names", []))
    known = known_dataset(data_info.get("train"))
    trained_on = known[1] if known else f"`{data_info.get('train')}`"
    splits = {"validation": metrics} | ({"test": test_metrics} if test_metrics else {})
    scored_on = ("the held-out test data" if test_metrics
                 else "a validation split carved from the training data, not on independent test data")
    lines = [
        front_matter(name, config, data_info, headline, split),
        f"# {name}", "",
        f"A text classifier fine-tuned from {describe_base_model(config)} with llmclf by {method(config)}. "
        f"It predicts one of {len(labels)} labels: {', '.join(f'`{n}`' for n in labels)}.", "",
        "## How to use", "",
        *(["```python", "from llmclf.predict import Classifier", "",
           f'classifier = Classifier.from_pretrained("{name}")  # a LoRA adapter: llmclf loads its backbone',
           'print(classifier.predict_proba("I loved every minute of it."))', "```", ""]
          if config.get("lora") and config.get("save_adapter") else
          ["```python", "from llmclf.predict import Classifier", "",
           f"# applies the saved prompt template {config['prompt_template']!r}, truncation "
           f"{config.get('truncation', 'chunks')!r} and max_length {config.get('max_length')}",
           f'classifier = Classifier.from_pretrained("{name}")',
           'print(classifier.predict_proba("I loved every minute of it."))', "```", "",
           "A plain `pipeline()` would not wrap texts in the template; use llmclf's `Classifier` (or write "
           "the template around each text yourself).", ""]
          if config.get("prompt_template") else
          ["```python", "from transformers import pipeline", "",
           f'classifier = pipeline("text-classification", model="{name}")  # local directory or Hub repo id',
           'print(classifier("I loved every minute of it."))', "```", ""]),
        "```bash", f'llmclf predict --model {name} "I loved every minute of it."', "```", "",
        "To train it again: `llmclf train --config llmclf_config.yaml` (the settings below, saved with the model).",
        "",
        *_data_section(data_info, labels),
        "## Training recipe", "",
        table(["Setting", "Value"], [[k, fmt_config(v)] for k, v in flatten_config(config)]), "",
        *(["Loss: weighted cross-entropy, class weights "
           + ", ".join(f"`{k}` {v:.4g}" for k, v in class_weights.items())
           + " (mean weighted by the weights of the examples' labels).", ""] if class_weights else []),
        *training_lines(training),
        *_results_section(splits, history),
        *(trust_card_sections(analysis) if analysis else []),
        "## Plots", "",
        *[_plot_link(out_dir, p) + "\n" for p in plots],
        "## Limitations", "",
        f"- Trained on {trained_on} only; expect weaker results on text unlike it (domain shift: other topics, "
        "registers, time periods or languages).",
        "- Like most text classifiers it can miss sarcasm, negation and other meaning that depends on context.",
        ("- Output probabilities are temperature-scaled on the validation data (see Calibration); calibration "
         "can drift on data unlike it." if analysis else
         "- Output probabilities are softmax scores and are not calibrated unless stated otherwise."),
        f"- Reported numbers are measured on {scored_on}.",
        "- Do not use it for decisions about people (hiring, credit, health, moderation) without human oversight.",
        "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --- trust sections: calibration, threshold, abstention, errors, behaviour ---------------------------------

def fmt_percent(value) -> str:
    """A share for a table: ``fmt_percent(0.4401) == "44.0%"``, ``fmt_percent(None) == "n/a"``."""
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def threshold_evidence(p_value: float | None) -> str:
    """Why an accuracy-tuned threshold was kept or left at 0.5, as the words after it ('' for other objectives)."""
    if p_value is None:
        return ""
    verdict = "gain over 0.5" if p_value < THRESHOLD_SIGNIFICANCE else "no cut's gain over 0.5 was significant"
    return f" ({verdict} on validation: p = {p_value:.2g}, sign test)"


def trust_rows(m: dict) -> list[list[str]]:
    """Calibration, threshold and abstention numbers of one split's metrics, as (what, value) rows."""
    rows = [["temperature (fitted on validation)", fmt_number(m.get("temperature"))],
            ["ECE before / after temperature (15 bins)",
             f"{fmt_number(m.get('ece'))} / {fmt_number(m.get('ece_calibrated'))}"],
            ["loss before / after temperature", f"{fmt_number(m.get('loss_uncalibrated'))} / {fmt_number(m.get('loss'))}"]]
    if m.get("threshold") is not None:
        objective = m.get("threshold_objective")
        if objective == "precision":
            objective = f"precision >= {m.get('target_precision')}"
        elif objective == "recall":
            objective = f"recall >= {m.get('target_recall')}"
        rows.append(["decision threshold (tuned for " + str(objective) + ")",
                     fmt_number(m["threshold"]) + threshold_evidence(m.get("threshold_p_value"))])
        at = m.get("at_threshold") or {}
        rows.append(["at the threshold: accuracy / precision / recall / F1",
                     " / ".join(fmt_number(at.get(k)) for k in ("accuracy", "precision", "recall", "f1"))])
    for target in (99, 98):
        cut = m.get(f"min_confidence_at_{target}_accuracy")
        rows.append([f"coverage at {target}% accuracy", fmt_percent(m.get(f"coverage_at_{target}_accuracy"))
                     + ("" if cut is None else f" (--min-confidence {cut:.4f})")])
    return rows


def _md(text) -> str:
    """Text for a markdown table cell: pipes escaped, and no raw HTML from the data (a review may hold tags)."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def trust_card_sections(analysis: dict) -> list[str]:
    """Model-card sections from ``{"split": name, "metrics": split metrics, "errors": errors.jsonl records,
    "behaviour": behaviour.json or None}``."""
    split, m = analysis["split"], analysis["metrics"]
    errors = analysis.get("errors") or []
    where = ("the classification head is divided by the fitted temperature, so `pipeline(\"text-classification\")` "
             "and `llmclf predict` both give the calibrated probabilities" if analysis.get("temperature_in_head", True)
             else "`llmclf predict` applies the temperature saved in the model's config; plain `pipeline` does not")
    out = ["## Calibration, decision threshold and abstention", "",
           f"Measured on the {split} data. Probabilities are temperature-scaled: {where}. "
           "`llmclf predict --min-confidence X` marks results below X `needs_review` (label kept); `--threshold` "
           "overrides the saved threshold.", "",
           table(["What", "Value"], trust_rows(m)), ""]
    mistakes = [r for r in errors if r["kind"] == "mistake"][:5]
    pairs = [r for r in errors if r["kind"] == "confused_pair"][:5]
    lengths = [r for r in errors if r["kind"] == "length_bucket"]
    ratings = [r for r in errors if r["kind"] == "rating"]
    if errors:
        out += ["## Error analysis", "", f"On the {split} data; every record is in `errors.jsonl` and `report.html`.", ""]
        if pairs:
            out += ["Most-confused labels:", "", table(["True", "Predicted", "Count", "Share of true label"],
                    [[_md(p["label"]), _md(p["predicted"]), str(p["count"]), fmt_percent(p["share_of_label"])] for p in pairs]), ""]
        if lengths:
            out += ["By length:", "", table(["Length", "Examples", "Accuracy", "F1 (macro)"],
                    [[r["bucket"], str(r["n"]), fmt_number(r["accuracy"]), fmt_number(r["f1_macro"])] for r in lengths]), ""]
        if ratings:
            out += ["By star rating:", "", table(["Rating", "Examples", "Accuracy"],
                    [[_md(r["rating"]), str(r["n"]), fmt_number(r["accuracy"])] for r in ratings]), ""]
        if mistakes:
            out += ["Most confident mistakes:", "", table(["True", "Predicted", "Confidence", "Text"],
                    [[_md(r["label"]), _md(r["predicted"]), fmt_number(r["confidence"]), _md(r["text"][:160])]
                     for r in mistakes]), ""]
    behaviour = analysis.get("behaviour")
    if behaviour:
        out += ["## Behaviour checks", "", "CheckList-style tests written for llmclf (`llmclf check --model DIR` runs "
                "them alone; failures are in `behaviour.json`):", "",
                table(["Check", "Type", "Passed", "Pass rate"],
                      [[c["name"], c["kind"], f"{c['passed']}/{c['n']}", fmt_percent(c["pass_rate"])] for c in behaviour["checks"]]
                      + [["all", "", f"{behaviour['passed']}/{behaviour['n']}", fmt_percent(behaviour["pass_rate"])]]), ""]
    return out
