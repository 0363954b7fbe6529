"""`llmclf serve` with multi-label and regression models: real server processes on loopback ports, spoken to
over HTTP (/v1/predict, vLLM's /classify, /v1/model, /v1/score-csv, /openapi.json). Single-label answers are
tests/test_serve.py's."""

import signal
from io import StringIO

import httpx
import numpy as np
import pandas as pd
import pytest

from llmclf.predict import Classifier
from llmclf.testing import ServerProcess
from typed_models import MULTI_LABELS, REGRESSION_RECORD, multi_label_dir, regression_dir

pytestmark = pytest.mark.slow  # server processes: out of the fast lane, as tests/test_serve.py's
CLEAN_EXIT = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown

TEXTS = ["a wonderful action film", "a dull drama", "funny comedy lol", "the war movie", "",
         " ".join(f"scene{i}" for i in range(300))]


@pytest.fixture(scope="module")
def typed_dirs(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("typed-serve")
    multi = multi_label_dir(root)
    # As if trained on "a|b" label cells: /v1/score-csv joins the chosen labels the same way.
    run = yaml.safe_load((multi / "llmclf_config.yaml").read_text())
    (multi / "llmclf_config.yaml").write_text(yaml.safe_dump({**run, "label_separator": "|"}))
    return {"multi": multi, "regression": regression_dir(root)}


def serve(model_dir, **options):
    process = ServerProcess(model_dir, max_wait_ms=5, **options).start()
    return process, httpx.Client(base_url=process.url, timeout=60)


@pytest.fixture(scope="module")
def multi_server(typed_dirs):
    process, client = serve(typed_dirs["multi"])
    yield client
    client.close()
    assert process.stop() in CLEAN_EXIT, process.log()[-3000:]


@pytest.fixture(scope="module")
def regression_server(typed_dirs):
    process, client = serve(typed_dirs["regression"])
    yield client
    client.close()
    assert process.stop() in CLEAN_EXIT, process.log()[-3000:]


@pytest.fixture(scope="module")
def multi(typed_dirs):
    return Classifier.from_pretrained(str(typed_dirs["multi"]))


@pytest.fixture(scope="module")
def regression(typed_dirs):
    return Classifier.from_pretrained(str(typed_dirs["regression"]))


# --- multi-label -------------------------------------------------------------------------------------------


def test_multi_label_predict(multi_server, multi):
    body = multi_server.post("/v1/predict", json={"texts": TEXTS}).json()
    assert body["problem_type"] == "multi_label_classification" and body["decision"] == "thresholds"
    assert body["labels"] == list(MULTI_LABELS.values())
    assert body["thresholds"] == {"action": 0.45, "comedy": 0.55, "drama": 0.5}
    probs = multi.predict_proba(TEXTS)
    for got, labels, row in zip(body["predictions"], multi.predict(TEXTS), probs):
        assert set(got) == {"labels", "score", "probs", "needs_review"}
        assert got["labels"] == labels and got["score"] == pytest.approx(row.max(), abs=1e-5)
        assert got["probs"] == pytest.approx(dict(zip(MULTI_LABELS.values(), row)), abs=1e-5)


def test_multi_label_classify_keeps_vllms_shape(multi_server, multi):
    for path in ("/classify", "/v1/classify"):
        body = multi_server.post(path, json={"input": TEXTS}).json()
        probs = multi.predict_proba(TEXTS)
        assert np.allclose([d["probs"] for d in body["data"]], probs, atol=1e-5)  # sigmoids, in id order
        assert [d["label"] for d in body["data"]] == [MULTI_LABELS[i] for i in probs.argmax(axis=1)]
        assert [d["labels"] for d in body["data"]] == multi.predict(TEXTS)
        assert all(d["num_classes"] == 3 and d["object"] == "classify" for d in body["data"])
        assert body["usage"]["prompt_tokens"] > len(TEXTS)


def test_multi_label_model_info_and_csv(multi_server, multi):
    info = multi_server.get("/v1/model").json()
    assert info["problem_type"] == "multi_label_classification" and info["num_labels"] == 3
    assert info["thresholds"] == {"action": 0.45, "comedy": 0.55, "drama": 0.5}
    csv = pd.DataFrame({"id": ["007", "008", "009"], "text": TEXTS[:3]}).to_csv(index=False)
    response = multi_server.post("/v1/score-csv", content=csv.encode(), headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    scored = pd.read_csv(StringIO(response.text), dtype=str, keep_default_na=False)
    assert list(scored.columns) == ["id", "text", "labels", "prob_action", "prob_comedy", "prob_drama"]
    chosen = multi.predict(TEXTS[:3])
    assert scored["labels"].tolist() == ["|".join(labels) for labels in chosen] and any(len(c) > 1 for c in chosen)
    clash = pd.DataFrame({"text": ["a"], "labels": ["x"]}).to_csv(index=False)
    refused = multi_server.post("/v1/score-csv", content=clash.encode(), headers={"content-type": "text/csv"})
    assert refused.status_code == 422 and "labels" in refused.json()["error"]["message"]


def test_threshold_flag_overrides_every_label(typed_dirs, multi):
    process, client = serve(typed_dirs["multi"], threshold=0.5, min_confidence=0.9)
    try:
        body = client.post("/v1/predict", json={"texts": TEXTS}).json()
    finally:
        client.close()
        assert process.stop() in CLEAN_EXIT
    assert body["thresholds"] == {label: 0.5 for label in MULTI_LABELS.values()} and body["min_confidence"] == 0.9
    probs = multi.predict_proba(TEXTS)
    assert [p["labels"] for p in body["predictions"]] == [
        [MULTI_LABELS[i] for i in np.flatnonzero(row >= 0.5)] for row in probs]
    assert all(p["needs_review"] for p in body["predictions"])  # a random model is sure of nothing


# --- regression --------------------------------------------------------------------------------------------


def test_regression_predict_and_classify(regression_server, regression):
    values = regression.predict(TEXTS)
    halfwidth = REGRESSION_RECORD["interval"]["halfwidth"]
    body = regression_server.post("/v1/predict", json={"texts": TEXTS}).json()
    assert body["problem_type"] == "regression" and body["target"] == "rating" and body["interval_level"] == 0.9
    for got, value in zip(body["predictions"], values):
        assert got == pytest.approx({"value": value, "value_low": value - halfwidth, "value_high": value + halfwidth},
                                    abs=1e-5)
    data = regression_server.post("/classify", json={"input": TEXTS}).json()["data"]
    assert [d["label"] for d in data] == ["rating"] * len(TEXTS) and all(d["num_classes"] == 1 for d in data)
    assert np.allclose([d["probs"] for d in data], np.asarray(values)[:, None], atol=1e-5)
    assert np.allclose([d["value_high"] - d["value_low"] for d in data], 2 * halfwidth)


def test_regression_model_info_and_csv(regression_server, regression):
    info = regression_server.get("/v1/model").json()
    assert info["problem_type"] == "regression" and info["labels"] == ["rating"] and info["target"] == "rating"
    assert info["target_mean"] == 3.25 and info["target_std"] == 1.5
    assert info["interval"] == {"level": 0.9, "halfwidth": 0.8}
    csv = pd.DataFrame({"text": TEXTS[:4]}).to_csv(index=False)
    response = regression_server.post("/v1/score-csv", content=csv.encode(), headers={"content-type": "text/csv"})
    scored = pd.read_csv(StringIO(response.text))
    assert list(scored.columns) == ["text", "value", "value_low", "value_high"]
    assert np.allclose(scored["value"], regression.predict(TEXTS[:4]), atol=1e-5)


def test_openapi_describes_every_answer_shape(regression_server):
    spec = regression_server.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"Prediction", "MultiLabelPrediction", "RegressionPrediction", "PredictResponse",
            "MultiLabelPredictResponse", "RegressionPredictResponse", "ClassificationData",
            "MultiLabelClassificationData", "RegressionClassificationData"} <= set(schemas)
    answer = spec["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in answer["anyOf"]} == {
        "PredictResponse", "MultiLabelPredictResponse", "RegressionPredictResponse"}
    assert regression_server.get("/docs").status_code == 200


# --- the web page ------------------------------------------------------------------------------------------


def test_the_page_shows_chosen_labels_and_values(multi_server, regression_server, multi, regression):
    from test_web import CHROMIUM, wait_until

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (see tests/test_web.py)")
    sync_api = pytest.importorskip("playwright.sync_api")
    text = TEXTS[1]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        errors = []
        for client in (multi_server, regression_server):
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{client.base_url}/")
            wait_until(page, "document.querySelector('#model-summary').textContent.includes('labels')")
            page.fill("#text", text)
            page.click("#classify")
            page.wait_for_selector("#result:not([hidden])")
            if client is multi_server:
                chosen = multi.predict(text)
                assert page.inner_text("#result-label") == (", ".join(chosen) or "(no label)")
                assert page.locator(".bar").count() == 3
                top = page.locator(".bar.top")
                assert [top.nth(i).get_attribute("data-label") for i in range(top.count())] == chosen
                assert page.inner_text("#result-rule").startswith("Decision: every label whose probability")
            else:
                value = regression.predict(text)
                assert page.inner_text("#result-label") == f"rating: {value:.3f}"
                assert page.inner_text("#result-score") == (f"(90.0% interval {value - 0.8:.3f} to "
                                                            f"{value + 0.8:.3f})")
                assert page.locator(".bar").count() == 0
            page.close()
        browser.close()
    assert errors == []
