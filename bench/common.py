"""What the benchmarks share: the IMDb validation reviews and a description of the machine they ran on."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb" / "train.parquet"
RESULTS = ROOT / "bench" / "results"


def imdb_validation(n: int | None = None) -> tuple[list[str], list[int]]:
    """The first n reviews of the held-out 20% (seed 42): the split `llmclf train` validates the shipped model on."""
    from llmclf.data import load_labelled, split_train_validation

    _, validation = split_train_validation(load_labelled(str(IMDB)), 0.2, 42)
    return validation.texts[:n], [int(label) for label in validation.labels[:n]]  # 0 neg, 1 pos


def machine() -> dict:
    import torch
    import transformers

    return {
        "date": datetime.date.today().isoformat(),
        "device": f"CPU {platform.machine()}, {torch.get_num_threads()} threads, "
                  f"{torch.backends.cpu.get_cpu_capability()}"
                  + (", AMX" if torch.cpu._is_amx_tile_supported() else ""),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }


def write_result(name: str, result: dict, directory: Path | str = RESULTS) -> Path:
    out = Path(directory) / f"{name}-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def imdb_texts(n: int) -> list[str]:
    """The first n IMDb training reviews (for speed runs, where the labels do not matter); with no ../shared
    (a GPU machine), synthetic texts drawn to IMDb's length spread."""
    if IMDB.is_file():
        import pandas as pd

        return pd.read_parquet(IMDB, columns=["text"])["text"].head(n).tolist()
    import random

    rng = random.Random(0)
    words = "the film was a story of great acting but weak plot and long scenes".split()
    return [" ".join(rng.choice(words) for _ in range(int(rng.lognormvariate(5.3, 0.7)))) for _ in range(n)]


def speed_tokenizer(name: str):
    """SmolLM2's tokenizer for every speed model (Llama 3.2's is on the hub only; the lengths are close)."""
    from llmclf.models import load_backbone, load_tokenizer, resolve_backbone

    if name == "tiny":
        return load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})[1]
    return load_tokenizer(resolve_backbone("smollm2-135m"))


LLAMA_3_2_1B = dict(  # meta-llama/Llama-3.2-1B's config.json: the shape, with random weights
    hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
    vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
)


def speed_model(name: str, device: str):
    """(model, tokenizer) for a speed run: `llama-3.2-1b-shape` (random weights), `smollm2-135m` (the GGUF
    backbone), or `tiny` (a 2-layer model for --smoke runs on a CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from llmclf.models import load_backbone

    labels = {0: "neg", 1: "pos"}
    if name == "smollm2-135m":
        model, tokenizer = load_backbone(name, labels)
        return model.to(device), tokenizer
    tokenizer = speed_tokenizer(name)
    shape = LLAMA_3_2_1B if name == "llama-3.2-1b-shape" else dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer))
    torch.manual_seed(0)
    config = LlamaConfig(**shape, num_labels=2, pad_token_id=tokenizer.pad_token_id, id2label=labels,
                         label2id={v: k for k, v in labels.items()})
    return LlamaForSequenceClassification(config).to(device), tokenizer
