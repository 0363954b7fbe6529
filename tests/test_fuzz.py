"""Property-based tests of what llmclf reads from outside: the data loaders and the server's request parsing,
fed random bytes, odd Unicode, huge strings and deep JSON; then a bounded fuzz run against the live server.

The contracts: a loader either succeeds (str texts that a tokenizer takes, non-empty labels) or raises
UserError; the server answers every request with a 2xx, or a 4xx carrying a JSON error, and never a 5xx.
Example counts are bounded so that the file runs in under a minute on two CPU cores; for a longer search,
LLMCLF_FUZZ_EXAMPLES=1000 python -m pytest tests/test_fuzz.py
"""

import csv
import io
import json
import os
import random
import signal
import string
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st


from llmclf.data import FILE_FORMATS, load_labelled
from llmclf.errors import UserError

FUZZ = settings(max_examples=int(os.environ.get("LLMCLF_FUZZ_EXAMPLES", 60)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters that break naive parsers: NUL, bidi overrides and marks, combining marks, emoji (and a ZWJ
# sequence), a BOM, line and paragraph separators, CSV/TSV/JSON syntax.
ODD = ["\x00", "\u202e", "\u200f", "\u0301", "e\u0301", "\U0001f600", "\U0001f469\u200d\U0001f4bb", "\ufeff",
       "\u2028", "\u2029", "\r", "\n", "\r\n", '"', "'", ",", "\t", "\\", "{", "[", " ", "\x7f", "\u00a0"]
LONE_SURROGATES = ["\ud800", "\udc80", "\udfff"]  # only a JSON file can hold them, as \uXXXX escapes

odd_text = st.lists(st.sampled_from(ODD) | st.text(max_size=8), max_size=8).map("".join)
encodable_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20) | odd_text
json_text = encodable_text | st.lists(st.sampled_from(ODD + LONE_SURROGATES) | st.text(max_size=4),
                                      max_size=6).map("".join)


def repeated(lengths: list[int]):
    """A long string of about one of `lengths` characters, built from one short piece (cheap to generate)."""
    pieces = st.sampled_from(["a", "é", "\U0001f600", "ab\"c,", "\x00", "word ", "\n"])
    return st.tuples(pieces, st.sampled_from(lengths)).map(lambda t: t[0] * max(1, t[1] // len(t[0])))


huge_text = repeated([10_000, 200_000, 1_000_000])
long_text = repeated([1999, 2001, 50_000])  # around the server's max_chars_per_text below
column_name = st.sampled_from(["text", "label", "0", "1", "", " text", "TEXT", "label\n", "\ufefftext"]) | \
    st.text(max_size=6)


def cell(text_strategy):
    return text_strategy | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.booleans() | st.none()


def check_loaded(path: Path, text_column: str, label_column: str) -> None:
    """The loader contract: success with usable rows, or a UserError that says something."""
    try:
        data = load_labelled(str(path), text_column=text_column, label_column=label_column)
    except UserError as exc:
        assert str(exc).strip()
        return
    assert len(data.texts) == len(data.labels) > 0
    for text in data.texts:
        assert isinstance(text, str) and text.strip()
        text.encode("utf-8")  # what a tokenizer needs: no lone surrogates
    for label in data.labels:
        assert isinstance(label, (str, int)) and label != "", label
        str(label).encode("utf-8")


def loader_file(suffix: str, content: bytes) -> tuple[tempfile.TemporaryDirectory, Path]:
    folder = tempfile.TemporaryDirectory(prefix="llmclf-fuzz-")
    path = Path(folder.name) / f"data{suffix}"
    path.write_bytes(content)
    return folder, path


# ---------------------------------------------------------------------------------------------------------
# (a) The data loaders


@FUZZ
@given(suffix=st.sampled_from(sorted(FILE_FORMATS)),
       content=st.binary(max_size=2000) | st.sampled_from([b"", b"\xef\xbb\xbf", b"PAR1", b"PAR1\x00\x00PAR1",
                                                           b"[" * 5000, b'{"text": ' * 3000, b"\x00" * 100]))
def test_loader_on_random_bytes_succeeds_or_says_why(suffix, content):
    folder, path = loader_file(suffix, content)
    with folder:
        check_loaded(path, "text", "label")


@st.composite
def table(draw, cell_text):
    """Random column names (duplicates, digits, blanks, odd Unicode) and rows of random cells, sometimes one of
    them huge; the text and label columns asked for are usually among them."""
    columns = draw(st.lists(column_name, min_size=1, max_size=4))
    if draw(st.booleans()):  # often a table that can load: the asked-for columns are there
        columns = draw(st.permutations(columns[:2] + ["text", "label"]))
    rows = draw(st.lists(st.lists(cell(cell_text), min_size=len(columns), max_size=len(columns)), max_size=5))
    if rows and draw(st.booleans()):
        rows[draw(st.sampled_from(range(len(rows))))][draw(st.sampled_from(range(len(columns))))] = draw(huge_text)
    text_column = draw(st.sampled_from(columns + ["text"]) | column_name)
    label_column = draw(st.sampled_from(columns + ["label"]) | column_name)
    return columns, rows, text_column, label_column


def delimited(columns, rows, delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue().encode("utf-8")


@FUZZ
@given(data=table(encodable_text), delimiter=st.sampled_from([",", "\t"]))
# Labels "¹" and "--1" pass str.isdigit(), and int() raised ValueError on them:
@example(data=(["text", "label"], [["good", "¹"], ["bad", "--1"]], "text", "label"), delimiter=",")
def test_loader_on_odd_csv_and_tsv(data, delimiter):
    columns, rows, text_column, label_column = data
    folder, path = loader_file(".csv" if delimiter == "," else ".tsv", delimited(columns, rows, delimiter))
    with folder:
        check_loaded(path, text_column, label_column)


@FUZZ
@given(data=table(json_text), suffix=st.sampled_from([".jsonl", ".json"]), as_array=st.booleans(),
       nested=st.booleans())
# read_json made the keys "0" and "1" integers, and load_labelled raised KeyError:
@example(data=(["0", "1"], [["good", "pos"], ["bad", "neg"]], "0", "1"), suffix=".jsonl", as_array=False,
         nested=False)
def test_loader_on_odd_json(data, suffix, as_array, nested):
    columns, rows, text_column, label_column = data
    records = [dict(zip(columns, row)) for row in rows]
    if nested and records:  # objects and lists as cells
        records[0][columns[0]] = {"deep": [[[{"x": 1}]]]}
    encode = lambda value: json.dumps(value, ensure_ascii=True)  # lone surrogates travel as \uXXXX escapes
    body = encode(records) if as_array else "\n".join(encode(r) for r in records)
    folder, path = loader_file(suffix, body.encode("utf-8"))
    with folder:
        check_loaded(path, text_column, label_column)


@FUZZ
@given(data=table(encodable_text), kinds=st.lists(st.sampled_from(["str", "int", "float"]), min_size=4, max_size=4))
def test_loader_on_odd_parquet(data, kinds):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns, rows, text_column, label_column = data
    arrays = []
    for i, kind in enumerate(kinds[: len(columns)]):  # one Arrow type per column, cells coerced to it
        values = [row[i] for row in rows]
        if kind == "str":
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        elif kind == "int":
            arrays.append(pa.array([int(v) if isinstance(v, int) and abs(v) < 2 ** 62 else None for v in values],
                                   pa.int64()))
        else:
            arrays.append(pa.array([float(v) if isinstance(v, (int, float)) and abs(v) < 1e300 else None
                                    for v in values], pa.float64()))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), buffer)  # duplicate names allowed
    folder, path = loader_file(".parquet", buffer.getvalue())
    with folder:
        check_loaded(path, text_column, label_column)


class UniformClassifier:
    """Stands in for `Classifier` in score_file: what is fuzzed here is the reading and writing of tables."""

    id2label = {0: "neg", 1: "pos"}
    min_confidence = None

    def predict_proba(self, texts):
        import numpy as np

        return np.full((len(texts), 2), 0.5)

    def decide(self, probs):
        return probs.argmax(axis=1)


@FUZZ
@given(source=st.sampled_from([".csv", ".jsonl", ".parquet"]), target=st.sampled_from([".csv", ".jsonl", ".parquet"]),
       data=table(encodable_text), raw=st.none() | st.binary(max_size=500))
def test_score_file_scores_odd_tables_or_says_why(source, target, data, raw):
    """`llmclf predict --input`: every row scored into the output, or a UserError and nothing left behind."""
    import pandas as pd

    from llmclf.scoring import score_file

    columns, rows, text_column, _ = data
    columns = [{"label": "stars", "score": "rank"}.get(c, c) for c in columns]  # mostly reach the scoring
    if raw is not None:
        content = raw
    elif source == ".csv":
        content = delimited(columns, rows, ",")
    elif source == ".jsonl":
        content = "\n".join(json.dumps(dict(zip(columns, row))) for row in rows).encode()
    else:
        buffer = io.BytesIO()
        frame = pd.DataFrame([[None if v is None else str(v) for v in row] for row in rows],
                             columns=[f"{c}.{i}" for i, c in enumerate(columns)])  # Parquet via pandas: unique names
        frame.to_parquet(buffer)
        content, text_column = buffer.getvalue(), f"{columns[0]}.0"
    folder, path = loader_file(source, content)
    with folder:
        out = Path(folder.name) / f"scored{target}"
        try:
            rows_scored = score_file(UniformClassifier(), str(path), str(out), text_column=text_column,
                                     chunk_rows=2, progress=False)
        except UserError:
            assert sorted(p.name for p in Path(folder.name).iterdir()) == [path.name]  # no output, no staging
            return
        assert rows_scored > 0 and out.is_file()
        assert sorted(p.name for p in Path(folder.name).iterdir()) == sorted([path.name, out.name])


@pytest.mark.parametrize("jsonl, column, values", [
    ('{"text": "a", "id": 1}\n{"text": "b", "id": 2}\n{"text": "c", "id": "x-3"}\n', "id", ["1", "2", "x-3"]),
    ('{"text": "a", "id": "x-1"}\n{"text": "b", "id": 2}\n', "id", ["x-1", "2"]),
    ('{"text": "a", "note": null}\n{"text": "b", "note": null}\n{"text": "c", "note": "late"}\n', "note",
     [None, None, "late"]),
], ids=["type-changes-between-chunks", "mixed-types-in-a-chunk", "null-then-strings"])
def test_score_file_jsonl_with_varying_column_types_into_parquet(tmp_path, jsonl, column, values):
    """A column whose type changes between or within chunks is written as text, nulls kept, every row scored."""
    import pandas as pd

    from llmclf.scoring import score_file

    source = tmp_path / "in.jsonl"
    source.write_text(jsonl)
    rows = score_file(UniformClassifier(), str(source), str(tmp_path / "out.parquet"), chunk_rows=2, progress=False)
    assert rows == jsonl.count("\n") == len(values)
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert list(scored.columns) == ["text", column, "label", "score", "prob_neg", "prob_pos"]
    assert [None if pd.isna(v) else v for v in scored[column]] == values
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.parquet"]


# ---------------------------------------------------------------------------------------------------------
# (b) The server's request parsing, in-process

LIMITS = dict(max_batch_size=8, max_wait_ms=0, max_queue=64, max_texts_per_request=16, max_chars_per_text=2000,
              max_body_bytes=300_000, max_csv_rows=20)
JSON_PATHS = ["/classify", "/v1/classify", "/v1/predict"]


@pytest.fixture(scope="module")
def app_client(tiny_classifier_dir):
    from fastapi.testclient import TestClient

    from llmclf.predict import Classifier
    from llmclf.serve import ServeArgs, create_app

    app = create_app(Classifier.from_pretrained(str(tiny_classifier_dir)), ServeArgs(**LIMITS),
                     model_dir=tiny_classifier_dir)
    with TestClient(app, raise_server_exceptions=False) as client:  # runs the lifespan: the batcher starts
        yield client


def assert_answered(response, json_expected: bool = True) -> None:
    """2xx, or 4xx with {"error": {"code", "message"}} as JSON; never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert 200 <= response.status_code < 500, response.status_code
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        error = response.json()["error"]
        assert error["code"] == response.status_code and error["message"], error
    elif json_expected:
        assert isinstance(response.json(), dict)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_text | long_text
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.sampled_from(["input", "texts", "model", "x", ""]) | json_text, inner,
                                          max_size=4), max_leaves=12)
request_body = st.dictionaries(st.sampled_from(["input", "texts", "model", "user", "extra"]), json_value,
                               max_size=3) | json_value


def deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"input": ' + "[" * depth + '"x"' + "]" * depth + "}"  # inside a valid field


@FUZZ
@given(path=st.sampled_from(JSON_PATHS), body=request_body)
def test_server_parses_random_json_bodies(app_client, path, body):
    content = json.dumps(body, ensure_ascii=True).encode()
    assert_answered(app_client.post(path, content=content, headers={"content-type": "application/json"}))


@FUZZ
@given(path=st.sampled_from(JSON_PATHS), depth=st.sampled_from([10, 100, 1000, 5000, 10_000]),
       kind=st.sampled_from(["array", "object", "field"]), truncate=st.booleans())
def test_server_refuses_deep_json_cleanly(app_client, path, depth, kind, truncate):
    text = deep(depth, kind)
    if truncate:
        text = text[: len(text) // 2]
    assert_answered(app_client.post(path, content=text.encode(), headers={"content-type": "application/json"}))


@FUZZ
@given(path=st.sampled_from(JSON_PATHS + ["/v1/score-csv"]), body=st.binary(max_size=3000),
       content_type=st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                     "text/csv", "multipart/form-data; boundary=x", "", "application/x-www-form-"
                                     "urlencoded"]))
def test_server_takes_random_bytes(app_client, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = app_client.post(path, content=body, headers=headers)
    assert_answered(response, json_expected=path != "/v1/score-csv")


@FUZZ
@given(path=st.sampled_from(JSON_PATHS), field=st.sampled_from(["input", "texts"]),
       text=huge_text | json_text, many=st.sampled_from([1, 2, 16, 17, 300]))
def test_server_on_huge_and_odd_strings(app_client, path, field, text, many):
    many = many if len(text) * many <= 2_000_000 else 2  # over max_body_bytes either way; keep the test's memory small
    body = {field: [text] * many if many > 1 else text}
    content = json.dumps(body, ensure_ascii=True).encode()
    assert_answered(app_client.post(path, content=content, headers={"content-type": "application/json"}))


@FUZZ
@given(rows=st.lists(st.lists(encodable_text, min_size=1, max_size=3), max_size=25),
       header=st.lists(column_name, min_size=1, max_size=3), text_column=column_name)
def test_server_scores_odd_csv_or_refuses_it(app_client, rows, header, text_column):
    response = app_client.post("/v1/score-csv", params={"text_column": text_column},
                               content=delimited(header, rows, ","), headers={"content-type": "text/csv"})
    assert_answered(response, json_expected=False)
    if response.status_code == 200:
        assert response.headers["content-type"].startswith("text/csv")


# ---------------------------------------------------------------------------------------------------------
# (c) A bounded fuzz run against the live server

API = ["/classify", "/v1/classify", "/v1/predict", "/v1/score-csv", "/health", "/v1/stats", "/v1/model",
       "/v1/models", "/openapi.json"]
OTHER = ["/", "/docs", "/v1/model/card", "/v1/model/files/config.json", "/v1/model/files/../../etc/passwd",
         "/v1/model/files/%2e%2e/%2e%2e/etc/passwd", "/static/app.js", "/static/../serve.py", "/nope",
         "/v1/predict/", "//v1/predict", "/v1/predict?x=1&x=2", "/v1/score-csv?text_column=%00", "/%ff%fe",
         "/\u00e9t\u00e9", "/" + "a" * 4000]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
CONTENT_TYPES = ["application/json", "text/csv", "text/plain", "application/octet-stream",
                 "application/json; charset=utf-16", "multipart/form-data", None]
REQUESTS = 300  # a fixed number, not a time budget: a busy machine takes longer, it does not test less


def random_body(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 2000))
    if kind == 2:
        return deep(rng.choice([10, 1000, 10_000]), rng.choice(["array", "object", "field"])).encode()
    if kind == 3:  # past max_body_bytes
        return b'{"input": "' + b"x" * (LIMITS["max_body_bytes"] + rng.randrange(1, 1000)) + b'"}'
    if kind == 4:
        text = "".join(rng.choice(ODD + LONE_SURROGATES + list(string.printable)) for _ in range(rng.randrange(40)))
        return json.dumps({rng.choice(["input", "texts"]): [text] * rng.randrange(1, 20)}).encode()
    if kind == 5:
        rows = "".join(f'"{rng.choice(ODD)}film {i}",x\n' for i in range(rng.randrange(30)))
        return f"text,label\n{rows}".encode()
    if kind == 6:
        return json.dumps({"input": "x" * rng.choice([10, 1999, 2001, 100_000])}).encode()
    if kind == 7:
        return json.dumps(rng.choice([None, 1, "text", [], {}, [[]], {"input": None}, {"input": [1, 2]},
                                      {"texts": ["ok"], "x": 1}, {"input": "fine", "model": ["m"]}])).encode()
    return json.dumps({"input": ["a fine film", "a dull film"]}).encode()


def random_request(rng: random.Random) -> dict:
    if rng.random() < 0.5:  # half of them aimed at the classifying endpoints, the rest anywhere
        method, path = "POST", rng.choice(JSON_PATHS + ["/v1/score-csv"])
    else:
        method, path = rng.choice(METHODS), rng.choice(API + OTHER)
    body = random_body(rng)
    headers = {"x-fuzz": "".join(rng.choice(string.printable.strip()) for _ in range(rng.randrange(50)))}
    content_type = rng.choice(CONTENT_TYPES)
    if content_type:
        headers["content-type"] = content_type
    if rng.random() < 0.1:
        headers["accept"] = rng.choice([b"*/*", b"text/html", b"application/xml", "\u00e9".encode()])
    return {"method": method, "url": path, "content": body if body else None, "headers": headers}


@pytest.fixture(scope="module")
def live_server(tiny_classifier_dir):
    from llmclf.testing import ServerProcess

    server = ServerProcess(tiny_classifier_dir, **LIMITS).start()
    yield server
    assert server.stop() in (0, -signal.SIGTERM), server.log()[-3000:]


@pytest.mark.slow
def test_live_server_survives_a_bounded_fuzz_run(live_server):
    rng = random.Random(7)
    answered, closed, statuses = 0, 0, Counter()
    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=True) as client:  # /v1/predict/: 307
        for i in range(REQUESTS):
            request = random_request(rng)
            try:
                response = client.request(**request)
            except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
                # An over-limit body is refused with 413 and Connection: close before the rest is read; the
                # client may see the close first. That answer is what /health below and the next requests check.
                assert request["content"] and len(request["content"]) > LIMITS["max_body_bytes"], request["url"]
                closed += 1
                continue
            answered += 1
            statuses[response.status_code] += 1
            where = f"request {i}: {request['method']} {request['url'][:80]} -> {response.status_code}"
            assert response.status_code < 500, f"{where}: {response.text[:500]}\n{live_server.log()[-3000:]}"
            assert 200 <= response.status_code < 500, where
            path = request["url"].split("?")[0]
            if request["method"] == "HEAD":
                continue
            if response.status_code >= 400:
                assert response.headers.get("content-type", "").startswith("application/json"), where
                assert response.json()["error"]["code"] == response.status_code, where
            elif path in API and path != "/v1/score-csv":
                assert isinstance(response.json(), dict), where
        # Malformed HTTP: uvicorn answers 400 (or, being lenient, 2xx) or closes the connection; it stays up.
        for garbage in (b"\x00\xff\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n", b"POST /v1/predict HTTP/1.1\r\n"
                        b"Content-Length: -5\r\n\r\n", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"):
            reply = raw_exchange(live_server.port, garbage)
            assert reply == b"" or reply.startswith((b"HTTP/1.1 2", b"HTTP/1.1 4")), reply[:200]
        health = client.get("/health")
    # every request got an answer or, for an over-limit body, a closed connection (the loop fails otherwise)
    assert answered >= REQUESTS // 2, f"only {answered} of {REQUESTS} requests answered; {closed} closed"
    assert statuses[200] >= 10 and health.json()["batches"] > 0, statuses  # some requests did classify
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert live_server.process.poll() is None, live_server.log()[-3000:]
    assert "Traceback" not in live_server.log(), live_server.log()[-3000:]


def raw_exchange(port: int, payload: bytes) -> bytes:
    import socket

    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):  # the server closed first
            pass
    return b"".join(chunks)
