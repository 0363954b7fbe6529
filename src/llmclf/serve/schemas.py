"""The request and response bodies of the server's JSON API, as pydantic models (the OpenAPI schema at
/openapi.json and the pages at /docs are built from them).

No `from __future__ import annotations` here or in the route modules: FastAPI and pydantic read these
annotations at run time, and live types spare them resolving strings.
"""

from pydantic import BaseModel, ConfigDict, Field

# --- vLLM's classification API -----------------------------------------------------------------------------


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


# --- our own API -------------------------------------------------------------------------------------------


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
