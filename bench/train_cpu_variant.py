"""bench/train_cpu.py's child side: the variants (what each changes from the recipe), the batches every variant
trains on, and one variant trained and measured in this process (`train_cpu.py --only ID`)."""

from __future__ import annotations

import os
import random
import resource
import statistics
import time
from pathlib import Path

from common import IMDB, IMDB_TEXTS_ENV, imdb_texts
from llmclf.precision import resolve_precision

LABELS = {0: "neg", 1: "pos"}
MEGABATCH = 50  # transformers' group_by_length sorts megabatches of 50 batches

# id -> what the variant changes from the recipe; `cost` is its rough time relative to the recipe's, for the
# estimate only. `batch_mult` trains on the same reviews in batches that many times larger (fewer steps).
VARIANTS: dict[str, dict] = {
    # the recipe as `llmclf train` runs it on this CPU: bf16 where it is native, else float32 throughout
    # (precision auto), so that a CPU without bf16 units compares its variants with what it would really train
    "recipe": dict(name="recipe (LoRA top-{top}, {precision}, padded, batch {batch})", cost=1.0),
    # the bf16 recipe whatever the CPU: on one without native bf16 it shows what oneDNN's emulation costs
    "recipe-bf16": dict(name="recipe in bf16 weights whatever the CPU (LoRA top-{top}, padded)", cost=6.0),
    "full": dict(name="full fine-tuning (bf16 autocast, fp32 weights)", tuning="full", weights="fp32", cost=2.5),
    "lora-all": dict(name="LoRA all layers (bf16 weights)", top_layers=None, cost=1.5),
    "lora-top4": dict(name="LoRA top-4", top_layers=4, cost=0.8),
    "packed": dict(name="LoRA top-{top} packed", layout="packed", cost=1.0),
    "fp32-weights": dict(name="LoRA top-{top} bf16 autocast over fp32 weights", weights="fp32", cost=1.1),
    # what `llmclf train` runs on a CPU without native bf16 (precision auto = fp32): no bf16 anywhere
    "fp32": dict(name="LoRA top-{top}, float32 throughout (no autocast)", weights="fp32", autocast=False, cost=1.0),
    "fp32-top4": dict(name="LoRA top-4, float32 throughout", weights="fp32", autocast=False, top_layers=4, cost=0.8),
    "fp32-packed": dict(name="LoRA top-{top} packed, float32 throughout", weights="fp32", autocast=False,
                        layout="packed", cost=1.0),
    # `llmclf train --torch-compile` on a CPU without native bf16 (dynamic shapes, as accelerate compiles)
    "fp32-compile-dynamic": dict(name="LoRA top-{top}, float32 throughout + torch.compile (dynamic shapes)",
                                 weights="fp32", autocast=False, compile=True, dynamic=True, cost=1.0),
    "fp32-top4-compile-dynamic": dict(name="LoRA top-4, float32 throughout + torch.compile (dynamic shapes)",
                                      weights="fp32", autocast=False, top_layers=4, compile=True, dynamic=True,
                                      cost=0.8),
    "compile": dict(name="LoRA top-{top} + torch.compile (inductor, padded to max_length)", compile=True,
                    layout="max_length", cost=1.1),
    "threads-1": dict(name="LoRA top-{top}, threads=1", threads=1, cost=1.8),
    "checkpointing": dict(name="LoRA top-{top} + gradient checkpointing", checkpointing=True, cost=1.3),
    "batch-x2": dict(name="LoRA top-{top}, batch {batch2} (same reviews, half the steps)", batch_mult=2, cost=1.0),
    # the recipe before 2026-12-02: PEFT casting each adapter's bf16 input to float32, autocast casting it back
    "input-casts": dict(name="LoRA top-{top}, adapter inputs cast to float32 and back (PEFT's default)",
                        input_casts=True, cost=1.1),
    # not in the default set: torch.compile without the padding to max_length (4 compiles, or dynamic shapes)
    "compile-multiple": dict(name="LoRA top-{top} + torch.compile (inductor, padded to a multiple of 64)",
                             compile=True, cost=1.0),
    "compile-dynamic": dict(name="LoRA top-{top} + torch.compile (inductor, dynamic shapes, padded to 64)",
                            compile=True, dynamic=True, cost=1.0),
}
SMOKE_TEXTS = [
    ("A wonderful film: the acting is superb and the story moves.", 1),
    ("Dull, slow and far too long. I left before the end.", 0),
    ("The plot dragged, but the acting was superb.", 1),
    ("Terrible script, worse direction, and the jokes all fall flat in every single scene of it.", 0),
    ("I loved every minute.", 1),
    ("Not worth the ticket.", 0),
    ("A quiet, patient, beautifully shot story about two brothers and the farm they cannot leave.", 1),
    ("Bad.", 0),
]


def spec_of(variant: str) -> dict:
    base = dict(tuning="lora", top_layers="recipe", weights="bf16", autocast=True, layout="padded", compile=False,
                threads=None, checkpointing=False, batch_mult=1, dynamic=False, input_casts=False)
    spec = {**base, **VARIANTS[variant]}
    if variant == "recipe" and resolve_precision("auto", "cpu") == "fp32":
        spec.update(weights="fp32", autocast=False)  # what precision auto gives `llmclf train` here
    return spec


def variant_name(variant: str, settings: dict) -> str:
    spec = spec_of(variant)
    precision = "bf16 weights" if spec["weights"] == "bf16" else "float32 throughout"
    return spec["name"].format(top=settings["lora_layers"], batch=settings["batch"], batch2=2 * settings["batch"],
                               precision=precision)


# ---------------------------------------------------------------------------------------------------- the data

def labelled_reviews(n: int, seed: int) -> tuple[list[str], list[int]]:
    """n IMDb reviews with their labels, the first n of a fixed shuffled order of the whole file (the file is
    sorted by label). From $LLMCLF_BENCH_IMDB or ../shared like every speed run; a file without labels (or the
    synthetic fallback) gets seeded random ones: the speed does not depend on them."""
    source = Path(os.environ.get(IMDB_TEXTS_ENV) or IMDB)
    labels = None
    if source.suffix == ".parquet" and source.is_file():
        import pandas as pd

        frame = pd.read_parquet(source)
        texts = frame["text"].tolist()
        labels = [int(x) for x in frame["label"]] if "label" in frame else None
    else:
        texts = imdb_texts(25_000)
    rng = random.Random(seed)
    if labels is None:
        labels = [rng.randrange(2) for _ in texts]
    order = list(range(len(texts)))
    rng.shuffle(order)
    order = [order[i % len(order)] for i in range(n)]
    return [texts[i] for i in order], [labels[i] for i in order]


def prepare_data(settings: dict) -> dict:
    """The tokenized megabatch, sorted by length (longest first): {ids, labels, pad_id}."""
    from llmclf.models import load_backbone, load_tokenizer, resolve_backbone

    if settings["smoke"]:
        tokenizer = load_backbone(settings["model"], LABELS)[1]
        n = MEGABATCH * settings["batch"]
        texts = [SMOKE_TEXTS[i % len(SMOKE_TEXTS)][0] for i in range(n)]
        labels = [SMOKE_TEXTS[i % len(SMOKE_TEXTS)][1] for i in range(n)]
    else:
        tokenizer = load_tokenizer(resolve_backbone(settings["model"]))
        texts, labels = labelled_reviews(MEGABATCH * settings["batch"], settings["seed"])
    ids = [x[: settings["max_length"]] for x in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    return {"ids": [ids[i] for i in order], "labels": [labels[i] for i in order], "pad_id": tokenizer.pad_token_id}


def batch_plan(data: dict, batch: int, count: int, seed: int) -> list[list[int]]:
    """`count` batches of `batch` consecutive reviews of the length-sorted megabatch, evenly spread over it, in a
    fixed shuffled order (the same for every batch size, so that x2 batches cover the same reviews)."""
    chunks = [list(range(i, i + batch)) for i in range(0, len(data["ids"]) - batch + 1, batch)]
    if count > len(chunks):
        raise SystemExit(f"{count} batches of {batch} asked for, the megabatch holds {len(chunks)}")
    picked = [chunks[round(k * (len(chunks) - 1) / max(count - 1, 1))] for k in range(count)]
    random.Random(seed).shuffle(picked)
    return picked


def plans(data: dict, settings: dict, batch_mult: int) -> tuple[list[list[int]], int]:
    """(batches, warmup) for a variant: the recipe's batches, or for batch_mult 2 the same reviews paired."""
    base = batch_plan(data, settings["batch"], settings["warmup"] + settings["steps"], settings["seed"])
    if batch_mult == 1:
        return base, settings["warmup"]
    # The same reviews, grouped by length again within each group of batch_mult batches' worth: pairs of
    # neighbouring recipe batches by length, so that the padding stays as group_by_length would have it.
    by_length = sorted(base, key=lambda b: b[0])
    merged = [sum(by_length[i : i + batch_mult], []) for i in range(0, len(by_length) - batch_mult + 1, batch_mult)]
    random.Random(settings["seed"]).shuffle(merged)
    warmup = max(1, settings["warmup"] // batch_mult) if settings["warmup"] else 0
    return merged, min(warmup, len(merged) - 1)


# --------------------------------------------------------------------------------------- one variant, measured

def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def collate(data: dict, rows: list[int], layout: str, settings: dict) -> dict:
    import torch

    ids = [data["ids"][i] for i in rows]
    labels = torch.tensor([data["labels"][i] for i in rows], dtype=torch.long)
    pad_id, max_length, multiple = data["pad_id"], settings["max_length"], settings["pad_to_multiple_of"]
    if layout == "packed":
        from llmclf.packing import PackedCollator

        batch = PackedCollator(pad_id, max_length, multiple)([{"input_ids": x} for x in ids])
        return {**batch, "labels": labels, "useful": sum(map(len, ids))}
    longest = max(map(len, ids))
    width = max_length if layout == "max_length" else min(-(-longest // multiple) * multiple, max(longest, max_length))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        input_ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "useful": sum(map(len, ids))}


def build_model(spec: dict, settings: dict):
    import torch

    from llmclf.models import add_lora, load_backbone

    model, _ = load_backbone(settings["model"], LABELS, seed=settings["seed"],
                             dtype=torch.bfloat16 if spec["weights"] == "bf16" else None)
    layers = model.config.num_hidden_layers
    top = settings["lora_layers"] if spec["top_layers"] == "recipe" else spec["top_layers"]
    top = None if top is None else min(top, layers)  # the smoke model has 2 layers
    if spec["tuning"] == "lora":
        torch.manual_seed(settings["seed"])  # the same LoRA initialisation in every variant
        # as `llmclf train` adds it: a bf16 backbone runs under autocast, so the adapters' inputs stay bf16
        model = add_lora(model, settings["lora_r"], settings["lora_alpha"], settings["lora_dropout"], top_layers=top,
                         under_autocast=spec["weights"] == "bf16" and spec["autocast"] and not spec["input_casts"])
    # what the first forward with labels would set: set before, so that torch.compile does not recompile for it
    (model.get_base_model() if hasattr(model, "get_base_model") else model).config.problem_type = \
        "single_label_classification"
    if spec["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, {"layers": layers, "lora_layers": top if spec["tuning"] == "lora" else None}


def run_variant(variant: str, settings: dict, data: dict) -> dict:
    """Trains one variant (model built fresh) and measures it, in this process."""
    import torch

    spec = spec_of(variant)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    row = {"id": variant, "variant": variant_name(variant, settings), "threads": torch.get_num_threads(),
           "batch": settings["batch"] * spec["batch_mult"], "layout": spec["layout"], "weights": spec["weights"],
           "autocast_bf16": spec["autocast"], "tuning": spec["tuning"], "compile": spec["compile"],
           "gradient_checkpointing": spec["checkpointing"], "rss_before_load_mb": round(max_rss_mb(), 1)}
    started = time.perf_counter()
    model, shape = build_model(spec, settings)
    row.update(shape)
    row["load_s"] = round(time.perf_counter() - started, 2)
    row["rss_after_load_mb"] = round(max_rss_mb(), 1)
    params = [p for p in model.parameters() if p.requires_grad]
    row["trainable_params"] = sum(p.numel() for p in params)
    # Trainer's AdamW: no weight decay on biases and norms; gradients clipped at max_grad_norm 1.0
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": settings["weight_decay"]},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=settings["learning_rate"])
    batches, warmup = plans(data, settings, spec["batch_mult"])
    batches = [collate(data, rows, spec["layout"], settings) for rows in batches]
    forward = model
    if spec["compile"]:
        if spec["layout"] == "packed":
            raise ValueError("compile with packing is not measured here (the head hook changes per call)")
        forward = torch.compile(model, backend="inductor", dynamic=spec["dynamic"])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["autocast"])

    def loss_of(batch: dict):
        with autocast:
            if spec["layout"] == "packed":
                from llmclf.packing import packed_logits

                logits = packed_logits(model, batch["input_ids"], batch["position_ids"], batch["text_ends"])
                return torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
            return forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).loss

    def train_step(batch: dict) -> float:
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    if spec["compile"]:
        # Compilation before the warmup, once per distinct shape (dynamic=False compiles each one; dynamic=True
        # once): a forward and backward without an optimizer step, so the weights stay those every other variant
        # starts from. Inductor's caches are empty (the parent gives each process its own): a cold compile.
        from torch._dynamo.utils import counters

        started = time.perf_counter()
        shapes = {}
        for batch in batches:
            shapes.setdefault(tuple(batch["input_ids"].shape) if not spec["dynamic"] else "any", batch)
        for batch in shapes.values():
            loss_of(batch).backward()
            optimizer.zero_grad(set_to_none=True)
        row["compile_s"] = round(time.perf_counter() - started, 2)
        row["compiled_shapes"] = [list(s) if s != "any" else s for s in shapes]
        row["unique_graphs"] = int(counters["stats"].get("unique_graphs", 0))
        row["graph_breaks"] = int(sum(counters["graph_break"].values()))

    losses, step_s, useful, padded = [], [], [], []
    for batch in batches:
        started = time.perf_counter()
        losses.append(train_step(batch))
        step_s.append(time.perf_counter() - started)
        useful.append(batch["useful"])
        padded.append(batch["input_ids"].numel())
    timed = slice(warmup, None)
    seconds, tokens = sum(step_s[timed]), sum(useful[timed])
    if spec["compile"]:  # a recompile during the timed steps would show here
        row["unique_graphs_after_timing"] = int(counters["stats"].get("unique_graphs", 0))
    row.update({
        "warmup_steps": warmup, "timed_steps": len(step_s[timed]), "timed_s": round(seconds, 3),
        "useful_tokens": tokens, "pad_fraction": round(1 - tokens / sum(padded[timed]), 4),
        "useful_tokens_per_s": round(tokens / seconds, 1), "steps_per_s": round(len(step_s[timed]) / seconds, 4),
        "reviews_per_s": round(len(step_s[timed]) * row["batch"] / seconds, 3),
        "median_step_tokens_per_s": round(statistics.median(u / s for u, s in zip(useful[timed], step_s[timed])), 1),
        "step_s": [round(s, 3) for s in step_s],
        "first_loss": round(losses[0], 5), "final_loss": round(losses[-1], 5),
        "mean_timed_loss": round(statistics.fmean(losses[timed]), 5),
        "peak_rss_mb": round(max_rss_mb(), 1),
    })
    return row
