"""HTML from llmclf's results: report.html (one self-contained page per run, written by `write_analysis` after
`llmclf train` and `llmclf evaluate`) and `render_card`, the model card as HTML for the server's web page.

    llmclf evaluate --model runs/imdb --data test.csv --output runs/imdb-test   # writes runs/imdb-test/report.html

Every value from the data is escaped; the page has no scripts and no external links.
"""

from __future__ import annotations

import base64
import html
import numbers
import pathlib
import re

from llmclf.report import (HISTORY_KEYS, RESULT_KEYS, SPLITS, describe_base_model, flatten_config, fmt_config,
                           fmt_number, fmt_percent, merge_history, method, threshold_evidence)

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
ERROR_TABLES = (  # errors.jsonl kind, heading, column headers, record keys
    ("length_bucket", "By length", ["Length", "Examples", "Accuracy", "F1 (macro)", "Errors", "Mean confidence"],
     ["bucket", "n", "accuracy", "f1_macro", "errors", "mean_confidence"]),
    ("rating", "By star rating", ["Rating", "Examples", "Accuracy", "F1 (macro)", "Errors", "Mean confidence"],
     ["rating", "n", "accuracy", "f1_macro", "errors", "mean_confidence"]),
    ("confused_pair", "Most-confused label pairs", ["True", "Predicted", "Count", "Share of true label"],
     ["label", "predicted", "count", "share_of_label"]),
)


def _h(value) -> str:
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
    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode("ascii")
    name = pathlib.Path(path).stem.replace("_", " ")
    return (f'<figure><img alt="{_h(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_h(name)}</figcaption></figure>")


# --- report.html -------------------------------------------------------------------------------------------


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
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v}
    split = split or (list(splits)[-1] if splits else None)
    config = config or {}
    figures: dict[str, list[str]] = {}
    for plot in plots:
        figures.setdefault(SECTION_PLOTS.get(pathlib.Path(plot).stem, "plots"), []).append(_figure(plot))

    sections = [("summary", "Summary", _summary(metrics, splits, config, data_info or {}))]
    if splits:
        sections.append(("results", "Results", _results(splits)))
    if splits and "ece" in next(iter(splits.values())):
        sections += [("calibration", "Calibration", _calibration(splits, figures.get("calibration", []))),
                     ("threshold", "Decision threshold", _threshold(splits)),
                     ("abstention", "Abstention for human review", _abstention(splits, figures.get("abstention", [])))]
    if errors:
        sections.append(("errors", "Error analysis", _errors(errors, split)))
    if behaviour:
        sections.append(("behaviour", "Behaviour checks", _behaviour(behaviour)))
    if figures.get("plots"):
        sections.append(("plots", "Plots", "".join(figures["plots"])))
    rows = merge_history(history or [])
    if rows:
        keys = [k for k in HISTORY_KEYS if any(k in r for r in rows)]
        sections.append(("history", "Training history", html_table(keys, [[r.get(k) for k in keys] for r in rows])))
    if config:
        sections.append(("recipe", "Training recipe", html_table(["Setting", "Value"], [[k, fmt_config(v)] for k, v
                                                                                        in flatten_config(config)])))
    path = out_dir / "report.html"
    path.write_text(_page(title or out_dir.resolve().name, sections), encoding="utf-8")
    return path


def _page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document from (anchor, heading, HTML body) sections, with a table of contents."""
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
    return "\n".join(page)


def _summary(metrics: dict, splits: dict, config: dict, data_info: dict) -> str:
    summary = []
    if config:
        summary += [["base model", describe_base_model(config, code="")], ["method", method(config)]]
    for name in SPLITS:
        if data_info.get(name) is not None or data_info.get(f"{name}_size") is not None:
            summary.append([f"{name} data", f"{data_info.get(name) or 'held out from the training data'} "
                                            f"({fmt_number(data_info.get(f'{name}_size'))} examples)"])
    for name, value in (metrics.get("training") or {}).items():
        if isinstance(value, dict):  # class_weights: label -> weight
            value = [f"{k} {fmt_config(v)}" for k, v in value.items()]
        summary.append([name.replace("_", " "), fmt_config(value)])
    names = next(iter(splits.values()), {}).get("label_names", [])
    summary.append(["labels", ", ".join(map(str, names))])
    return html_table(["What", "Value"], summary)


def _results(splits: dict) -> str:
    body = html_table(["Metric", *splits], [[k, *(m.get(k) for m in splits.values())] for k in RESULT_KEYS])
    for name, m in splits.items():
        rows = [[label, *(c[k] for k in ("precision", "recall", "f1", "support"))]
                for label, c in m.get("per_class", {}).items()]
        body += f"<h3>Per class ({_h(name)})</h3>" + html_table(["Label", "Precision", "Recall", "F1", "Support"], rows)
    return body


def _calibration(splits: dict, figures: list[str]) -> str:
    rows = [[name, m.get("temperature"), m.get("ece"), m.get("ece_calibrated"), m.get("loss_uncalibrated"),
             m.get("loss")] for name, m in splits.items()]
    return ("<p>Temperature scaling divides the logits by one number fitted on the validation data; the "
            "classification head carries it, so every loader gets these probabilities. Expected calibration "
            "error: 15 equal-width bins of the top-class probability.</p>"
            + html_table(["Split", "Temperature", "ECE before", "ECE after", "Loss before", "Loss after"], rows)
            + "".join(figures))


def _threshold(splits: dict) -> str:
    rows = [[name, fmt_number(m["threshold"]) + threshold_evidence(m.get("threshold_p_value")),
             m.get("threshold_objective"),
             *((m.get("at_threshold") or {}).get(k) for k in ("accuracy", "precision", "recall", "f1"))]
            for name, m in splits.items() if m.get("threshold") is not None]
    if not rows:
        return "<p>Argmax decisions (no threshold: the model is not binary).</p>"
    return ("<p>Binary models predict the second label exactly when its calibrated probability reaches the "
            "threshold, tuned on the validation data; <code>--threshold</code> on <code>predict</code> "
            "overrides it.</p>" + html_table(["Split", "Threshold", "Tuned for", "Accuracy", "Precision", "Recall",
                                              "F1"], rows))


def _abstention(splits: dict, figures: list[str]) -> str:
    rows = [[name, *(x for t in (99, 98) for x in (fmt_percent(m.get(f"coverage_at_{t}_accuracy")),
                                                    m.get(f"min_confidence_at_{t}_accuracy")))]
            for name, m in splits.items()]
    return ("<p><code>llmclf predict --min-confidence X</code> marks results whose top probability is below X "
            "<code>needs_review</code> and keeps their label. Coverage is the share answered automatically "
            "while the kept answers reach the accuracy.</p>"
            + html_table(["Split", "Coverage at 99% accuracy", "--min-confidence", "Coverage at 98% accuracy",
                          "--min-confidence"], rows) + "".join(figures))


def _errors(errors: list[dict], split: str | None) -> str:
    body = f"<p class=\"muted\">On the {_h(split)} data; all records are in <code>errors.jsonl</code>.</p>"
    mistakes = [r for r in errors if r["kind"] == "mistake"]
    if mistakes:
        body += "<h3>Most confident mistakes</h3>" + html_table(
            ["#", "True", "Predicted", "Confidence", "Words", "Text"],
            [[r["rank"], r["label"], r["predicted"], r["confidence"], r["words"], r["text"]] for r in mistakes], 5)
    else:
        body += "<p>No mistakes on this split.</p>"
    for kind, heading, header, keys in ERROR_TABLES:
        rows = [[r[k] for k in keys] for r in errors if r["kind"] == kind]
        if rows:
            body += f"<h3>{_h(heading)}</h3>" + html_table(header, rows)
    return body


def _behaviour(behaviour: dict) -> str:
    rows = [[c["name"], c["kind"], c["description"], f"{c['passed']}/{c['n']}", fmt_percent(c["pass_rate"])]
            for c in behaviour["checks"]]
    rows.append(["all", "", "", f"{behaviour['passed']}/{behaviour['n']}", fmt_percent(behaviour["pass_rate"])])
    body = ("<p>CheckList-style tests written for llmclf. MFT: the expected label; INV: the label survives a "
            "harmless edit; DIR: the edit does not weaken the expected label.</p>"
            + html_table(["Check", "Type", "What it tests", "Passed", "Pass rate"], rows))
    for c in behaviour["checks"]:
        if c["failures"]:
            header = list(c["failures"][0])
            body += (f"<h3 class=\"fail\">Failures: {_h(c['name'])}</h3>"
                     + html_table([h.replace("_", " ") for h in header], [[f.get(h) for h in header]
                                                                          for f in c["failures"]]))
    return body


# --- the model card as HTML (the server's /v1/model/card) --------------------------------------------------

INLINE = re.compile(r"`([^`]+)`|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*")


def _inline(text: str, image_url) -> str:
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        code, alt, src, label, href, bold = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif src is not None:
            url = image_url(src)
            out.append(f'<img src="{html.escape(url)}" alt="{html.escape(alt)}">' if url else html.escape(alt))
        elif href is not None:
            safe = href.startswith(("https://", "http://"))
            out.append(f'<a href="{html.escape(href)}" rel="noopener">{html.escape(label)}</a>' if safe
                       else html.escape(label))
        else:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _table(rows: list[str], image_url) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows
             if not re.fullmatch(r"[\s|:-]+", row)]
    if not cells:
        return ""
    head = "".join(f"<th>{_inline(c, image_url)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c, image_url)}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _without_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            return lines[end + 1 :]
    return lines


def render_card(markdown: str, image_url=lambda src: None) -> str:
    """The subset of Markdown our model cards use, as HTML: headings, paragraphs, lists, tables, fenced code,
    images, links, `code` and **bold**. All text is escaped; `image_url(src)` gives an image's URL or None to
    show its alt text instead. The YAML front matter (Hub metadata) is left out.

    >>> render_card("# Card\\n\\nIt <b>works</b>.")
    '<h1>Card</h1>\\n<p>It &lt;b&gt;works&lt;/b&gt;.</p>'
    """
    lines = _without_front_matter(markdown.splitlines())
    out, paragraph, i = [], [], 0

    def flush():
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph), image_url)}</p>")
            paragraph.clear()

    while i < len(lines):
        stripped = lines[i].strip()
        heading = re.fullmatch(r"(#{1,6})\s+(.*)", stripped)
        if stripped.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1 : j]))}</code></pre>")
            i = j + 1
        elif heading:
            flush()
            level = len(heading[1])
            out.append(f"<h{level}>{_inline(heading[2], image_url)}</h{level}>")
            i += 1
        elif stripped.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j], image_url))
            i = j
        elif re.match(r"[-*]\s+", stripped):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(item, image_url)}</li>" for item in items) + "</ul>")
        elif not stripped:
            flush()
            i += 1
        else:
            paragraph.append(stripped)
            i += 1
    flush()
    return "\n".join(out)
