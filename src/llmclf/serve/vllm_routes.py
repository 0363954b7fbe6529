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
    """Classify texts in vLLM's request and response shapes: `probs` in label-id order."""
    records = await state.classify_request(request.input, "input")
    tokens = sum(r["tokens"] for r in records)
    labels = state.labels
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": state.name,
            "data": [{"index": i, "label": r["label"], "probs": [r["probs"][label] for label in labels],
                      "num_classes": len(labels), "object": "classify"} for i, r in enumerate(records)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None}}


router.add_api_route("/v1/classify", classify_vllm, methods=["POST"], response_model=ClassificationResponse,
                     include_in_schema=False)  # the path SGLang's compatible API uses


@router.get("/v1/models", tags=["vLLM-compatible"])
async def list_models(state: State):
    """The served model in OpenAI's model-list shape, for clients that look the name up."""
    return {"object": "list", "data": [{"id": state.name, "object": "model", "created": state.started,
                                        "owned_by": "llmclf"}]}
