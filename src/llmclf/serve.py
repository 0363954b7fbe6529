"""An HTTP classification server with dynamic batching, and a web page to try the model.

    llmclf serve --model runs/imdb --port 8000
    curl -s localhost:8000/classify -H 'content-type: application/json' -d '{"input": ["Superb!", "Dull."]}'

Requests wait in one bounded queue; a single worker thread runs `Classifier.classify` on the texts gathered
for up to `max_wait_ms`. torch releases the GIL during the forward pass, so the event loop keeps accepting
and queueing requests meanwhile, and the next batch is whatever arrived while the model was busy.
"""

# No `from __future__ import annotations`: FastAPI reads the request models of the endpoints, which are
# defined inside create_app, from live annotations.
import asyncio
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from llmclf.config import flag
from llmclf.errors import UserError

SERVE_EXTRA = "pip install 'llmclf[serve]'"


@dataclass
class ServeArgs:
    """Where the server listens, how it batches and what it accepts; each field is a `llmclf serve` flag."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; 127.0.0.1 keeps the server "
                      "private to this machine, 0.0.0.0 opens it to the network"})
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port)"})
    max_batch_size: int = field(default=32, metadata={"help": "most texts in one forward pass; 1 turns "
                                "batching off"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "how long the first request of a batch waits "
                               "for others to join it (0: take whatever is queued)"})
    max_queue: int = field(default=1024, metadata={"help": "most texts waiting for the model; past it "
                           "requests get 503 with Retry-After"})
    max_texts_per_request: int = field(default=256, metadata={"help": "most texts in one request (413 past it)"})
    max_chars_per_text: int = field(default=50_000, metadata={"help": "most characters in one text (413 past it)"})
    max_body_bytes: int = field(default=8 * 1024 * 1024, metadata={"help": "largest request body, JSON or CSV "
                                "(413 past it)"})
    max_csv_rows: int = field(default=10_000, metadata={"help": "most rows in an uploaded CSV (413 past it)"})
    served_model_name: str | None = field(default=None, metadata={"help": "the model name in API answers "
                                          "(default: the --model directory's name)"})

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_texts_per_request", "max_chars_per_text",
                     "max_body_bytes", "max_csv_rows"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port must be between 0 and 65535, got {self.port}.")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise UserError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait_ms}.")
        if self.max_texts_per_request > self.max_queue:
            raise UserError(f"--max-texts-per-request {self.max_texts_per_request} exceeds --max-queue "
                            f"{self.max_queue}: such a request could never be queued; raise --max-queue.")

    def limits(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("max_")}


# ---------------------------------------------------------------------------------------------------------
# Errors answered as JSON: {"error": {"code", "type", "message"[, "limit", "max"]}}


class RequestError(Exception):
    """A request the server refuses; `limit` names the ServeArgs field that refused it."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request", limit: str | None = None,
                 maximum: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.limit, self.maximum = status, message, kind, limit, maximum
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.status, "type": self.kind, "message": self.message}
        if self.limit:
            error |= {"limit": self.limit, "max": self.maximum}
        return {"error": error}


def limit_exceeded(limit: str, maximum: int, message: str) -> RequestError:
    return RequestError(413, f"{message}; the limit is {limit} = {maximum} ({flag(limit)}).", "limit_exceeded",
                        limit, maximum)


class QueueFull(Exception):
    pass


UNION_MEMBERS = ("str", "list[str]")


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic's errors for a request body: what is wrong, and where.

    >>> validation_message([{"type": "missing", "loc": ("body", "input"), "msg": "Field required"}])
    'input: Field required.'
    """
    if not errors:
        return "body: invalid request."
    first = errors[0]
    if first["type"] == "json_invalid":
        at = [p for p in first["loc"] if isinstance(p, int)]
        return f"body: not valid JSON ({first['msg']}{f' at character {at[0]}' if at else ''}); send a JSON object."
    if [p for p in first["loc"] if p != "body"] == [] or first["type"] == "model_attributes_type":
        return "body: expected a JSON object, sent with Content-Type: application/json."
    parts = []
    for error in errors[:3]:
        loc = [p for p in error["loc"] if p != "body"]
        if any(p in UNION_MEMBERS for p in loc):  # `str | list[str]` fails as both; say it once
            message = f"{loc[0]}: expected a string or a list of strings."
        else:
            where = str(loc[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
            message = f"{where}: {error['msg']}."
        if message not in parts:
            parts.append(message)
    return " ".join(parts)


def check_texts(texts: list[str], args: ServeArgs, what: str) -> None:
    """Refuse (with the limit's name) what the server will not classify: nothing, too many, too long, broken."""
    if not texts:
        raise RequestError(422, f"{what}: no texts; give at least one.")
    if len(texts) > args.max_texts_per_request:
        raise limit_exceeded("max_texts_per_request", args.max_texts_per_request, f"{what}: {len(texts)} texts")
    for i, text in enumerate(texts):
        if len(text) > args.max_chars_per_text:
            raise limit_exceeded("max_chars_per_text", args.max_chars_per_text,
                                 f"{what}[{i}]: {len(text)} characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate; no tokenizer takes it
            raise RequestError(422, f"{what}[{i}]: not valid Unicode (lone surrogate at character {exc.start}); "
                               "send UTF-8 text.") from None


# ---------------------------------------------------------------------------------------------------------
# Dynamic batching


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


@dataclass
class BatchStats:
    """What the batcher did; /v1/stats shows it, so tests and operators can see batches form."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    rejected: int = 0
    failed_batches: int = 0
    sizes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "texts": self.texts, "batches": self.batches, "rejected": self.rejected,
                "failed_batches": self.failed_batches, "max_batch_size_seen": max(self.sizes, default=0),
                "mean_batch_size": self.texts / self.batches if self.batches else 0.0,
                "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class Batcher:
    """Gathers the texts of concurrent requests into batches for one worker thread.

    `run_batch` maps a list of texts to one result per text (the server passes `Classifier.classify`).
    A batch holds at most `max_batch_size` texts, except a single request larger than that, which runs alone;
    at most `max_queue` texts wait, and `submit` raises QueueFull past it.

    >>> batcher = Batcher(classifier.classify, max_batch_size=32, max_wait_ms=5, max_queue=1024)  # doctest: +SKIP
    >>> batcher.start(); records = await batcher.submit(["Superb!", "Dull."])                     # doctest: +SKIP
    """

    def __init__(self, run_batch, max_batch_size: int, max_wait_ms: float, max_queue: int):
        self.run_batch, self.max_batch_size, self.max_queue = run_batch, max_batch_size, max_queue
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self.busy = 0  # texts in the forward pass now running
        self._pending: deque[_Job] = deque()
        self._queued = 0  # texts in _pending
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmclf-model")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="llmclf-batcher")

    async def stop(self) -> None:
        """Stop taking batches (the server has answered its in-flight requests by now) and join the thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(QueueFull())
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> list:
        if self._queued + len(texts) > self.max_queue:
            self.stats.rejected += 1
            raise QueueFull()
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued += len(job.texts)
        self.stats.requests += 1
        self._arrived.set()
        return await job.future

    async def _next_batch(self) -> list[_Job]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while self._queued < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        jobs, size = [], 0
        while self._pending and (not jobs or size + len(self._pending[0].texts) <= self.max_batch_size):
            job = self._pending.popleft()
            self._queued -= len(job.texts)
            if job.future.done():  # its request was cancelled while it waited
                continue
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            self.busy = len(texts)
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, texts)
            except Exception as exc:  # a bug or a broken model: fail these requests, keep serving
                self.stats.failed_batches += 1
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.busy = 0
            self.stats.batches += 1
            self.stats.texts += len(texts)
            self.stats.sizes[len(texts)] += 1
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)


# ---------------------------------------------------------------------------------------------------------
# The model directory: metadata, model card, plots

MODEL_FILES = re.compile(r"(README\.md|metrics\.json|llmclf_config\.yaml|history\.jsonl|plots/[A-Za-z0-9_.-]+\.png)")


def model_file(model_dir: Path | None, relative: str) -> Path | None:
    """The file under `model_dir` that /v1/model/files may serve, or None: only the card, metrics, settings
    and plots, and never a path that leaves the directory (`..`, absolute paths, symlinks out)."""
    if model_dir is None or not MODEL_FILES.fullmatch(relative):
        return None
    root = model_dir.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _inline(text: str, image_url) -> str:
    pattern = re.compile(r"`([^`]+)`|!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*")
    out, last = [], 0
    for m in pattern.finditer(text):
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


def render_card(markdown: str, image_url=lambda src: None) -> str:
    """The subset of Markdown our model cards use, as HTML: headings, paragraphs, lists, tables, fenced code,
    images, links, `code` and **bold**. All text is escaped; `image_url(src)` gives an image's URL or None to
    show its alt text instead. The YAML front matter (Hub metadata) is left out.

    >>> render_card("# Card\\n\\nIt <b>works</b>.")
    '<h1>Card</h1>\\n<p>It &lt;b&gt;works&lt;/b&gt;.</p>'
    """
    lines = markdown.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            lines = lines[end + 1 :]
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


def model_info(classifier, model_dir: Path | None, name: str) -> dict:
    """What /v1/model answers: labels, backbone, max_length, calibration, metrics, card and plot URLs."""
    from llmclf.models import read_run_config

    run = read_run_config(model_dir) if model_dir else {}
    metrics_file = model_file(model_dir, "metrics.json")
    plots_dir = model_dir / "plots" if model_dir else None
    plots = sorted(p.name for p in plots_dir.glob("*.png")) if plots_dir and plots_dir.is_dir() else []
    return {
        "name": name,
        "labels": classifier.labels,
        "num_labels": len(classifier.labels),
        "backbone": run.get("model"),
        "max_length": classifier.max_length,
        "truncation": classifier.truncation,
        "temperature": classifier.temperature,
        "threshold": classifier.threshold,
        "min_confidence": classifier.min_confidence,
        "metrics": json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file else None,
        "card": "/v1/model/card" if model_file(model_dir, "README.md") else None,
        "plots": [f"/v1/model/files/plots/{p}" for p in plots if model_file(model_dir, f"plots/{p}")],
    }


# ---------------------------------------------------------------------------------------------------------
# The app


class BodyLimit:
    """ASGI middleware: reads a request body up to `max_bytes` and answers 413 past it, before any parsing
    (a chunked body has no Content-Length, so the bytes are counted as they come); a JSON body that is not
    UTF-8 gets 422."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._refuse(send, len(body))
            if not message.get("more_body", False):
                break
        content_type = dict(scope["headers"]).get(b"content-type", b"application/json")
        if content_type.startswith(b"application/json"):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:  # JSON is UTF-8 (RFC 8259); say so rather than FastAPI's 400
                error = RequestError(422, f"body: not valid UTF-8 (byte {exc.start}); send UTF-8 JSON.")
                return await _send_json(send, error.status, error.body())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, size: int):
        error = limit_exceeded("max_body_bytes", self.max_bytes, f"request body: {size} bytes or more")
        await _send_json(send, error.status, error.body(), close=True)


async def _send_json(send, status: int, body: dict, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:  # the rest of the body was not read, so the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


PAGE_HEADERS = {
    # The page and its script come from this server only, and the card's HTML is escaped server-side;
    # the policy makes any slip in that inert.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def create_app(classifier, args: ServeArgs | None = None, model_dir: str | Path | None = None,
               model_name: str | None = None):
    """The FastAPI app serving `classifier` (a `llmclf.predict.Classifier`) under the limits of `args`.

    `model_dir` is where /v1/model finds metrics.json, llmclf_config.yaml, the card and plots.

    >>> app = create_app(Classifier.from_pretrained("runs/imdb"), ServeArgs(max_batch_size=16))  # doctest: +SKIP
    """
    try:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI, Request
        from fastapi.encoders import jsonable_encoder
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
        from fastapi.staticfiles import StaticFiles
        from pydantic import BaseModel, ConfigDict, Field
        from starlette.exceptions import HTTPException
    except ImportError as exc:
        raise UserError(f"llmclf serve needs {exc.name}; run `{SERVE_EXTRA}`.") from None

    args = args or ServeArgs()
    started = int(time.time())
    model_dir = Path(model_dir) if model_dir is not None else None
    name = model_name or args.served_model_name or (model_dir.name if model_dir else "model")
    labels = classifier.labels

    def run_batch(texts: list[str]) -> list[dict]:
        records = classifier.classify(texts)
        for record, text in zip(records, texts):
            # The tokens the model read (after truncation), which vLLM reports as usage; _encode is the
            # Classifier's own windowing, so the count matches what ran.
            record["tokens"] = sum(len(window) for window in classifier._encode(text))
        return records

    batcher = Batcher(run_batch, args.max_batch_size, args.max_wait_ms, args.max_queue)

    async def classify(texts: list[str]) -> list[dict]:
        try:
            return await batcher.submit(texts)
        except QueueFull:
            raise RequestError(503, f"the queue is full ({args.max_queue} texts waiting, --max-queue); retry "
                               "shortly.", "overloaded", "max_queue", args.max_queue, {"Retry-After": "1"}) from None

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="llmclf", version=_version(),
                  description=f"Text classification with `{name}` (labels: {', '.join(labels)}). The page at `/` "
                              "tries it; `/classify` speaks vLLM's classification API.", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=args.max_body_bytes)

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request, exc: RequestValidationError):
        # The echoed input could be megabytes; the message says what was wrong and where.
        details = [{k: v for k, v in e.items() if k not in ("input", "url", "ctx")} for e in exc.errors()]
        return JSONResponse({"error": {"code": 422, "type": "invalid_request", "message": validation_message(details),
                                       "details": jsonable_encoder(details)}}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's words
            return JSONResponse({"error": {"code": 422, "type": "invalid_request",
                                           "message": "body: cannot be parsed; send a UTF-8 JSON object."}},
                                status_code=422)
        return JSONResponse({"error": {"code": exc.status_code, "type": "http_error", "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):  # a bug: answer 500 and keep serving
        return JSONResponse({"error": {"code": 500, "type": "server_error", "message": f"internal error "
                                       f"({type(exc).__name__}); the server's log has the traceback."}},
                            status_code=500)

    # --- vLLM's classification API ---------------------------------------------------------------------

    class ClassifyRequest(BaseModel):
        """vLLM's classification request; other fields vLLM accepts (user, priority...) are ignored."""

        model_config = ConfigDict(extra="allow")
        model: str | None = Field(None, description="any name; answers carry the served model's name")
        input: str | list[str] = Field(description="one text or a list of texts")

    class ClassificationData(BaseModel):
        index: int
        label: str
        probs: list[float]
        num_classes: int
        object: str = "classify"

    class Usage(BaseModel):
        prompt_tokens: int
        total_tokens: int
        completion_tokens: int = 0
        prompt_tokens_details: None = None

    class ClassificationResponse(BaseModel):
        id: str
        object: str = "list"
        created: int
        model: str
        data: list[ClassificationData]
        usage: Usage

    @app.post("/classify", response_model=ClassificationResponse, tags=["vLLM-compatible"])
    async def classify_vllm(request: ClassifyRequest):
        """Classify texts in vLLM's request and response shapes: `probs` in label-id order."""
        texts = [request.input] if isinstance(request.input, str) else request.input
        check_texts(texts, args, "input")
        records = await classify(texts)
        tokens = sum(r["tokens"] for r in records)
        return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": name,
                "data": [{"index": i, "label": r["label"], "probs": [r["probs"][label] for label in labels],
                          "num_classes": len(labels), "object": "classify"} for i, r in enumerate(records)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                          "prompt_tokens_details": None}}

    app.add_api_route("/v1/classify", classify_vllm, methods=["POST"], response_model=ClassificationResponse,
                      include_in_schema=False)  # the path SGLang's compatible API uses

    @app.get("/v1/models", tags=["vLLM-compatible"])
    async def list_models():
        """The served model in OpenAI's model-list shape, for clients that look the name up."""
        return {"object": "list", "data": [{"id": name, "object": "model", "created": started, "owned_by": "llmclf"}]}

    # --- our own API -----------------------------------------------------------------------------------

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: str | list[str] = Field(description="one text or a list of texts")

    class Prediction(BaseModel):
        label: str
        score: float = Field(description="the probability of `label`")
        probs: dict[str, float] = Field(description="probability by label name")
        needs_review: bool = Field(description="top probability below min_confidence (the label is kept)")

    class PredictResponse(BaseModel):
        model: str
        labels: list[str]
        decision: str = Field(description="`argmax`, or `threshold`: the second label exactly when its "
                                          "probability reaches `threshold`")
        threshold: float | None
        min_confidence: float | None
        predictions: list[Prediction]

    @app.post("/v1/predict", response_model=PredictResponse, tags=["llmclf"])
    async def predict(request: PredictRequest):
        """Label names, probabilities by label and the decision rule, one prediction per text."""
        texts = [request.texts] if isinstance(request.texts, str) else request.texts
        check_texts(texts, args, "texts")
        records = await classify(texts)
        return {"model": name, "labels": labels, "decision": "argmax" if classifier.threshold is None else "threshold",
                "threshold": classifier.threshold, "min_confidence": classifier.min_confidence,
                "predictions": [{k: r[k] for k in ("label", "score", "probs", "needs_review")} for r in records]}

    @app.post("/v1/score-csv", tags=["llmclf"], response_class=Response, openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}}})
    async def score_csv(request: Request, text_column: str = "text"):
        """Score a UTF-8 CSV sent as the request body; answers it as CSV with `label`, `score`, one
        `prob_<label>` column per class (and `needs_review` with --min-confidence) added. Scored in memory."""
        frame = await asyncio.to_thread(_read_csv, await request.body(), text_column, labels,
                                        classifier.min_confidence is not None)
        if len(frame) > args.max_csv_rows:
            raise limit_exceeded("max_csv_rows", args.max_csv_rows, f"CSV: {len(frame)} rows")
        texts = frame[text_column].tolist()
        for i, text in enumerate(texts):
            if len(text) > args.max_chars_per_text:
                raise limit_exceeded("max_chars_per_text", args.max_chars_per_text,
                                     f"CSV row {i + 1}, column {text_column!r}: {len(text)} characters")
        records = []
        for start in range(0, len(texts), args.max_batch_size):  # share the model with other requests
            records += await _submit_patiently(classify, texts[start : start + args.max_batch_size])
        frame["label"] = [r["label"] for r in records]
        frame["score"] = [r["score"] for r in records]
        for label in labels:
            frame[f"prob_{label}"] = [r["probs"][label] for r in records]
        if classifier.min_confidence is not None:
            frame["needs_review"] = [r["needs_review"] for r in records]
        content = await asyncio.to_thread(lambda: frame.to_csv(index=False).encode("utf-8"))
        return Response(content, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="scored.csv"', "X-Rows": str(len(frame))})

    @app.get("/health", tags=["operations"])
    async def health():
        """200 while the server takes requests; queue depth and batch counts."""
        return {"status": "ok", "model": name, "queued": batcher.queued, "busy": batcher.busy,
                "batches": batcher.stats.batches, "max_batch_size_seen": max(batcher.stats.sizes, default=0)}

    @app.get("/v1/stats", tags=["operations"])
    async def stats():
        """Batching counters since start: batches, texts, the histogram of batch sizes, rejected requests."""
        return batcher.stats.as_dict() | {"queued": batcher.queued, "busy": batcher.busy,
                                          "settings": {"max_batch_size": args.max_batch_size,
                                                       "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue}}

    @app.get("/v1/model", tags=["llmclf"])
    async def model():
        """Labels, backbone, max_length, decision settings, the model card's metrics, and the limits."""
        return model_info(classifier, model_dir, name) | {"limits": args.limits()}

    def image_url(src: str) -> str | None:
        return f"/v1/model/files/{src}" if model_file(model_dir, src) else None

    @app.get("/v1/model/card", response_class=HTMLResponse, tags=["llmclf"])
    async def card():
        """The model card (README.md) as an HTML fragment, its plots linked under /v1/model/files/."""
        path = model_file(model_dir, "README.md")
        if path is None:
            raise RequestError(404, f"model {name} has no model card (README.md).", "not_found")
        return HTMLResponse(render_card(path.read_text(encoding="utf-8", errors="replace"), image_url),
                            headers=PAGE_HEADERS)

    @app.get("/v1/model/files/{relative:path}", tags=["llmclf"])
    async def files(relative: str):
        """The card, metrics.json, llmclf_config.yaml, history.jsonl and plots/*.png of the model directory."""
        path = model_file(model_dir, relative)
        if path is None:
            raise RequestError(404, f"{relative}: not a model file served here (README.md, metrics.json, "
                               "llmclf_config.yaml, history.jsonl, plots/*.png).", "not_found")
        media = {".md": "text/markdown; charset=utf-8", ".yaml": "text/yaml; charset=utf-8",
                 ".jsonl": "application/jsonl"}.get(path.suffix)
        return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    static = Path(str(resources.files("llmclf") / "static"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.state.batcher = batcher
    return app


async def _submit_patiently(classify, texts: list[str], patience_s: float = 30.0):
    """A CSV's chunk waits for room in a busy queue rather than failing at once."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await classify(texts)
        except RequestError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _read_csv(body: bytes, text_column: str, labels: list[str], with_review: bool):
    import io

    import pandas as pd

    if not body:
        raise RequestError(422, "CSV: the request body is empty; send the file's bytes.")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(422, f"CSV: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8.") from None
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RequestError(422, f"CSV: cannot read it ({first}); check the file's format.") from None
    if text_column not in frame.columns:
        raise RequestError(422, f"CSV: no text column {text_column!r}; columns found: "
                           f"{', '.join(map(str, frame.columns))}. Pass ?text_column=NAME.")
    if frame.empty:
        raise RequestError(422, "CSV: no rows to score; give a file with at least one text.")
    added = {"label", "score"} | {f"prob_{label}" for label in labels} | ({"needs_review"} if with_review else set())
    clash = sorted(added & set(map(str, frame.columns)))
    if clash:
        raise RequestError(422, f"CSV: already has column(s) {', '.join(clash)} that scoring adds; rename them first.")
    return frame


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmclf")
    except PackageNotFoundError:
        return "0"


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port as uvicorn binds one (SO_REUSEADDR); a port in use or an address this
    machine does not have is a UserError."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); choose "
                        "another --port (0: any free port) or --host.") from None
    return sock


def run_server(model: str, args: ServeArgs, threshold: float | None = None, min_confidence: float | None = None,
               **options) -> None:
    """Load `model` (a directory written by `llmclf train`, or a shipped model's name) and serve it until
    SIGTERM/SIGINT, answering the requests in flight before exiting. `options` go to Classifier.from_pretrained
    (device, truncation, max_length, precision, trust_remote_code, allow_pickle)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"llmclf serve needs uvicorn; run `{SERVE_EXTRA}`.") from None
    from llmclf.models import SHIPPED_MODELS, shipped_model_dir
    from llmclf.predict import Classifier

    for option, value in (("--threshold", threshold), ("--min-confidence", min_confidence)):
        if value is not None and not 0 < value <= 1:
            raise UserError(f"{option} must be in (0, 1], got {value}.")
    # Bound before the model loads and handed to uvicorn: a taken port is one line at once, not uvicorn's log
    # and exit code 3 after the load.
    sock = listen_socket(args.host, args.port)
    classifier = Classifier.from_pretrained(model, batch_size=args.max_batch_size, threshold=threshold,
                                            min_confidence=min_confidence, **options)
    model_dir = shipped_model_dir(model) if model in SHIPPED_MODELS else Path(model).expanduser()
    name = args.served_model_name or (model if model in SHIPPED_MODELS else model_dir.resolve().name)
    app = create_app(classifier, args, model_dir=model_dir, model_name=name)
    port = sock.getsockname()[1]  # the real one with --port 0
    print(f"llmclf: serving {name} ({', '.join(classifier.labels)}) on {classifier.device} at "
          f"http://{args.host}:{port}/  (API docs at /docs)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=30)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------------------------------------------------
# A server in a child process, for tests and benchmarks


def _die_with_parent():
    """On Linux, a child that gets SIGTERM when its parent dies, so a killed test run or benchmark leaves no
    server behind. libc is loaded here, in the parent: the child only makes the one call before exec. Linux
    signals the child when the *thread* that started it ends, so start servers from a long-lived thread."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`llmclf serve` in a child process on a free loopback port, ready once /health answers.

    >>> with ServerProcess("runs/tiny", max_wait_ms=5) as server:      # doctest: +SKIP
    ...     urllib.request.urlopen(server.url + "/health").status
    200
    """

    def __init__(self, model: str | Path | None, startup_timeout: float = 120.0, **options):
        """`model` None serves the default (the shipped sentiment model)."""
        self.model, self.startup_timeout, self.options = model and str(model), startup_timeout, options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="llmclf-serve-", suffix=".log", delete=False)
        self._final_log: str | None = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "llmclf", "serve", "--port", str(self.port)]
        if self.model is not None:
            argv += ["--model", self.model]
        for key, value in self.options.items():
            argv += [flag(key), str(value)]
        return argv

    def start(self) -> "ServerProcess":
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent())
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llmclf serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llmclf serve did not answer /health in {self.startup_timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    def log(self) -> str:
        """What the server printed (uvicorn's lines, warnings, a traceback if it failed to start)."""
        if self._final_log is not None:
            return self._final_log
        return Path(self._log.name).read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (graceful: in-flight requests are answered), then SIGKILL if it hangs; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._final_log is None:
            self._final_log = self.log()
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
