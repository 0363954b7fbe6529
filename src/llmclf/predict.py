"""The one inference path: a trained classifier that labels texts.

>>> clf = Classifier.from_pretrained("runs/imdb")        # doctest: +SKIP
>>> clf.predict("A quiet, moving film.")                 # doctest: +SKIP
'pos'
>>> clf.predict_proba(["Dull.", "Superb!"]).shape        # doctest: +SKIP
(2, 2)
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from llmclf.metrics import softmax
from llmclf.models import load_classifier, read_run_config


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute goes to padding.

    >>> length_batches([5, 1, 9, 3], 2)
    [[2, 0], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Classifier:
    """A sequence classifier with its tokenizer; texts in, label names or probabilities out."""

    def __init__(self, model, tokenizer, max_length: int = 512, batch_size: int = 16, device: str | None = None):
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "Classifier":
        model, tokenizer = load_classifier(path)
        kwargs.setdefault("max_length", read_run_config(path).get("max_length", 512))  # as trained
        return cls(model, tokenizer, **kwargs)

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def logits(self, texts: list[str]) -> np.ndarray:
        """Shape (len(texts), num_labels), in the caller's order."""
        import torch

        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(encoded), len(self.id2label)), dtype=np.float32)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), autocast:
            for batch in length_batches([len(ids) for ids in encoded], self.batch_size):
                padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                padded = {k: v.to(self.device) for k, v in padded.items()}
                out[batch] = self.model(**padded).logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """Probabilities in id2label order: shape (n, num_labels), or (num_labels,) for a single string."""
        single = isinstance(texts, str)
        probs = softmax(self.logits([texts] if single else texts))
        return probs[0] if single else probs

    def predict(self, texts: str | list[str]) -> str | list[str]:
        """Label names: one for a single string, a list for a list."""
        probs = self.predict_proba(texts)
        if isinstance(texts, str):
            return self.id2label[int(np.argmax(probs))]
        return [self.id2label[int(i)] for i in np.argmax(probs, axis=1)]

