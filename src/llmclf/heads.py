"""The classification head of a sequence classifier, found one way for every supported model.

Decoder classifiers in transformers name their head `score` (Llama, Mistral, Qwen, GPT-2...) and encoder ones
`classifier`; PEFT wraps it (ModulesToSaveWrapper) when a LoRA run trains it in full. Packing hooks it, calibration
scales it, int8 quantization leaves it in float and LoRA never targets it.
"""

from __future__ import annotations

HEAD_NAMES = ("score", "classifier")
# The language-model head of a causal LM is never a LoRA target either: a classifier does not use it.
NOT_LORA_TARGETS = HEAD_NAMES + ("lm_head",)


def is_head_name(module_name: str) -> bool:
    """Whether a module path (`model.score`, `base_model.model.score`) ends in a head's name."""
    return module_name.rsplit(".", 1)[-1] in HEAD_NAMES


def head_module(model):
    """The classification head (PEFT's wrapper around it for a LoRA model): the shortest module path ending in
    one of HEAD_NAMES."""
    named = [(name, module) for name, module in model.named_modules() if is_head_name(name)]
    if not named:
        raise ValueError(f"no classification head named {' or '.join(HEAD_NAMES)} in {type(model).__name__}")
    return min(named, key=lambda item: item[0].count("."))[1]


def head_linears(model) -> list:
    """The linear layers of the head with num_labels outputs, or [] when the head is anything else (a head of
    several layers, such as RoBERTa's dense + out_proj, is not one linear map of the logits)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        head = head_module(base)
    except ValueError:
        return []
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if not linears or any(m.out_features != base.config.num_labels for m in linears):
        return []
    return linears
