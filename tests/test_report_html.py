"""report.html: one self-contained page (plots embedded, text escaped), checked in headless Chromium for broken
images, console errors and network requests; and the model card's trust sections."""

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from llmclf.analysis import ScoredSplit, write_analysis
from llmclf.calibration import fit_calibration
from llmclf.cli import main
from llmclf.report import write_model_card
from llmclf.report_html import write_report_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = 'Loved it <script>alert("x")</script> <img src=x onerror=alert(1)> & "quotes"'
CONFIG = {"model": "tiny-random-llama", "lora": True, "lora_r": 8, "learning_rate": 3e-3, "epochs": 2.0}
HISTORY = [{"epoch": 1.0, "train_loss": 0.7, "eval_loss": 0.6, "eval_accuracy": 0.7},
           {"epoch": 2.0, "train_loss": 0.5, "eval_loss": 0.4, "eval_accuracy": 0.8}]


class Stub:
    id2label = {0: "neg", 1: "pos"}

    def predict_proba(self, texts):
        p = np.array([0.9 if "great" in t or "good" in t else 0.2 for t in texts])
        return np.stack([1 - p, p], axis=1)

    def decide(self, probs):
        return probs.argmax(axis=1)


def analysed_run(out: Path):
    """A full report from arrays: two splits, a training summary, history, config and behaviour checks."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 160)
    logits = 2.0 * (rng.normal(size=(160, 2)) + np.eye(2)[labels])
    texts = [f"review {i} " + ("word " * int(rng.integers(1, 40))) for i in range(160)]
    wrong = int(np.flatnonzero(logits.argmax(axis=1) != labels)[0])
    texts[wrong] = HOSTILE
    logits[wrong] = [-9.0, 9.0] if labels[wrong] == 0 else [9.0, -9.0]  # the surest mistake: first in the table
    parts = [ScoredSplit("validation", texts[:60], labels[:60], logits[:60]),
             ScoredSplit("test", texts[60:], labels[60:], logits[60:], ratings=[1 + i % 10 for i in range(100)])]
    if wrong < 60:
        parts[1].texts[0], parts[1].logits[0], parts[1].labels[0] = texts[wrong], logits[wrong], labels[wrong]
    out.mkdir(parents=True, exist_ok=True)
    return write_analysis(out, parts, {0: "neg", 1: "pos"}, fit_calibration(logits[:60], labels[:60]),
                          classifier=Stub(), history=HISTORY,
                          run={"config": CONFIG, "title": "demo <run>", "training": {"train_seconds": 12.5},
                               "data_info": {"train": "reviews.csv", "train_size": 500, "validation_size": 60,
                                             "test": "test.csv", "test_size": 100}})


def test_report_is_self_contained_and_escaped(tmp_path):
    result = analysed_run(tmp_path / "run")
    html = result.report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<title>demo &lt;run&gt; · llmclf report</title>" in html
    # nothing is fetched: every src is an embedded PNG, every href an in-page anchor or the empty icon
    assert re.findall(r'src="([^"]*)"', html) and all(s.startswith("data:image/png;base64,")
                                                     for s in re.findall(r'src="([^"]*)"', html))
    assert all(h.startswith("#") or h == "data:," for h in re.findall(r'href="([^"]*)"', html))
    assert "<script" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    for src in re.findall(r'src="data:image/png;base64,([^"]*)"', html):
        assert base64.b64decode(src)[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.count("<img ") == 6  # confusion matrix, ROC, loss, accuracy, reliability, risk-coverage
    for anchor in ("summary", "results", "calibration", "threshold", "abstention", "errors", "behaviour", "plots",
                   "history", "recipe"):
        assert f'<section id="{anchor}">' in html
    for text in ("Most confident mistakes", "By length", "By star rating", "Most-confused label pairs",
                 "names_and_places", "Coverage at 99% accuracy", "reviews.csv", "LoRA (rank 8)"):
        assert text in html, text


def test_report_for_a_run_without_analysis(tmp_path):
    metrics = {"validation": {"accuracy": 0.5, "loss": 0.7, "label_names": ["a", "b"], "per_class": {}}}
    html = write_report_html(tmp_path, metrics=metrics, plots=[]).read_text()
    assert 'id="results"' in html and 'id="calibration"' not in html and "<img" not in html


def test_report_names_the_hub_id_beside_the_alias(tmp_path):
    """A reader needs the real base model, not only the llmclf alias typed at the command line."""
    metrics = {"validation": {"accuracy": 0.5, "loss": 0.7, "label_names": ["a", "b"], "per_class": {}}}
    html = write_report_html(tmp_path, metrics=metrics, plots=[], config={"model": "smollm2-135m"}).read_text()
    assert "<td>HuggingFaceTB/SmolLM2-135M-Instruct (llmclf alias smollm2-135m)</td>" in html


def test_model_card_gets_the_trust_sections(tmp_path):
    result = analysed_run(tmp_path / "run")
    m = result.metrics["test"]
    path = write_model_card(tmp_path / "card", config=CONFIG, metrics=result.metrics["validation"], history=HISTORY,
                            data_info={"train": "reviews.csv", "label_names": ["neg", "pos"]},
                            plots=[str(p) for p in result.plots], test_metrics=m,
                            analysis={"split": "test", "metrics": m, "errors": result.errors,
                                      "behaviour": result.behaviour})
    card = path.read_text()
    for heading in ("## Calibration, decision threshold and abstention", "## Error analysis", "## Behaviour checks"):
        assert heading in card
    assert f"| temperature (fitted on validation) | {m['temperature']:.4f} |" in card
    assert "coverage at 99% accuracy" in card and "--min-confidence" in card
    assert "temperature-scaled on the validation data" in card
    assert "<script" not in card and "&lt;script&gt;" in card  # a review's tags are shown, not run


def chromium_problems(page_path: Path) -> dict:
    from playwright.sync_api import sync_playwright

    console, failed, requests = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
        finally:
            browser.close()
    return {"console": console, "failed": failed, "images": images, "sections": sections,
            "external": [u for u in requests if not u.startswith(("file:", "data:"))]}


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="headless Chromium is not installed at /usr/bin/chromium "
                    "(apt-get install chromium); the report's browser check needs it")
def test_reports_render_in_headless_chromium(tmp_path, tiny_classifier_dir, sentiment_csv):
    full = analysed_run(tmp_path / "run").report
    assert main(["evaluate", "--model", str(tiny_classifier_dir), "--data", str(sentiment_csv), "--text-column",
                 "review", "--output", str(tmp_path / "eval")]) == 0
    for page, count in ((full, 6), (tmp_path / "eval" / "report.html", 4)):
        found = chromium_problems(page)
        assert found["console"] == [] and found["failed"] == [] and found["external"] == [], found
        assert len(found["images"]) == count
        assert all(complete and width > 0 for _, complete, width in found["images"]), found["images"]
        assert {"summary", "calibration", "abstention", "errors", "behaviour"} <= set(found["sections"])
