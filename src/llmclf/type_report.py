"""What a multi-label or regression run reports: each split's metrics, plots, errors.jsonl, report.html and the
model card (README.md). The single-label equivalents are llmclf.analysis, llmclf.report and llmclf.report_html.

Each split's metrics (metrics.json's `validation` and `test` blocks):

    multi-label  llmclf.multilabel.multilabel_metrics at the saved per-label thresholds (tuned on validation),
                 plus `at_0.5` (the same F1s and subset accuracy at 0.5, for comparison), `temperature` 1.0 and
                 `temperature_scaling` (why it was skipped)
    regression   llmclf.regression.regression_metrics on the original scale, plus with --interval
                 `interval`: level, halfwidth and the split's empirical coverage

metrics.json also records `behaviour` {"skipped": reason}: the behaviour checks are for sentiment classifiers.
errors.jsonl holds the 20 worst examples of the last split: `kind` "mistake" (multi-label: most labels wrong)
or "residual" (regression: largest |prediction - target|).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from llmclf.analysis import snippet
from llmclf.problem_types import MULTI_LABEL
from llmclf.report import (HISTORY_KEYS, _data_section, _md, _plot_link, describe_base_model, flatten_config,
                           fmt_config, fmt_number, front_matter, merge_history, method, table,
                           training_lines)

TOP_ERRORS = 20
NO_TEMPERATURE = ("not applied: temperature scaling calibrates a softmax over classes; multi-label outputs are "
                  "independent sigmoids, decided by per-label thresholds tuned on validation")
NO_BEHAVIOUR = "the behaviour checks are for single-label sentiment classifiers"
RESULT_KEYS = {
    MULTI_LABEL: ("f1_micro", "f1_macro", "f1_weighted", "subset_accuracy", "hamming_loss", "precision_micro",
                  "recall_micro", "roc_auc", "loss"),
    "regression": ("mae", "rmse", "r2", "pearson", "spearman", "mse"),
}


@dataclass
class TypedAnalysis:
    metrics: dict[str, dict]
    split: str
    errors: list[dict]
    behaviour: dict
    plots: list[pathlib.Path] = field(default_factory=list)
    report: pathlib.Path | None = None


def typed_split_metrics(part, id2label: dict[int, str], problem_type: str, fitted: dict) -> dict:
    """One split's metrics (see the module docstring)."""
    names = [id2label[i] for i in sorted(id2label)]
    if problem_type == MULTI_LABEL:
        from llmclf.multilabel import multilabel_metrics

        thresholds = [fitted["thresholds"][n] for n in names]
        out = multilabel_metrics(part.targets, part.outputs, names, thresholds)
        plain = multilabel_metrics(part.targets, part.outputs, names)
        out["at_0.5"] = {k: plain[k] for k in ("f1_micro", "f1_macro", "f1_weighted", "subset_accuracy", "hamming_loss")}
        return out | {"temperature": 1.0, "temperature_scaling": NO_TEMPERATURE}
    from llmclf.regression import coverage, regression_metrics

    out = regression_metrics(part.targets, part.outputs) | {"label_names": names}
    if fitted.get("interval"):
        interval = fitted["interval"]
        out["interval"] = {**interval, "coverage": coverage(part.targets, part.outputs, interval["halfwidth"])}
    return out


def worst_examples(part, id2label: dict[int, str], problem_type: str, fitted: dict, top: int = TOP_ERRORS) -> list[dict]:
    """errors.jsonl records: the examples the model got most wrong, worst first."""
    if problem_type == MULTI_LABEL:
        names = [id2label[i] for i in sorted(id2label)]
        chosen = part.outputs >= np.array([fitted["thresholds"][n] for n in names])
        wrong = (chosen != part.targets.astype(bool)).sum(axis=1)
        order = [i for i in np.lexsort((-np.abs(part.outputs - part.targets).sum(axis=1), -wrong)) if wrong[i]][:top]
        return [{"kind": "mistake", "split": part.name, "rank": r + 1, "index": int(i), "wrong_labels": int(wrong[i]),
                 "labels": [n for n, y in zip(names, part.targets[i]) if y],
                 "predicted": [n for n, c in zip(names, chosen[i]) if c], "text": snippet(part.texts[i])}
                for r, i in enumerate(order)]
    residual = part.outputs - part.targets
    order = np.argsort(-np.abs(residual), kind="stable")[:top]
    return [{"kind": "residual", "split": part.name, "rank": r + 1, "index": int(i), "target": float(part.targets[i]),
             "predicted": float(part.outputs[i]), "residual": float(residual[i]), "text": snippet(part.texts[i])}
            for r, i in enumerate(order)]


def write_typed_analysis(out_dir, parts: list, id2label: dict[int, str], problem_type: str, fitted: dict,
                         history: list[dict] | None = None, run: dict | None = None) -> TypedAnalysis:
    """Every split's metrics; plots, errors.jsonl and report.html of the last split, written into `out_dir`."""
    from llmclf.type_plots import write_typed_plots

    out_dir, run = pathlib.Path(out_dir), dict(run or {})
    metrics = {part.name: typed_split_metrics(part, id2label, problem_type, fitted) for part in parts}
    part = parts[-1]
    errors = worst_examples(part, id2label, problem_type, fitted)
    (out_dir / "errors.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in errors),
                                          encoding="utf-8")
    halfwidth = (fitted.get("interval") or {}).get("halfwidth")
    plots = write_typed_plots(out_dir, problem_type, metrics[part.name], part.targets, part.outputs, history, halfwidth)
    analysis = TypedAnalysis(metrics, part.name, errors, {"skipped": NO_BEHAVIOUR}, plots)
    analysis.report = write_typed_report_html(out_dir, analysis, problem_type, run, history)
    return analysis


# --- report.html -------------------------------------------------------------------------------------------

def _detail_rows(problem_type: str, metrics: dict) -> tuple[list[str], list[list]]:
    if problem_type == MULTI_LABEL:
        return (["Label", "Threshold", "Precision", "Recall", "F1", "ROC-AUC", "Support"],
                [[name, *(c[k] for k in ("threshold", "precision", "recall", "f1", "roc_auc", "support"))]
                 for name, c in metrics["per_label"].items()])
    interval = metrics.get("interval")
    if not interval:
        return [], []
    return (["Level", "Half-width", "Coverage"], [[interval["level"], interval["halfwidth"], interval["coverage"]]])


def write_typed_report_html(out_dir, analysis: TypedAnalysis, problem_type: str, run: dict,
                            history: list[dict] | None) -> pathlib.Path:
    """report.html: one self-contained page (figures embedded) with the numbers of a multi-label or regression run."""
    from llmclf.report_html import _figure, _h, _page, html_table

    splits, config = analysis.metrics, run.get("config") or {}
    summary = [["problem type", problem_type], ["base model", describe_base_model(config, code="")],
               ["method", method(config)]]
    summary += [[k.replace("_", " "), fmt_config([f"{a} {fmt_config(b)}" for a, b in v.items()] if isinstance(v, dict)
                                                 else v)] for k, v in (run.get("training") or {}).items()]
    sections = [("summary", "Summary", html_table(["What", "Value"], summary)),
                ("results", "Results", html_table(["Metric", *splits], [[k, *(m.get(k) for m in splits.values())]
                                                                      for k in RESULT_KEYS[problem_type]]))]
    for name, m in splits.items():
        header, rows = _detail_rows(problem_type, m)
        if rows:
            heading = "Per label" if problem_type == MULTI_LABEL else "Prediction interval"
            sections.append((f"detail-{name}", f"{heading} ({name})", html_table(header, rows)))
    notes = [f"Behaviour checks: skipped ({NO_BEHAVIOUR})."]
    if problem_type == MULTI_LABEL:
        notes.insert(0, f"Temperature scaling: {NO_TEMPERATURE}.")
    sections.append(("notes", "Notes", "".join(f"<p>{_h(n)}</p>" for n in notes)))
    if analysis.errors:
        keys = [k for k in analysis.errors[0] if k not in ("kind", "split")]
        sections.append(("errors", "Worst examples", html_table(keys, [[fmt_config(r[k]) if isinstance(r[k], list)
                                                                      else r[k] for k in keys] for r in analysis.errors],
                                                               len(keys) - 1)))
    sections.append(("plots", "Plots", "".join(_figure(p) for p in analysis.plots)))
    rows = merge_history(history or [])
    if rows:
        keys = ["epoch", "train_loss", "eval_loss", *sorted({k for r in rows for k in r if k.startswith("eval_")} -
                                                           {"eval_loss"})]
        sections.append(("history", "Training history", html_table(keys, [[r.get(k) for k in keys] for r in rows])))
    if config:
        sections.append(("recipe", "Training recipe", html_table(["Setting", "Value"], [[k, fmt_config(v)] for k, v
                                                                                        in flatten_config(config)])))
    path = pathlib.Path(out_dir) / "report.html"
    path.write_text(_page(run.get("title") or pathlib.Path(out_dir).resolve().name, sections), encoding="utf-8")
    return path


# --- the model card ----------------------------------------------------------------------------------------

def _usage(problem_type: str, name: str, labels: list[str]) -> list[str]:
    if problem_type == MULTI_LABEL:
        return ["```python", "from transformers import pipeline", "",
                f'classifier = pipeline("text-classification", model="{name}", top_k=None, function_to_apply="sigmoid")',
                'print(classifier("I loved every minute of it."))  # a probability per label', "```", "",
                "Each label is chosen when its probability reaches its threshold (tuned on validation, saved in "
                "config.json under `llmclf.thresholds`); `llmclf predict` applies them.", ""]
    return ["```python", "import json", "from transformers import pipeline", "",
            f'regressor = pipeline("text-classification", model="{name}", function_to_apply="none")',
            f'record = json.load(open("{name}/config.json"))["llmclf"]',
            'raw = regressor("I loved every minute of it.")[0]["score"]',
            'print(raw * record["target_std"] + record["target_mean"])  # on the scale of the training targets',
            "```", "", f"The model outputs `{labels[0]}` standardised; `llmclf predict` undoes it (and adds the "
            "interval, when one was fitted).", ""]


def _results(problem_type: str, splits: dict[str, dict], history: list[dict]) -> list[str]:
    out = ["## Results", "", table(["Metric", *splits], [[k] + [fmt_number(m.get(k)) for m in splits.values()]
                                                      for k in RESULT_KEYS[problem_type]]), ""]
    for split, m in splits.items():
        header, rows = _detail_rows(problem_type, m)
        if rows:
            title = "Per label" if problem_type == MULTI_LABEL else "Prediction interval (split conformal)"
            out += [f"### {title} ({split})", "", table(header, [[_md(fmt_number(v) if not isinstance(v, str) else v)
                                                                   for v in row] for row in rows]), ""]
    rows = merge_history(history)
    keys = [k for k in HISTORY_KEYS[:3] if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r if k.startswith("eval_")} - set(keys))
    if rows:
        out += ["### Training history", "", table(keys, [[fmt_number(r.get(k)) for k in keys] for r in rows]), ""]
    return out


def write_typed_card(out_dir, run: dict, results: dict, analysis: TypedAnalysis, history: list[dict]) -> pathlib.Path:
    """README.md of a multi-label or regression model: what it predicts, how to use it, data, recipe, results,
    plots, what was skipped and why, and limitations."""
    out_dir, config, data_info = pathlib.Path(out_dir), run.get("config") or {}, run.get("data_info") or {}
    problem_type, name = config.get("problem_type"), run.get("title") or pathlib.Path(out_dir).resolve().name
    labels = list(data_info.get("label_names") or [])
    splits = {k: v for k, v in results.items() if k in ("validation", "test")}
    headline = splits.get("test") or splits["validation"]
    what = (f"It predicts any subset of {len(labels)} labels: {', '.join(f'`{n}`' for n in labels)} (a sigmoid per "
            "label, each with its own threshold)." if problem_type == MULTI_LABEL else
            f"It predicts a number: `{labels[0]}` (regression).")
    weights = (results.get("training") or {}).get("class_weights")
    loss = ("binary cross-entropy with logits per label" + (", pos_weight " + ", ".join(
        f"`{k}` {v:.4g}" for k, v in weights.items()) if weights else "") if problem_type == MULTI_LABEL else
        f"{config.get('loss') or 'mse'} on standardised targets")
    skipped = [f"- Behaviour checks: skipped ({NO_BEHAVIOUR})."]
    if problem_type == MULTI_LABEL:
        skipped.insert(0, f"- Temperature scaling: {NO_TEMPERATURE} (recorded temperature 1.0).")
    lines = [
        front_matter(name, config, data_info, headline, "test" if "test" in splits else "validation"),
        f"# {name}", "",
        f"A text model fine-tuned from {describe_base_model(config)} with llmclf by {method(config)}. {what}",
        "", "## How to use", "", *_usage(problem_type, name, labels),
        "```bash", f'llmclf predict --model {name} "I loved every minute of it."', "```", "",
        "To train it again: `llmclf train --config llmclf_config.yaml` (the settings below, saved with the model).", "",
        *_data_section(data_info, labels),
        "## Training recipe", "", table(["Setting", "Value"], [[k, fmt_config(v)] for k, v in flatten_config(config)]),
        "", f"Loss: {loss}.", "", *training_lines(results.get("training")),
        *_results(problem_type, splits, history),
        "## What does not apply", "", *skipped, "",
        "## Plots", "", *[_plot_link(out_dir, p) + "\n" for p in analysis.plots],
        "## Limitations", "",
        "- Expect weaker results on text unlike the training data (other topics, registers, time periods or languages).",
        "- Reported numbers are measured on " + ("the held-out test data." if "test" in splits else
                                                 "a validation split, which also tuned the thresholds or interval."),
        "- Do not use it for decisions about people without human oversight.", "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
