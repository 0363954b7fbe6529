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

from llmclf.artifacts import read_calibration, read_run_config
from llmclf.errors import UserError
from llmclf.heads import is_head_name
from llmclf.metrics import softmax
from llmclf.models import load_classifier
from llmclf.precision import resolve_precision

TRUNCATION_CHOICES = ("head", "head_tail", "chunks")
# The most accurate mode on IMDb validation reviews at both 256 and 512 tokens (bench/truncation.py, README).
DEFAULT_TRUNCATION = "chunks"
# A token spans at most a few dozen characters, so cutting a huge text to this many characters per token of
# max_length first keeps every token that head/head_tail truncation could keep, without tokenizing megabytes.
CHARS_PER_TOKEN_BOUND = 64


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute goes to padding.

    >>> length_batches([5, 1, 9, 3], 2)
    [[2, 0], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def windows(ids: list[int], max_length: int, truncation: str, prefix: list[int] = (),
            max_chunks: int = 32) -> list[list[int]]:
    """The token windows a text is classified from; `prefix` holds special tokens (BOS) kept in each window.

    `chunks` cuts overlapping windows; past `max_chunks` of them (a text of ~12k tokens at max_length 512),
    `max_chunks` windows spread evenly from start to end stand for the whole, so one huge text cannot stall
    a batch or a server.

    >>> windows(list(range(10)), 4, "head")
    [[0, 1, 2, 3]]
    >>> windows(list(range(10)), 4, "head_tail")
    [[0, 7, 8, 9]]
    >>> windows(list(range(10)), 4, "chunks")
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    room = max_length - len(prefix)
    if room < 1:
        raise UserError(f"--max-length {max_length} leaves no room for text after {len(prefix)} special token(s).")
    prefix = list(prefix)
    if len(ids) <= room:
        return [prefix + ids]
    if truncation == "head":
        return [prefix + ids[:room]]
    if truncation == "head_tail":  # the start sets the topic, the end often holds the verdict
        head = room // 4
        return [prefix + ids[:head] + ids[len(ids) - (room - head):]]
    if truncation == "chunks":
        step = max(1, room - room // 4)  # windows overlap by a quarter
        starts = list(range(0, len(ids) - room, step)) + [len(ids) - room]
        if len(starts) > max_chunks:
            starts = [starts[round(i * (len(starts) - 1) / (max_chunks - 1))] for i in range(max_chunks)]
        return [prefix + ids[s : s + room] for s in starts]
    raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {truncation!r}.")


def quantize_int8(model, device):
    """Dynamic int8 quantization of the linear layers (weights int8, activations quantized per batch); the
    classification head stays in float. Opt-in only: bench/predict_cpu.py measured it 1.8x faster on SmolLM2-135M
    but with accuracy falling from 0.75 to 0.48 (per-tensor activation scales suit its activations badly)."""
    import torch

    if device.type != "cpu":
        raise UserError("--quantize int8 is for CPU inference; on CUDA llmclf runs bf16.")
    head = {name for name, _ in model.named_modules() if is_head_name(name)}
    linears = {name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name not in head}
    return torch.ao.quantization.quantize_dynamic(model, linears, dtype=torch.qint8)


class Classifier:
    """A sequence classifier with its tokenizer; texts in, label names or probabilities out."""

    def __init__(self, model, tokenizer, max_length: int = 512, batch_size: int = 16, device: str | None = None,
                 truncation: str = DEFAULT_TRUNCATION, temperature: float | None = None, threshold: float | None = None,
                 min_confidence: float | None = None, quantize: str | None = None, precision: str = "auto"):
        import torch

        if truncation not in TRUNCATION_CHOICES:
            raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {truncation!r}.")
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available")
        except RuntimeError as exc:
            raise UserError(f"--device {device}: {exc}; use --device cpu.") from None
        self.model = model.to(self.device).eval()
        resolved = resolve_precision(precision, self.device.type)
        if quantize == "int8":
            if precision == "bf16":
                raise UserError("--quantize int8 runs float activations; drop --precision bf16 (or --quantize).")
            self.model = quantize_int8(self.model, self.device)
        elif quantize is not None:
            raise UserError(f"--quantize must be int8 or left out, got {quantize!r}.")
        # bf16 where the hardware has native bf16 matmuls (CUDA, AMX/AVX512-BF16 CPUs): bench/predict_cpu.py
        # measured the accuracy it costs next to the speed it gives.
        self.bf16 = quantize is None and resolved == "bf16"
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.truncation = truncation
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}
        # Calibration saved with the model (config.json "llmclf": {"temperature", "threshold"}) unless overridden.
        saved = getattr(model.config, "llmclf", None) or {}
        self.temperature = float(temperature if temperature is not None else saved.get("temperature", 1.0))
        self.threshold = threshold if threshold is not None else saved.get("threshold")
        if self.threshold is not None and len(self.id2label) != 2:
            raise UserError("--threshold applies to binary classifiers only; this model has "
                            f"{len(self.id2label)} labels.")
        self.min_confidence = min_confidence
        # Special tokens the tokenizer adds (Llama 3: BOS; SmolLM2: none), kept at the start of every window.
        self._prefix = tokenizer("", add_special_tokens=True)["input_ids"]
        self._filler = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]

    @classmethod
    def from_pretrained(cls, path: str, trust_remote_code: bool = False, allow_pickle: bool = False,
                        **kwargs) -> "Classifier":
        """Load a directory written by `llmclf train` (merged model or LoRA adapter), or a shipped model."""
        model, tokenizer = load_classifier(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        kwargs.setdefault("max_length", read_run_config(path).get("max_length", 512))  # as trained
        # A LoRA adapter directory has no config.json of its own: its calibration lies beside it.
        saved = read_calibration(path)
        if saved and not getattr(model.config, "llmclf", None):
            model.config.llmclf = saved
        classifier = cls(model, tokenizer, **kwargs)
        if classifier.bf16:  # weights this loader owns: stored in bf16, half the memory and no per-call casts
            import torch

            classifier.model.to(torch.bfloat16)
        return classifier

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def _encode(self, text: str) -> list[list[int]]:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        if self.truncation != "chunks":
            cut = self.max_length * CHARS_PER_TOKEN_BOUND
            if len(text) > 2 * cut:
                text = text[:cut] + text[-cut:] if self.truncation == "head_tail" else text[:cut]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] or self._filler  # empty text: one token
        return windows(ids, self.max_length, self.truncation, self._prefix)

    def window_logits(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Logits of every window, shape (n_windows, num_labels), and the index of the text each came from."""
        import torch

        encoded, owner = [], []
        for i, text in enumerate(texts):
            for window in self._encode(text):
                encoded.append(window)
                owner.append(i)
        out = np.zeros((len(encoded), len(self.id2label)), dtype=np.float32)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            for batch in length_batches([len(ids) for ids in encoded], self.batch_size):
                padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                padded = {k: v.to(self.device) for k, v in padded.items()}
                out[batch] = self.model(**padded).logits.float().cpu().numpy()
        return out, np.asarray(owner, dtype=np.int64)

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """Probabilities in id2label order: shape (n, num_labels), or (num_labels,) for a single string.

        With truncation="chunks", the windows' probabilities are averaged per text.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        logits, owner = self.window_logits(batch)
        window_probs = softmax(logits / self.temperature)
        probs = np.zeros((len(batch), len(self.id2label)))
        np.add.at(probs, owner, window_probs)
        probs /= np.bincount(owner, minlength=len(batch))[:, None]
        return probs[0] if single else probs

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Label ids from probabilities (n, k): argmax, or for a binary model with a threshold, the second
        label (id 1) exactly when its probability reaches the threshold."""
        if self.threshold is not None:
            return (probs[:, 1] >= self.threshold).astype(np.int64)
        return probs.argmax(axis=1)

    def predict(self, texts: str | list[str]) -> str | list[str]:
        """Label names: one for a single string, a list for a list."""
        single = isinstance(texts, str)
        probs = np.atleast_2d(self.predict_proba(texts))
        labels = [self.id2label[int(i)] for i in self.decide(probs)]
        return labels[0] if single else labels

    def classify(self, texts: list[str]) -> list[dict]:
        """One record per text: label, score (its probability), probs by label name, needs_review.

        `needs_review` is True when the top probability is below min_confidence (the label is kept).
        """
        probs = np.atleast_2d(self.predict_proba(list(texts)))
        records = []
        for row, best in zip(probs, self.decide(probs)):
            score = float(row[best])
            records.append({
                "label": self.id2label[int(best)], "score": score,
                "probs": {self.id2label[i]: float(p) for i, p in enumerate(row)},
                "needs_review": self.min_confidence is not None and float(row.max()) < self.min_confidence,
            })
        return records
