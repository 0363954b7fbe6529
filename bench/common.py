"""What the benchmarks share: the IMDb validation reviews and a description of the machine they ran on."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb" / "train.parquet"
RESULTS = ROOT / "bench" / "results"
# Where the speed runs read their reviews: a parquet, .jsonl or .jsonl.xz file with a `text` column/key. Set on
# a GPU machine, where ../shared does not travel (bench/gpu_prepare.sh carries a compact copy); else IMDB.
IMDB_TEXTS_ENV = "LLMCLF_BENCH_IMDB"


def imdb_split():
    """IMDb's 80% training and 20% held-out parts (seed 42), as `llmclf train` splits them for the shipped model."""
    from llmclf.data import load_labelled, split_train_validation

    return split_train_validation(load_labelled(str(IMDB)), 0.2, 42)


def imdb_validation(n: int | None = None) -> tuple[list[str], list[int]]:
    """The first n reviews of the held-out 20% (seed 42): the split `llmclf train` validates the shipped model on."""
    _, validation = imdb_split()
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


def trained_model_scores(directory: Path) -> dict:
    """A finished `llmclf train` output as the benches record it: its validation scores (scored as `predict` runs
    the model), its behaviour checks (None where the run wrote none: non-sentiment labels) and its training."""
    metrics = json.loads((directory / "metrics.json").read_text())
    checks = directory / "behaviour.json"
    behaviour = json.loads(checks.read_text()) if checks.is_file() else None
    validation, training = metrics["validation"], metrics["training"]
    return {"n_eval": validation["n"], "accuracy": round(validation["accuracy"], 4),
            "roc_auc": round(validation["roc_auc"], 4), "ece": round(validation["ece"], 4),
            "behaviour_passed": behaviour and f"{behaviour['passed']}/{behaviour['n']}",
            "behaviour_checks": behaviour and {check["name"]: f"{check['passed']}/{check['n']}"
                                               for check in behaviour["checks"]},
            # metrics.json records steps since 2026-12-02
            "steps": training.get("steps"), "train_examples": training["train_examples"],
            # trainer.train's time: the steps (and any compiling) plus the end-of-epoch validation pass
            "train_seconds": training["train_seconds"], "train_loss": round(training["train_loss"], 4)}


def read_texts(path: Path, n: int) -> list[str]:
    """The first n texts of a parquet file (`text` column) or of a JSON-lines file, xz-compressed or not."""
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path, columns=["text"])["text"].head(n).tolist()
    import lzma

    texts = []
    with (lzma.open if path.suffix == ".xz" else open)(path, "rt", encoding="utf-8") as f:
        for line in f:
            if len(texts) == n:
                break
            texts.append(json.loads(line)["text"])
    return texts


def imdb_texts(n: int) -> list[str]:
    """The first n IMDb training reviews (for speed runs, where the labels do not matter), from
    $LLMCLF_BENCH_IMDB when set, else ../shared/data; a file holding fewer than n is cycled through (with a
    warning). With neither (a GPU machine given no copy), synthetic texts drawn to IMDb's length spread."""
    chosen = os.environ.get(IMDB_TEXTS_ENV)
    if chosen and not Path(chosen).is_file():
        raise SystemExit(f"{IMDB_TEXTS_ENV}={chosen}: no such file")
    source = Path(chosen) if chosen else IMDB
    if source.is_file():
        texts = read_texts(source, n)
        if 0 < len(texts) < n:
            print(f"warning: {source} holds {len(texts)} reviews; cycling through them to make {n}", file=sys.stderr)
            texts = [texts[i % len(texts)] for i in range(n)]
        return texts
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
    config = LlamaConfig(**shape, num_labels=2, pad_token_id=tokenizer.pad_token_id, id2label=labels,
                         label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    try:  # random weights drawn on the device itself: the 1B shape takes seconds to initialise on a CPU
        with torch.device(device):
            return LlamaForSequenceClassification(config), tokenizer
    except Exception as exc:  # noqa: BLE001 - any failure here only costs the faster start
        print(f"warning: building the model on {device} failed ({exc!r}); building it on the CPU", file=sys.stderr)
    torch.manual_seed(0)
    return LlamaForSequenceClassification(config).to(device), tokenizer


def profiled(fn, device: str, top: int = 12) -> dict:
    """Runs fn() once under torch.profiler and says where the time went: the top ops by self time on the GPU
    (CUDA) or on the CPU, with the wall time, so that a GPU busy for a fraction of the wall time shows up."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    try:
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            fn()
            sync()
    except Exception as exc:  # noqa: BLE001 - a profiler that fails must not cost the timings already taken
        print(f"warning: profiling failed: {exc!r}", file=sys.stderr)
        return {"error": repr(exc)[:500], "top": []}
    wall = time.perf_counter() - start
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted((e for e in prof.key_averages() if getattr(e, key, 0) > 0), key=lambda e: -getattr(e, key))
    total = sum(getattr(e, key) for e in events) / 1000
    rows = [{"op": e.key[:80], "self_ms": round(getattr(e, key) / 1000, 3),
             "pct": round(100 * getattr(e, key) / 1000 / total, 1) if total else 0.0, "calls": e.count}
            for e in events[:top]]
    summary = {"sort_by": key, "wall_ms": round(wall * 1000, 1), "total_self_ms": round(total, 1),
               "busy_pct_of_wall": round(100 * total / (wall * 1000), 1) if cuda and wall else None, "top": rows}
    print(f"profile, top ops by {key} (wall {summary['wall_ms']} ms, total self {summary['total_self_ms']} ms):")
    for row in rows:
        print(f"  {row['self_ms']:>10.2f} ms {row['pct']:>5.1f}% {row['calls']:>7}  {row['op']}")
    return summary


def with_target(row: dict, target: float, higher_is_better: bool) -> dict:
    """A result row with a speed target for llmclf's figure and whether it was met."""
    met = row["llmclf"] >= target if higher_is_better else row["llmclf"] <= target
    return {**row, "target": target, "met": bool(met)}
