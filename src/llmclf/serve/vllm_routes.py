"""vLLM's classification API, so clients written for vLLM work unchanged: POST /classify (and /v1/classify,
the path SGLang uses) and GET /v1/models.

    curl -s localhost:8000/classify -H 'content-type: application/json' -d '{"input": ["Superb!", "Dull."]}'
"""

import time
import uuid

from fastapi import APIRouter

from llmclf.serve.schemas import ClassificationResponse, ClassifyRequest
from llmclf.serve.state import State

router = APIRouter()


@router.post("/classify", response_model=ClassificationResponse, tags=["vLLM-compatible"])
async def classify_vllm(request: ClassifyRequest, state: State):
    """Classify texts in vLLM's request and response shapes: `probs` in label-id order. Multi-label models:
    `probs` are per-label sigmoid probabilities, `label` the most probable label and `labels` those at or above
    their thresholds. Regression models: `probs` is [value], `label` the target's name, with `value` (and
    `value_low`, `value_high` when the model has an interval)."""
    records = await state.classify_request(request.input, "input")
    tokens = sum(r["tokens"] for r in records)
    labels = state.labels
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": state.name,
            "data": [classification_item(i, r, labels) for i, r in enumerate(records)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None}}


def classification_item(index: int, record: dict, labels: list[str]) -> dict:
    """One `data` item from a classify record: vLLM's fields, plus `labels` (multi-label) or `value`s (regression)."""
    item = {"index": index, "num_classes": len(labels), "object": "classify"}
    if "value" in record:  # regression: the value stands where vLLM's probabilities do, the target's name as label
        extra = {k: record[k] for k in ("value", "value_low", "value_high") if k in record}
        return item | {"label": labels[0], "probs": [record["value"]]} | extra
    probs = [record["probs"][label] for label in labels]
    if "labels" in record:
        return item | {"label": labels[probs.index(max(probs))], "probs": probs, "labels": record["labels"]}
    return item | {"label": record["label"], "probs": probs}


router.add_api_route("/v1/classify", classify_vllm, methods=["POST"], response_model=ClassificationResponse,
                     include_in_schema=False)  # the path SGLang's compatible API uses


@router.get("/v1/models", tags=["vLLM-compatible"])
async def list_models(state: State):
    """The served model in OpenAI's model-list shape, for clients that look the name up."""
    return {"object": "list", "data": [{"id": state.name, "object": "model", "created": state.started,
                                        "owned_by": "llmclf"}]}
