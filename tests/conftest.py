"""Shared fixtures: small labelled data sets written by the tests themselves (no network, no ../shared)."""

import os
import random
from pathlib import Path

import pandas as pd
import pytest

# Tests compare outputs across batchings, processes and reloads at 1e-5: float32 everywhere, including the
# CLI and server subprocesses (they inherit the environment). The bf16 path has its own tests, which ask for it.
os.environ["LLMCLF_PRECISION"] = "fp32"

# The fast lane (`python -m pytest -m "not slow"`) leaves out what trains models, starts servers, processes or
# browsers, or loads the real backbone; CI runs everything. These four modules are marked here rather than in
# the files because they are mostly servers, Chromium and benchmark subprocesses, and they were being rewritten
# when the lane was drawn (issue 12): every test in them is slow except the in-process ones named below, so a new
# or renamed test lands in the slow lane until someone moves it here.
SLOW_MODULES = {"test_serve.py", "test_web.py", "test_report_html.py", "test_bench.py"}
FAST_IN_SLOW_MODULES = {
    "test_serve.py": {"test_defaults_bind_loopback_only", "test_batcher_gathers_concurrent_requests_and_bounds_the_queue",
                      "test_render_card_escapes_and_links_only_model_files",
                      "test_model_file_stays_inside_the_directory",
                      "test_a_failing_model_answers_500_and_the_app_keeps_serving",
                      "test_api_docs_load_only_their_own_assets"},
    "test_report_html.py": {"test_report_is_self_contained_and_escaped", "test_report_for_a_run_without_analysis",
                            "test_report_names_the_hub_id_beside_the_alias", "test_model_card_gets_the_trust_sections"},
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.name
        if module in SLOW_MODULES and item.originalname not in FAST_IN_SLOW_MODULES.get(module, ()):
            item.add_marker(pytest.mark.slow)


KEYWORDS = {
    "world": ["election", "minister", "treaty", "embassy"],
    "sports": ["goal", "match", "coach", "league"],
    "business": ["profit", "shares", "merger", "revenue"],
    "tech": ["software", "chip", "robot", "laptop"],
}
SENTIMENT = {"neg": ["awful", "boring", "dreadful", "terrible"], "pos": ["wonderful", "superb", "delightful", "great"]}
FILLER = "the a report said today new people after before during week film story".split()


def keyword_rows(classes: dict[str, list[str]], n: int, seed: int = 0) -> list[dict]:
    """Texts whose class is given away by a keyword: a tiny random model learns them in a few epochs."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(classes)[i % len(classes)]
        words = rng.sample(FILLER, rng.randint(2, 8)) + [rng.choice(classes[label]) for _ in range(2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="session")
def news_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "news.jsonl"
    pd.DataFrame(keyword_rows(KEYWORDS, 160)).to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory) -> Path:
    """Binary sentiment with integer labels 0/1 (named neg/pos with --label-names)."""
    path = tmp_path_factory.mktemp("data") / "sentiment.csv"
    rows = [{"review": r["text"], "label": int(r["label"] == "pos")} for r in keyword_rows(SENTIMENT, 120, seed=1)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """An untrained tiny-random-llama classifier saved as llmclf saves models (max_length 64)."""
    import yaml

    from llmclf.models import load_backbone, save_classifier

    out = tmp_path_factory.mktemp("models") / "tiny"
    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    save_classifier(model, tokenizer, out)
    (out / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 64}))
    return out


@pytest.fixture(scope="session")
def carded_model_dir(tiny_classifier_dir, tmp_path_factory) -> Path:
    """The tiny classifier plus metrics.json, plots/*.png and README.md as `llmclf train` writes them, from
    made-up validation scores (for the server's /v1/model and the web page)."""
    import json
    import shutil

    import numpy as np

    from llmclf.metrics import compute_metrics, softmax
    from llmclf.plots import write_plots
    from llmclf.report import write_model_card

    path = tmp_path_factory.mktemp("carded") / "tiny-card"
    shutil.copytree(tiny_classifier_dir, path)
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    probs = softmax(rng.normal(size=(40, 2)) + 2 * np.eye(2)[labels])
    metrics = compute_metrics(labels, probs, {0: "neg", 1: "pos"})
    (path / "metrics.json").write_text(json.dumps({"validation": metrics}))
    plots = write_plots(path, metrics, labels, probs)
    write_model_card(path, config={"model": "tiny-random-llama", "max_length": 64}, metrics=metrics, history=[],
                     data_info={"train": "reviews.csv", "label_names": ["neg", "pos"]}, plots=plots)
    return path


@pytest.fixture(scope="module")
def model_dir(carded_model_dir):
    """The tiny classifier with a model card and plots: what the server and web-page tests serve."""
    return carded_model_dir


@pytest.fixture(scope="module")
def classifier(model_dir):
    from llmclf.predict import Classifier

    return Classifier.from_pretrained(str(model_dir))
