"""The page at `/`, end to end in real headless Chromium (Debian's `chromium`, driven by Playwright).

A person pastes a text and reads the label and one probability bar per class, uploads a CSV and downloads it
scored, and opens the model card with its plots. Skips only where Chromium or Playwright is not installed
(.ci/run installs both); Playwright never downloads a browser here, it drives /usr/bin/chromium.
"""

import json
import os
import shutil
from io import StringIO

import numpy as np
import pandas as pd
import pytest

from llmclf.testing import ServerProcess

CHROMIUM = os.environ.get("LLMCLF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_CHARS = 500

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `apt-get install chromium` "
                                "(.ci/run does), or point LLMCLF_CHROMIUM at a Chromium binary")


@pytest.fixture(scope="module")
def server(model_dir):
    with ServerProcess(model_dir, max_chars_per_text=MAX_CHARS) as process:
        yield process


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: `pip install "
                                   "playwright` (.ci/run does; it drives the system Chromium, no download)")
    with sync_api.sync_playwright() as playwright:
        # A fresh profile per run; Playwright adds its own --user-data-dir for a persistent context.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, accept_downloads=True)
        yield context
        context.close()


@pytest.fixture
def page_errors():
    """What the page logged as errors; a test that provokes one on purpose takes it off the list."""
    return []


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll `expression` from Python. Playwright's wait_for_function polls with eval() inside the page, which
    the page's own Content-Security-Policy (script-src 'self') rightly refuses once a first check fails."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        time.sleep(0.05)


@pytest.fixture
def page(browser, server, page_errors):
    """A tab on the page; fails the test if the page logs an error (a script error, a CSP refusal, a 404...)."""
    page = browser.new_page()
    page.on("pageerror", lambda error: page_errors.append(f"page error: {error}"))
    page.on("console", lambda message: page_errors.append(message.text) if message.type == "error" else None)
    page.goto(server.url + "/")
    wait_until(page, "document.querySelector('#model-name').textContent === 'tiny-card'")
    yield page
    page.close()
    assert page_errors == []


def take_http_error(page_errors, status):
    """The browser logs every failed fetch; remove the one the test asked for."""
    (logged,) = page_errors
    assert f"status of {status}" in logged
    page_errors.clear()


def test_page_shows_the_model(page):
    assert page.title() == "tiny-card · llmclf"
    summary = page.inner_text("#model-summary")
    assert "labels: neg, pos" in summary and "backbone: tiny-random-llama" in summary and "max_length: 64" in summary


def test_classify_a_text_shows_label_and_a_bar_per_class(page, classifier):
    text = "A superb, delightful film with a wonderful cast."
    page.fill("#text", text)
    page.click("#classify")
    page.wait_for_selector("#result:not([hidden])")
    label = classifier.predict(text)
    probs = dict(zip(classifier.labels, classifier.predict_proba(text)))
    assert page.inner_text("#result-label") == label
    assert page.inner_text("#result-score") == f"({100 * probs[label]:.1f}%)"
    bars = page.locator(".bar")
    assert bars.count() == 2
    for i, name in enumerate(["neg", "pos"]):
        bar = bars.nth(i)
        assert bar.get_attribute("data-label") == name
        assert float(bar.get_attribute("data-prob")) == pytest.approx(probs[name], abs=1e-5)
        assert bar.locator(".pct").inner_text() == f"{100 * probs[name]:.1f}%"
        track, fill = bar.locator(".track").bounding_box(), bar.locator(".fill").bounding_box()
        assert fill["width"] / track["width"] == pytest.approx(probs[name], abs=0.01)  # drawn to scale
    assert page.locator(".bar.top").get_attribute("data-label") == label
    assert page.inner_text("#result-rule") == "Decision: the most probable label."
    assert page.is_hidden("#result-review") and page.is_hidden("#predict-error")


def test_an_over_long_text_shows_the_limit(page, page_errors):
    page.fill("#text", "x" * (MAX_CHARS + 1))
    page.click("#classify")
    page.wait_for_selector("#predict-error:not([hidden])")
    assert "max_chars_per_text" in page.inner_text("#predict-error")
    assert page.is_hidden("#result")
    take_http_error(page_errors, 413)


def test_upload_a_csv_and_download_it_scored(page, classifier):
    texts = ["Dreadful and boring.", "Great, superb acting!", 'A "quoted", comma-laden\nline', "ünïcödé ✓"]
    frame = pd.DataFrame({"id": ["001", "002", "003", "004"], "text": texts})
    page.set_input_files("#csv-file", files=[{"name": "reviews.csv", "mimeType": "text/csv",
                                              "buffer": frame.to_csv(index=False).encode()}])
    with page.expect_download() as download_info:
        page.click("#score")
    download = download_info.value
    assert download.suggested_filename == "reviews-scored.csv"
    with open(download.path(), encoding="utf-8") as f:
        scored = pd.read_csv(StringIO(f.read()), dtype={"id": str})
    assert list(scored.columns) == ["id", "text", "label", "score", "prob_neg", "prob_pos"]
    assert scored["id"].tolist() == ["001", "002", "003", "004"] and scored["text"].tolist() == texts
    assert scored["label"].tolist() == classifier.predict(texts)
    assert np.allclose(scored[["prob_neg", "prob_pos"]].to_numpy(), classifier.predict_proba(texts), atol=1e-5)
    assert page.inner_text("#csv-rows") == "4"


def test_a_csv_without_the_text_column_says_so(page, page_errors):
    page.set_input_files("#csv-file", files=[{"name": "x.csv", "mimeType": "text/csv", "buffer": b"review\nfine\n"}])
    page.fill("#text-column", "body")
    page.click("#score")
    page.wait_for_selector("#csv-error:not([hidden])")
    assert "no text column 'body'; columns found: review" in page.inner_text("#csv-error")
    assert page.is_hidden("#csv-done")
    take_http_error(page_errors, 422)


def test_open_the_model_card_with_its_plots(page, model_dir):
    page.click("#open-card")
    page.wait_for_selector("#card-body:not([hidden])")
    assert page.inner_text("#card-body h1") == "tiny-card"
    headings = page.locator("#card-body h2").all_inner_texts()
    assert {"How to use", "Results", "Plots", "Limitations"} <= set(headings)
    wait_until(page, "[...document.querySelectorAll('#card-body img')].every(i => i.complete)")
    images = page.evaluate("[...document.querySelectorAll('#card-body img')]"
                           ".map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert sorted(src for src, _ in images) == sorted(f"/v1/model/files/plots/{p.name}"
                                                      for p in (model_dir / "plots").glob("*.png"))
    assert all(width > 100 for _, width in images)  # decoded PNGs, not broken-image icons
    accuracy = json.loads((model_dir / "metrics.json").read_text())["validation"]["accuracy"]
    assert f"{accuracy:.4f}" in page.inner_text("#metrics")
    page.click("#open-card")
    assert page.is_hidden("#card-body")


def test_api_docs_render_offline(browser, server):
    """/docs is Swagger UI from this server's own copy of its assets: it renders every operation, and not one
    request leaves loopback (a CDN would leave the page blank on a machine without internet access)."""
    from urllib.parse import urlsplit

    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        page.goto(server.url + "/docs")
        predict = page.locator('.opblock-summary-path[data-path="/v1/predict"]')
        predict.wait_for(state="visible", timeout=30_000)
        paths = set(page.locator(".opblock-summary-path").evaluate_all("els => els.map(e => e.dataset.path)"))
        assert {"/classify", "/v1/predict", "/v1/score-csv", "/health", "/v1/model"} <= paths
        assert page.title() == "llmclf - Swagger UI"
    finally:
        page.close()
    assert errors == []
    hosts = {urlsplit(url).netloc for url in requests if not url.startswith(("data:", "blob:"))}
    assert hosts == {urlsplit(server.url).netloc}, requests
    assert server.url + "/docs/assets/swagger-ui-bundle.js" in requests and server.url + "/openapi.json" in requests
