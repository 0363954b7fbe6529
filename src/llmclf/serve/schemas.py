"""The request and response bodies of the server's JSON API, as pydantic models (the OpenAPI schema at
/openapi.json and the pages at /docs are built from them).

No `from __future__ import annotations` here or in the route modules: FastAPI and pydantic read these
annotations at run time, and live types spare them resolving strings.
"""

from typing import Annotated, Literal

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


class MultiLabelClassificationData(ClassificationData):
    """A multi-label model's item: `probs` are per-label sigmoid probabilities (they need not sum to 1), `label`
    the most probable label, `labels` every label at or above its threshold."""

    labels: list[str]


class RegressionClassificationData(ClassificationData):
    """A regression model's item: `probs` is [value], `label` the target's name, `num_classes` 1; `value` again,
    and `value_low`/`value_high` when the model has an interval."""

    value: float
    value_low: float | None = None
    value_high: float | None = None


# Tried in this order: the extended items first, or their extra fields would be dropped.
AnyClassificationData = Annotated[RegressionClassificationData | MultiLabelClassificationData | ClassificationData,
                                  Field(union_mode="left_to_right")]


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
    data: list[AnyClassificationData]
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


class MultiLabelPrediction(BaseModel):
    labels: list[str] = Field(description="every label whose probability reaches its threshold (maybe none)")
    score: float = Field(description="the highest probability")
    probs: dict[str, float] = Field(description="sigmoid probability by label name (independent; no sum to 1)")
    needs_review: bool = Field(description="some label's max(p, 1 - p) below min_confidence")


class MultiLabelPredictResponse(BaseModel):
    model: str
    problem_type: Literal["multi_label_classification"]
    labels: list[str]
    decision: Literal["thresholds"] = "thresholds"
    thresholds: dict[str, float] = Field(description="the decision threshold by label (--threshold sets all)")
    min_confidence: float | None
    predictions: list[MultiLabelPrediction]


class RegressionPrediction(BaseModel):
    value: float = Field(description="the prediction in the target's units")
    value_low: float | None = Field(None, description="the interval's lower bound (models saved with one)")
    value_high: float | None = Field(None, description="the interval's upper bound")


class RegressionPredictResponse(BaseModel):
    model: str
    problem_type: Literal["regression"]
    target: str = Field(description="the name of the predicted quantity")
    interval_level: float | None = Field(description="the share of held-out targets [value_low, value_high] covered")
    predictions: list[RegressionPrediction]


# Single-label answers keep the shape they had before multi-label and regression models (no problem_type).
AnyPredictResponse = Annotated[MultiLabelPredictResponse | RegressionPredictResponse | PredictResponse,
                               Field(union_mode="left_to_right")]
