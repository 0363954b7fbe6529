"""The one inference path: a trained classifier that labels texts.

>>> clf = Classifier.from_pretrained("runs/imdb")        # doctest: +SKIP
>>> clf.predict("A quiet, moving film.")                 # doctest: +SKIP
'pos'
>>> clf.predict_proba(["Dull.", "Superb!"]).shape        # doctest: +SKIP
(2, 2)

Multi-label models answer lists of labels and regression models values (llmclf.outputs has the rules).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from llmclf.artifacts import read_calibration, read_run_config
from llmclf.errors import UserError
from llmclf.heads import is_head_name
from llmclf.metrics import softmax
from llmclf.models import load_classifier
from llmclf.outputs import (MULTI_LABEL, REGRESSION, SINGLE_LABEL, Scale, check_decision_options, label_thresholds,
                            multi_label_records, problem_type_of, regression_records, single_label_records)
from llmclf.precision import resolve_precision
from llmclf.prompts import PromptEncoding
from llmclf.windows import CHARS_PER_TOKEN_BOUND, DEFAULT_TRUNCATION, TRUNCATION_CHOICES, windows

def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute goes to padding.

    >>> length_batches([5, 1, 9, 3], 2)
    [[2, 0], [3, 1]]
    """
    order = longest_first_order(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def longest_first_order(lengths: list[int]) -> list[int]:
    """Indices by descending length, ties in their given order (prediction's batches and training's evaluation).

    >>> longest_first_order([5, 1, 9, 5])
    [2, 0, 3, 1]
    """
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def quantize_int8(model, device):
    """Dynamic int8 quantization of the linear layers (weights int8, activations quantized per batch), except the
    classification head and each MLP's down_proj, which stay in float. Opt-in only: it moves probabilities (up to
    0.27 on the shipped model) away from those its calibration was fitted on; see bench/predict_cpu.py."""
    import torch

    if device.type != "cpu":
        raise UserError("--quantize int8 is for CPU inference; on CUDA llmclf runs bf16.")
    keep_float = {name for name, _ in model.named_modules() if is_head_name(name) or is_down_proj(name)}
    linears = {name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name not in keep_float}
    return torch.ao.quantization.quantize_dynamic(model, linears, dtype=torch.qint8)


def is_down_proj(name: str) -> bool:
    """down_proj reads the SwiGLU product silu(gate) * up, whose few outlier channels a per-tensor activation scale
    cannot represent. A one-off probe (shipped model, 100 IMDb validation reviews, AVX2 CPU): every linear in int8,
    accuracy 0.74 against fp32's 0.94; all but down_proj, 0.95."""
    return name.rsplit(".", 1)[-1] == "down_proj"


class Classifier:
    """A sequence classifier with its tokenizer; texts in, label names or probabilities out."""

    def __init__(self, model, tokenizer, max_length: int = 512, batch_size: int = 16, device: str | None = None,
                 truncation: str | None = DEFAULT_TRUNCATION, temperature: float | None = None, threshold: float | None = None,
                 min_confidence: float | None = None, quantize: str | None = None, precision: str = "auto",
                 prompt_template: str | None = None, label_bias: list[float] | None = None):
        import torch

        truncation = truncation or DEFAULT_TRUNCATION
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
        self.quantize = quantize
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.truncation = truncation
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}
        # Calibration saved with the model (config.json "llmclf": {"temperature", "threshold"}) unless overridden.
        saved = getattr(model.config, "llmclf", None) or {}
        self.temperature = float(temperature if temperature is not None else saved.get("temperature", 1.0))
        # Zero-shot models: contextual calibration's per-label logit bias (llmclf.zeroshot), added before T.
        bias = label_bias if label_bias is not None else saved.get("label_bias")
        self.label_bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        self.problem_type = problem_type_of(model.config, saved)
        # The saved `threshold` is a binary single-label model's; multi-label ones save `thresholds` per label
        # (which `threshold` overrides, all at once) and regression ones have none.
        if threshold is None and self.problem_type == SINGLE_LABEL:
            threshold = saved.get("threshold")
        check_decision_options(self.problem_type, len(self.id2label), threshold, min_confidence)
        self.threshold = threshold
        self.thresholds = (label_thresholds(self.labels, saved, threshold) if self.problem_type == MULTI_LABEL
                           else None)
        self.scale = Scale.from_saved(saved) if self.problem_type == REGRESSION else None
        self.min_confidence = min_confidence
        # Special tokens the tokenizer adds (Llama 3: BOS; SmolLM2: none) and the prompt template's start and
        # end, kept whole in every window (llmclf.prompts).
        self.prompt_template = prompt_template
        # Set by llmclf.zeroshot on an untrained label-word classifier: its backbone and label words, which
        # save_zero_shot writes (the weights are not saved: they are the backbone's own).
        self.zero_shot: dict | None = None
        # How a multi-label model's chosen labels are joined in one CSV cell: the separator its training data
        # used (llmclf_config.yaml's label_separator, set by from_pretrained), so the output reads back as input.
        self.label_separator = ","
        self.prompt = PromptEncoding.build(tokenizer, prompt_template, self.labels)
        self.prompt.room(max_length)
        self._prefix = self.prompt.prefix
        self._filler = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]

    @classmethod
    def from_pretrained(cls, path: str, trust_remote_code: bool = False, allow_pickle: bool = False,
                        **kwargs) -> "Classifier":
        """Load a directory written by `llmclf train` (merged model or LoRA adapter), or a shipped model; it
        runs with the max_length, truncation and prompt template it was trained with unless told otherwise.

        With `labels` (and optionally `label_words`, `prompt_template`), `path` may also name a plain causal LM
        (an alias, hub id, .gguf file or directory): a zero-shot classifier, see llmclf.zeroshot; a directory
        written by `llmclf zero-shot` (llmclf.zeroshot.save_zero_shot) loads that classifier again."""
        from llmclf.zeroshot import check_labels, is_classifier, load_zero_shot, saved_zero_shot, zero_shot_classifier

        labels, label_words = kwargs.pop("labels", None), kwargs.pop("label_words", None)
        zero_shot = saved_zero_shot(path)
        if zero_shot is not None:
            return load_zero_shot(cls, path, zero_shot, labels, label_words, trust_remote_code=trust_remote_code,
                                  allow_pickle=allow_pickle, **kwargs)
        if labels is not None and not is_classifier(path):
            return zero_shot_classifier(cls, path, labels, label_words=label_words, trust_remote_code=trust_remote_code,
                                        allow_pickle=allow_pickle, **kwargs)
        model, tokenizer = load_classifier(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        run = read_run_config(path)
        check_labels(path, [model.config.id2label[i] for i in sorted(model.config.id2label)], labels, run,
                     kwargs.get("prompt_template"))
        kwargs.setdefault("max_length", run.get("max_length", 512))  # as trained
        if kwargs.get("truncation") is None:
            kwargs["truncation"] = run.get("truncation") or DEFAULT_TRUNCATION
        kwargs["prompt_template"] = run.get("prompt_template")
        # A LoRA adapter directory has no config.json of its own: its calibration lies beside it.
        saved = read_calibration(path)
        if saved and not getattr(model.config, "llmclf", None):
            model.config.llmclf = saved
        classifier = cls(model, tokenizer, **kwargs)
        classifier.label_separator = run.get("label_separator") or ","
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
        ids = self.prompt.text_ids(self.tokenizer, text)
        if not ids and self.prompt_template is None:
            ids = self._filler  # an empty text alone: one token to pool
        return windows(ids, self.max_length, self.truncation, self.prompt.prefix, suffix=self.prompt.suffix)

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
        if self.label_bias is not None:
            out += self.label_bias
        return out, np.asarray(owner, dtype=np.int64)

    def _per_text_mean(self, window_values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        """The mean over each text's windows (truncation="chunks" reads a long text in several)."""
        out = np.zeros((n, window_values.shape[1]))
        np.add.at(out, owner, window_values)
        return out / np.bincount(owner, minlength=n)[:, None]

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """Probabilities in id2label order: shape (n, num_labels), or (num_labels,) for a single string.

        Single-label: softmax (with the temperature); multi-label: a sigmoid per label, independent of each other
        (no temperature). With truncation="chunks", the windows' probabilities are averaged per text. A
        regression model has no probabilities: UserError, use predict() (values) or classify() (intervals).
        """
        if self.problem_type == REGRESSION:
            raise UserError("predict_proba: this is a regression model, it outputs values, not probabilities; "
                            "call predict() (or classify() for intervals).")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        logits, owner = self.window_logits(batch)
        if self.problem_type == MULTI_LABEL:
            window_probs = 0.5 * (1 + np.tanh(logits.astype(np.float64) / 2))  # the sigmoid, without overflow
        else:
            window_probs = softmax(logits / self.temperature)
        probs = self._per_text_mean(window_probs, owner, len(batch))
        return probs[0] if single else probs

    def predict_values(self, texts: str | list[str]) -> float | np.ndarray:
        """A regression model's values in the target's units (raw * target_std + target_mean): a float for a
        single string, shape (n,) for a list; with truncation="chunks", from the mean of the windows' outputs."""
        if self.problem_type != REGRESSION:
            raise UserError("predict_values is for regression models; this one is a classifier: call predict() or "
                            "predict_proba().")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        raw, owner = self.window_logits(batch)
        values = self.scale.values(self._per_text_mean(raw, owner, len(batch))[:, 0])
        return float(values[0]) if single else values

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Single-label: label ids from probabilities (n, k), argmax, or for a binary model with a threshold,
        the second label (id 1) exactly when its probability reaches the threshold. Multi-label: a boolean
        (n, k) matrix, each label chosen when its probability reaches its threshold."""
        if self.problem_type == MULTI_LABEL:
            return probs >= self.thresholds
        if self.threshold is not None:
            return (probs[:, 1] >= self.threshold).astype(np.int64)
        return probs.argmax(axis=1)

    def predict(self, texts: str | list[str]):
        """One answer per text, for a single string the answer alone: a label name (single-label), the list
        of chosen label names (multi-label) or a float in the target's units (regression)."""
        single = isinstance(texts, str)
        if self.problem_type == REGRESSION:
            values = self.predict_values(texts)
            return values if single else values.tolist()
        probs = np.atleast_2d(self.predict_proba(texts))
        chosen = self.decide(probs)
        if self.problem_type == MULTI_LABEL:
            answers = [[self.id2label[i] for i in np.flatnonzero(row)] for row in chosen]
        else:
            answers = [self.id2label[int(i)] for i in chosen]
        return answers[0] if single else answers

    def classify(self, texts: list[str]) -> list[dict]:
        """One record per text (llmclf.outputs): single-label {label, score, probs, needs_review}; multi-label
        {labels, score (the top probability), probs, needs_review}; regression {value[, value_low, value_high]}.

        Single-label `needs_review` is True when the top probability is below min_confidence (the label is kept).
        """
        if self.problem_type == REGRESSION:
            return regression_records(np.atleast_1d(self.predict_values(list(texts))), self.scale)
        probs = np.atleast_2d(self.predict_proba(list(texts)))
        if self.problem_type == MULTI_LABEL:
            return multi_label_records(probs, self.decide(probs), self.labels, self.min_confidence)
        return single_label_records(probs, self.decide(probs), self.labels, self.min_confidence)
