"""What every endpoint shares: the classifier, the settings, the served name and the batcher in front of the
model. `build_app` puts one ServeState on `app.state.llmclf`; endpoints receive it as a `State` parameter."""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from llmclf.serve.settings import ServeArgs
from llmclf.serve.batching import Batcher, QueueFull
from llmclf.serve.errors import RequestError, check_texts


def count_tokens(classifier):
    """`classifier.classify`, with each record's `tokens`: what the model read after truncation, which vLLM
    reports as usage. `_encode` is the Classifier's own windowing, so the count matches what ran."""

    def run_batch(texts: list[str]) -> list[dict]:
        records = classifier.classify(texts)
        for record, text in zip(records, texts):
            record["tokens"] = sum(len(window) for window in classifier._encode(text))
        return records

    return run_batch


@dataclass
class ServeState:
    classifier: Any  # a llmclf.predict.Classifier, or anything with its labels, classify and _encode
    args: ServeArgs
    name: str
    model_dir: Path | None
    batcher: Batcher
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    async def classify_request(self, texts: str | list[str], what: str) -> list[dict]:
        """A request's text or texts (named `what` in errors), checked against the limits, then classified."""
        texts = [texts] if isinstance(texts, str) else texts
        check_texts(texts, self.args, what)
        return await self.classify(texts)

    async def classify(self, texts: list[str]) -> list[dict]:
        """One record per text from the shared batcher; a full queue is a 503 the client may retry."""
        try:
            return await self.batcher.submit(texts)
        except QueueFull:
            raise RequestError(503, f"the queue is full ({self.args.max_queue} texts waiting, --max-queue); retry "
                               "shortly.", "overloaded", "max_queue", self.args.max_queue,
                               {"Retry-After": "1"}) from None


async def serve_state(request: Request) -> ServeState:
    # async: a plain `def` dependency would run in the thread pool, a thread hop for every request
    return request.app.state.llmclf


State = Annotated[ServeState, Depends(serve_state)]
