"""llmclf's own API and the web page: POST /v1/predict, POST /v1/score-csv, GET /health, /v1/stats, /v1/model,
/v1/model/card, /v1/model/files/PATH and the page at /.

    curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["Superb!", "Dull."]}'
"""

import asyncio
import json
import re
import time
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from llmclf.artifacts import read_run_config
from llmclf.report_html import render_card
from llmclf.serve.errors import RequestError, limit_exceeded
from llmclf.outputs import MULTI_LABEL, REGRESSION, SINGLE_LABEL, record_columns
from llmclf.scoring import LIST_COLUMNS, join_lists, scored_columns
from llmclf.serve.schemas import AnyPredictResponse, PredictRequest
from llmclf.serve.state import State

STATIC = Path(str(resources.files("llmclf") / "static"))
PAGE_HEADERS = {
    # The page and its script come from this server only, and the card's HTML is escaped server-side;
    # the policy makes any slip in that inert.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
CSV_UPLOAD = {"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}}

router = APIRouter()


@router.post("/v1/predict", response_model=AnyPredictResponse, tags=["llmclf"])
async def predict(request: PredictRequest, state: State):
    """One prediction per text, with the decision rule. Single-label: label, score, probabilities by label.
    Multi-label (`problem_type` multi_label_classification): the chosen labels, sigmoid probabilities by label,
    the thresholds. Regression (`problem_type` regression): value, and value_low/value_high with an interval."""
    records = await state.classify_request(request.texts, "texts")
    return predict_answer(state.classifier, state.name, records)


def predict_answer(classifier, name: str, records: list[dict]) -> dict:
    """/v1/predict's body for `records` from classifier.classify; single-label answers as before the other types."""
    kind = getattr(classifier, "problem_type", SINGLE_LABEL)
    if kind == REGRESSION:
        return {"model": name, "problem_type": kind, "target": classifier.labels[0],
                "interval_level": classifier.scale.level if classifier.scale.halfwidth is not None else None,
                "predictions": records}
    if kind == MULTI_LABEL:
        return {"model": name, "problem_type": kind, "labels": classifier.labels, "decision": "thresholds",
                "thresholds": dict(zip(classifier.labels, map(float, classifier.thresholds))),
                "min_confidence": classifier.min_confidence, "predictions": records}
    return {"model": name, "labels": classifier.labels,
            "decision": "argmax" if classifier.threshold is None else "threshold",
            "threshold": classifier.threshold, "min_confidence": classifier.min_confidence,
            "predictions": [{k: r[k] for k in ("label", "score", "probs", "needs_review")} for r in records]}


@router.post("/v1/score-csv", tags=["llmclf"], response_class=Response, openapi_extra=CSV_UPLOAD)
async def score_csv(request: Request, state: State, text_column: str = "text"):
    """Score a UTF-8 CSV sent as the request body; answers it as CSV with `label`, `score`, one
    `prob_<label>` column per class (and `needs_review` with --min-confidence) added; multi-label models add
    `labels` (comma-separated) and `prob_<label>`, regression models `value` (`value_low`, `value_high`), as
    `llmclf predict --input` does. Scored in memory."""
    args = state.args
    columns = scored_columns(state.classifier)
    frame = await asyncio.to_thread(read_csv, await request.body(), text_column, columns)
    if len(frame) > args.max_csv_rows:
        raise limit_exceeded("max_csv_rows", args.max_csv_rows, f"CSV: {len(frame)} rows")
    texts = frame[text_column].tolist()
    for i, text in enumerate(texts):
        if len(text) > args.max_chars_per_text:
            raise limit_exceeded("max_chars_per_text", args.max_chars_per_text,
                                 f"CSV row {i + 1}, column {text_column!r}: {len(text)} characters")
    records = []
    for start in range(0, len(texts), args.max_batch_size):  # share the model with other requests
        records += await submit_patiently(state.classify, texts[start : start + args.max_batch_size])
    for name, values in record_columns(records, columns).items():
        frame[name] = values
    separator = getattr(state.classifier, "label_separator", ",")
    content = await asyncio.to_thread(
        lambda: join_lists(frame, LIST_COLUMNS, separator).to_csv(index=False).encode("utf-8"))
    return Response(content, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="scored.csv"', "X-Rows": str(len(frame))})


@router.get("/health", tags=["operations"])
async def health(state: State):
    """200 while the server takes requests; queue depth and batch counts."""
    batcher = state.batcher
    return {"status": "ok", "model": state.name, "queued": batcher.queued, "busy": batcher.busy,
            "batches": batcher.stats.batches, "max_batch_size_seen": max(batcher.stats.sizes, default=0)}


@router.get("/v1/stats", tags=["operations"])
async def stats(state: State):
    """Batching counters since start: batches, texts, the histogram of batch sizes, rejected requests."""
    batcher, args = state.batcher, state.args
    return batcher.stats.as_dict() | {"queued": batcher.queued, "busy": batcher.busy,
                                      "settings": {"max_batch_size": args.max_batch_size,
                                                   "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue}}


@router.get("/v1/model", tags=["llmclf"])
async def model(state: State):
    """Labels, backbone, max_length, decision settings, the model card's metrics, and the limits."""
    return model_info(state.classifier, state.model_dir, state.name) | {"limits": state.args.limits()}


@router.get("/v1/model/card", response_class=HTMLResponse, tags=["llmclf"])
async def card(state: State):
    """The model card (README.md) as an HTML fragment, its plots linked under /v1/model/files/."""
    path = model_file(state.model_dir, "README.md")
    if path is None:
        raise RequestError(404, f"model {state.name} has no model card (README.md).", "not_found")

    def image_url(src: str) -> str | None:
        return f"/v1/model/files/{src}" if model_file(state.model_dir, src) else None

    return HTMLResponse(render_card(path.read_text(encoding="utf-8", errors="replace"), image_url),
                        headers=PAGE_HEADERS)


@router.get("/v1/model/files/{relative:path}", tags=["llmclf"])
async def files(relative: str, state: State):
    """The card, metrics.json, llmclf_config.yaml, history.jsonl and plots/*.png of the model directory."""
    path = model_file(state.model_dir, relative)
    if path is None:
        raise RequestError(404, f"{relative}: not a model file served here (README.md, metrics.json, "
                           "llmclf_config.yaml, history.jsonl, plots/*.png).", "not_found")
    media = {".md": "text/markdown; charset=utf-8", ".yaml": "text/yaml; charset=utf-8",
             ".jsonl": "application/jsonl"}.get(path.suffix)
    return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page():
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)


# --- the model directory: metadata, card, plots ------------------------------------------------------------

MODEL_FILES = re.compile(r"(README\.md|metrics\.json|llmclf_config\.yaml|history\.jsonl|plots/[A-Za-z0-9_.-]+\.png)")


def model_file(model_dir: Path | None, relative: str) -> Path | None:
    """The file under `model_dir` that /v1/model/files may serve, or None: only the card, metrics, settings
    and plots, and never a path that leaves the directory (`..`, absolute paths, symlinks out)."""
    if model_dir is None or not MODEL_FILES.fullmatch(relative):
        return None
    root = model_dir.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def model_info(classifier, model_dir: Path | None, name: str) -> dict:
    """What /v1/model answers: problem_type, labels, backbone, max_length, calibration, metrics, card and plot
    URLs."""
    kind = getattr(classifier, "problem_type", SINGLE_LABEL)
    run = read_run_config(model_dir) if model_dir else {}
    metrics_file = model_file(model_dir, "metrics.json")
    plots_dir = model_dir / "plots" if model_dir else None
    plots = sorted(p.name for p in plots_dir.glob("*.png")) if plots_dir and plots_dir.is_dir() else []
    return {
        "name": name,
        "problem_type": kind,
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
    } | type_info(classifier, kind)


def type_info(classifier, kind: str) -> dict:
    """/v1/model's settings of a multi-label model (thresholds) or a regression model (target, scale, interval)."""
    if kind == MULTI_LABEL:
        return {"thresholds": dict(zip(classifier.labels, map(float, classifier.thresholds)))}
    if kind == REGRESSION:
        scale = classifier.scale
        interval = None if scale.halfwidth is None else {"level": scale.level, "halfwidth": scale.halfwidth}
        return {"target": classifier.labels[0], "target_mean": scale.mean, "target_std": scale.std,
                "interval": interval}
    return {}


# --- CSV upload --------------------------------------------------------------------------------------------


async def submit_patiently(classify, texts: list[str], patience_s: float = 30.0):
    """A CSV's chunk waits for room in a busy queue rather than failing at once."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await classify(texts)
        except RequestError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def read_csv(body: bytes, text_column: str, added: list[str]):
    """The uploaded CSV as a frame of strings (ids like 007 stay as they are), or a 422 that says what is wrong."""
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
    clash = sorted(set(added) & set(map(str, frame.columns)))
    if clash:
        raise RequestError(422, f"CSV: already has column(s) {', '.join(clash)} that scoring adds; rename them first.")
    return frame
