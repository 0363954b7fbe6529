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
                     plots: list[str], test_metrics: dict | None = None, name: str | None = None,
                     analysis: dict | None = None) -> pathlib.Path:
    """Write ``out_dir/README.md`` and return its path.

    ``data_info`` holds ``train``/``validation``/``test`` sources and optional ``train_size``-style
    counts and ``label_names``. Headline numbers come from ``test_metrics`` when given, else validation.
    ``analysis`` (see `trust_card_sections`) adds calibration, threshold, abstention, error analysis and
    behaviour-check sections.
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
        *_results_section(splits, history),
        *(trust_card_sections(analysis) if analysis else []),
        "## Plots", "",
        *[_plot_link(out_dir, p) + "\n" for p in plots],
        "## Limitations", "",
        f"- Trained on `{train}` only; expect weaker results on text unlike it (domain shift: other topics, "
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


# --- trust sections (calibration, threshold, abstention, errors, behaviour), shared by card and report.html ---

def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


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
        rows.append(["decision threshold (tuned for " + str(objective) + ")", fmt_number(m["threshold"])])
        at = m.get("at_threshold") or {}
        rows.append(["at the threshold: accuracy / precision / recall / F1",
                     " / ".join(fmt_number(at.get(k)) for k in ("accuracy", "precision", "recall", "f1"))])
    for target in (99, 98):
        cut = m.get(f"min_confidence_at_{target}_accuracy")
        rows.append([f"coverage at {target}% accuracy", _pct(m.get(f"coverage_at_{target}_accuracy"))
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
                    [[_md(p["label"]), _md(p["predicted"]), str(p["count"]), _pct(p["share_of_label"])] for p in pairs]), ""]
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
                      [[c["name"], c["kind"], f"{c['passed']}/{c['n']}", _pct(c["pass_rate"])] for c in behaviour["checks"]]
                      + [["all", "", f"{behaviour['passed']}/{behaviour['n']}", _pct(behaviour["pass_rate"])]]), ""]
    return out


# --- report.html -------------------------------------------------------------------------------------------

REPORT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d8dde6;padding-bottom:.2rem;margin-top:2.2rem}
nav a{margin-right:.9rem}table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.92rem}
th,td{border:1px solid #d8dde6;padding:.3rem .55rem;text-align:left;vertical-align:top}th{background:#f2f4f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.text{max-width:560px}
figure{display:inline-block;margin:.4rem 1rem .8rem 0}img{max-width:520px;height:auto;border:1px solid #e3e6ec}
figcaption{font-size:.85rem;color:#555}.muted{color:#666}.fail{color:#a61b1b}.pass{color:#1b7a32}
""".strip()
SECTION_PLOTS = {"reliability": "calibration", "risk_coverage": "abstention"}


def _h(value) -> str:
    import html

    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    if isinstance(value, numbers.Number) and not isinstance(value, bool) or value is None:
        return f'<td class="num">{_h(fmt_number(value))}</td>'
    return f"<td>{_h(value)}</td>"


def html_table(header: list[str], rows: list[list], text_column: int | None = None) -> str:
    """An HTML table; every cell escaped, numbers right-aligned and formatted like the card's."""
    head = "".join(f"<th>{_h(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f'<td class="text">{_h(v)}</td>' if i == text_column else _cell(v) for i, v in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(path: pathlib.Path) -> str:
    import base64

    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode("ascii")
    name = pathlib.Path(path).stem.replace("_", " ")
    return (f'<figure><img alt="{_h(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_h(name)}</figcaption></figure>")


def write_report_html(out_dir, *, metrics: dict, plots: list, errors: list[dict] | None = None,
                      behaviour: dict | None = None, split: str | None = None, config: dict | None = None,
                      history: list[dict] | None = None, data_info: dict | None = None,
                      title: str | None = None) -> pathlib.Path:
    """Write ``out_dir/report.html``: one self-contained page (PNG plots embedded as base64, no scripts, no
    external links) with the run summary, results, calibration, threshold, abstention, error analysis and
    behaviour checks. ``metrics`` is metrics.json's content (split name -> metrics, plus ``training``);
    ``split`` names the split the errors and figures describe.

    >>> write_report_html("runs/x", metrics=json.load(open("runs/x/metrics.json")), plots=paths)  # doctest: +SKIP
    PosixPath('runs/x/report.html')
    """
    out_dir = pathlib.Path(out_dir)
    title = title or out_dir.resolve().name
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v}
    split = split or (list(splits)[-1] if splits else None)
    errors, config, history, data_info = errors or [], config or {}, history or [], data_info or {}
    by_section: dict[str, list[str]] = {}
    for plot in plots:
        by_section.setdefault(SECTION_PLOTS.get(pathlib.Path(plot).stem, "plots"), []).append(_figure(plot))
    sections: list[tuple[str, str, str]] = []

    summary = []
    if config:
        summary += [["base model", config.get("model")], ["method", method(config)]]
    for name in SPLITS:
        if data_info.get(name) is not None or data_info.get(f"{name}_size") is not None:
            summary.append([f"{name} data", f"{data_info.get(name) or 'held out from the training data'} "
                                            f"({fmt_number(data_info.get(f'{name}_size'))} examples)"])
    for name, value in (metrics.get("training") or {}).items():
        summary.append([name.replace("_", " "), fmt_config(value)])
    names = next(iter(splits.values()), {}).get("label_names", [])
    summary.append(["labels", ", ".join(map(str, names))])
    sections.append(("summary", "Summary", html_table(["What", "Value"], summary)))

    if splits:
        body = html_table(["Metric", *splits], [[k, *(m.get(k) for m in splits.values())] for k in RESULT_KEYS])
        for name, m in splits.items():
            rows = [[label, *(c[k] for k in ("precision", "recall", "f1", "support"))]
                    for label, c in m.get("per_class", {}).items()]
            body += f"<h3>Per class ({_h(name)})</h3>" + html_table(["Label", "Precision", "Recall", "F1", "Support"], rows)
        sections.append(("results", "Results", body))

    if splits and "ece" in next(iter(splits.values())):
        rows = [[name, m.get("temperature"), m.get("ece"), m.get("ece_calibrated"), m.get("loss_uncalibrated"),
                 m.get("loss")] for name, m in splits.items()]
        body = ("<p>Temperature scaling divides the logits by one number fitted on the validation data; the "
                "classification head carries it, so every loader gets these probabilities. Expected calibration "
                "error: 15 equal-width bins of the top-class probability.</p>"
                + html_table(["Split", "Temperature", "ECE before", "ECE after", "Loss before", "Loss after"], rows)
                + "".join(by_section.pop("calibration", [])))
        sections.append(("calibration", "Calibration", body))
        threshold_rows = [[name, m.get("threshold"), m.get("threshold_objective"),
                           *((m.get("at_threshold") or {}).get(k) for k in ("accuracy", "precision", "recall", "f1"))]
                          for name, m in splits.items() if m.get("threshold") is not None]
        body = ("<p>Binary models predict the second label exactly when its calibrated probability reaches the "
                "threshold, tuned on the validation data; <code>--threshold</code> on <code>predict</code> "
                "overrides it.</p>" + html_table(["Split", "Threshold", "Tuned for", "Accuracy", "Precision",
                                                  "Recall", "F1"], threshold_rows)
                if threshold_rows else "<p>Argmax decisions (no threshold: the model is not binary).</p>")
        sections.append(("threshold", "Decision threshold", body))
        rows = [[name, *(x for t in (99, 98) for x in (_pct(m.get(f"coverage_at_{t}_accuracy")),
                                                        m.get(f"min_confidence_at_{t}_accuracy")))]
                for name, m in splits.items()]
        body = ("<p><code>llmclf predict --min-confidence X</code> marks results whose top probability is below X "
                "<code>needs_review</code> and keeps their label. Coverage is the share answered automatically "
                "while the kept answers reach the accuracy.</p>"
                + html_table(["Split", "Coverage at 99% accuracy", "--min-confidence", "Coverage at 98% accuracy",
                              "--min-confidence"], rows) + "".join(by_section.pop("abstention", [])))
        sections.append(("abstention", "Abstention for human review", body))

    if errors:
        body = f"<p class=\"muted\">On the {_h(split)} data; all records are in <code>errors.jsonl</code>.</p>"
        mistakes = [r for r in errors if r["kind"] == "mistake"]
        if mistakes:
            body += "<h3>Most confident mistakes</h3>" + html_table(
                ["#", "True", "Predicted", "Confidence", "Words", "Text"],
                [[r["rank"], r["label"], r["predicted"], r["confidence"], r["words"], r["text"]] for r in mistakes], 5)
        else:
            body += "<p>No mistakes on this split.</p>"
        for kind, heading, header, keys in (
                ("length_bucket", "By length", ["Length", "Examples", "Accuracy", "F1 (macro)", "Errors",
                                                "Mean confidence"], ["bucket", "n", "accuracy", "f1_macro", "errors",
                                                                     "mean_confidence"]),
                ("rating", "By star rating", ["Rating", "Examples", "Accuracy", "F1 (macro)", "Errors",
                                              "Mean confidence"], ["rating", "n", "accuracy", "f1_macro", "errors",
                                                                   "mean_confidence"]),
                ("confused_pair", "Most-confused label pairs", ["True", "Predicted", "Count", "Share of true label"],
                 ["label", "predicted", "count", "share_of_label"])):
            rows = [[r[k] for k in keys] for r in errors if r["kind"] == kind]
            if rows:
                body += f"<h3>{_h(heading)}</h3>" + html_table(header, rows)
        sections.append(("errors", "Error analysis", body))

    if behaviour:
        rows = [[c["name"], c["kind"], c["description"], f"{c['passed']}/{c['n']}", _pct(c["pass_rate"])]
                for c in behaviour["checks"]]
        rows.append(["all", "", "", f"{behaviour['passed']}/{behaviour['n']}", _pct(behaviour["pass_rate"])])
        body = ("<p>CheckList-style tests written for llmclf. MFT: the expected label; INV: the label survives a "
                "harmless edit; DIR: the edit does not weaken the expected label.</p>"
                + html_table(["Check", "Type", "What it tests", "Passed", "Pass rate"], rows))
        for c in behaviour["checks"]:
            if c["failures"]:
                header = list(c["failures"][0])
                body += (f"<h3 class=\"fail\">Failures: {_h(c['name'])}</h3>"
                         + html_table([h.replace("_", " ") for h in header], [[f.get(h) for h in header]
                                                                              for f in c["failures"]]))
        sections.append(("behaviour", "Behaviour checks", body))

    if by_section.get("plots"):
        sections.append(("plots", "Plots", "".join(by_section["plots"])))
    rows = merge_history(history)
    keys = [k for k in HISTORY_KEYS if any(k in r for r in rows)]
    if rows:
        sections.append(("history", "Training history", html_table(keys, [[r.get(k) for k in keys] for r in rows])))
    if config:
        sections.append(("recipe", "Training recipe", html_table(["Setting", "Value"], [[k, fmt_config(v)] for k, v
                                                                                        in flatten_config(config)])))
    nav = "".join(f'<a href="#{anchor}">{_h(heading)}</a>' for anchor, heading, _ in sections)
    page = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', '<link rel="icon" href="data:,">',
        f"<title>{_h(title)} · llmclf report</title>", f"<style>{REPORT_CSS}</style>", "</head>", "<body>",
        f"<h1>{_h(title)}</h1>", '<p class="muted">llmclf report: a text classifier, its numbers, and where not to '
        "trust it.</p>", f"<nav>{nav}</nav>",
        *(f'<section id="{anchor}"><h2>{_h(heading)}</h2>{body}</section>' for anchor, heading, body in sections),
        "</body>", "</html>", "",
    ]
    path = out_dir / "report.html"
    path.write_text("\n".join(page), encoding="utf-8")
    return path
