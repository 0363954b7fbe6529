"""Training speed on the CPU (issue 13): the recipe that trained the shipped `imdb-sentiment` model against the
settings that could make a CPU run faster, on the same IMDb reviews, each in the same run.

    python bench/train_cpu.py                          # the default variants: about 7 minutes on 2 idle cores
    python bench/train_cpu.py --variants recipe,lora-top4,compile --steps 3 --results-dir /tmp
    python bench/train_cpu.py --only packed --json-out /tmp/row.json   # one variant, in this process
    python bench/train_cpu.py --smoke                  # tiny model, a few texts, 3 variants: checks the script only
    python bench/train_cpu.py --list                   # the variants and what each changes

The baseline row is the recipe of src/llmclf/configs/imdb-sentiment.yaml (read from the file: SmolLM2-135M, LoRA
r16/alpha 32 on the top 12 of 30 layers, frozen backbone in bf16 with float32 trainables, bf16 autocast as
`llmclf train` gives it, batches grouped by length and padded to their longest text rounded up to 64, AdamW with
weight decay, gradient clipping at 1.0 as transformers' Trainer does). Every other row changes one thing.

Batches are formed as transformers' group_by_length forms them: the first 50 x batch reviews of a fixed
shuffled order (one "megabatch"), sorted by length, cut into batches; warmup + steps of those batches, evenly
spread over the lengths, in a fixed shuffled order. Every variant trains on the same batches in the same order
(a larger batch on the same reviews in fewer steps), from the same initial weights: `first_loss` agrees across
rows to bf16 rounding, which checks that.

Each variant runs in its own subprocess (`--only ID --json-out FILE`), so peak RSS (ru_maxrss, which only grows)
and torch.compile state are its own. A row: useful (non-pad) tokens/s over the timed steps, steps/s, the median
of the per-step rates (steadier on a shared CPU), peak RSS, the first and final losses, load and compile time.
Writes bench/results/train_cpu-<date>.json (train_cpu-smoke-<date>.json with --smoke, train_cpu-TAG-<date>.json
with --tag TAG). The fp32* rows (not in the default set) are what a CPU without native bf16 trains in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import IMDB, IMDB_TEXTS_ENV, RESULTS, imdb_texts, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
RECIPE_FILE = ROOT / "src" / "llmclf" / "configs" / "imdb-sentiment.yaml"
LABELS = {0: "neg", 1: "pos"}
MEGABATCH = 50  # transformers' group_by_length sorts megabatches of 50 batches
TARGET_SPEEDUP = 2.0  # issue 13: at least 2x the recipe's useful tokens/s
# Planning figures for the time estimate printed at the start (2-core development CPU, measured once): the
# recipe's useful tokens/s, a fresh process's imports + model load, and inductor's compile of one shape.
RECIPE_TOKENS_PER_S = 1000.0
START_S = 10.0
COMPILE_S = 80.0

# id -> what the variant changes from the recipe; `cost` is its rough time relative to the recipe's, for the
# estimate only. `batch_mult` trains on the same reviews in batches that many times larger (fewer steps).
VARIANTS: dict[str, dict] = {
    "recipe": dict(name="recipe (LoRA top-{top}, bf16 weights, padded, batch {batch})", cost=1.0),
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
    "compile": dict(name="LoRA top-{top} + torch.compile (inductor, padded to max_length)", compile=True,
                    layout="max_length", cost=1.1),
    "threads-1": dict(name="LoRA top-{top}, threads=1", threads=1, cost=1.8),
    "checkpointing": dict(name="LoRA top-{top} + gradient checkpointing", checkpointing=True, cost=1.3),
    "batch-x2": dict(name="LoRA top-{top}, batch {batch2} (same reviews, half the steps)", batch_mult=2, cost=1.0),
    # not in the default set: torch.compile without the padding to max_length (4 compiles, or dynamic shapes)
    "compile-multiple": dict(name="LoRA top-{top} + torch.compile (inductor, padded to a multiple of 64)",
                             compile=True, cost=1.0),
    "compile-dynamic": dict(name="LoRA top-{top} + torch.compile (inductor, dynamic shapes, padded to 64)",
                            compile=True, dynamic=True, cost=1.0),
}
# the float32 rows are for CPUs without native bf16 (run them with --variants)
DEFAULT_VARIANTS = [v for v in VARIANTS if v not in ("compile-multiple", "compile-dynamic")
                    and not v.startswith("fp32") or v == "fp32-weights"]
SMOKE_VARIANTS = ["recipe", "full", "packed"]
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
                threads=None, checkpointing=False, batch_mult=1, dynamic=False)
    return {**base, **VARIANTS[variant]}


def variant_name(variant: str, settings: dict) -> str:
    return spec_of(variant)["name"].format(top=settings["lora_layers"], batch=settings["batch"],
                                           batch2=2 * settings["batch"])


def read_recipe() -> dict:
    import yaml

    return yaml.safe_load(RECIPE_FILE.read_text())


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
        model = add_lora(model, settings["lora_r"], settings["lora_alpha"], settings["lora_dropout"], top_layers=top)
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


# ------------------------------------------------------------------------------------ the run: one process each

def cpu_description() -> dict:
    """The CPU model, cores and bf16 matrix units, from /proc/cpuinfo (and what torch sees)."""
    import torch

    from llmclf.precision import native_bf16

    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return {"cpu_model": model, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "bf16_flags": sorted(f for f in flags if f.startswith("amx") or f in ("avx512_bf16", "avx512_fp16")),
            "amx": bool(torch.cpu._is_amx_tile_supported()), "native_bf16": native_bf16("cpu"),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}


def estimate_s(variants: list[str], data: dict, settings: dict, recipe_rate: float = RECIPE_TOKENS_PER_S) -> float:
    """Seconds the variants should take: process start and model load, training at `recipe_rate` useful tokens/s
    times each variant's relative cost, and cold compiles."""
    if settings["smoke"]:
        return 10.0 * len(variants)
    per_step = statistics.fmean(map(len, data["ids"])) * settings["batch"]
    train = per_step * (settings["warmup"] + settings["steps"]) / recipe_rate
    compiles = {v: 0 if not spec_of(v)["compile"] else 1 if spec_of(v)["dynamic"] or spec_of(v)["layout"] == "max_length"
                else 4 for v in variants}  # padded to 64, at most 256 tokens: 4 widths
    return sum(START_S + train * spec_of(v)["cost"] + COMPILE_S * compiles[v] for v in variants)


def child_command(variant: str, settings: dict, data_file: Path, out: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--only", variant, "--json-out", str(out),
               "--data-file", str(data_file), "--steps", str(settings["steps"]), "--warmup", str(settings["warmup"]),
               "--batch", str(settings["batch"]), "--max-length", str(settings["max_length"])]
    return command + (["--smoke"] if settings["smoke"] else [])


def run_all(variants: list[str], settings: dict, args, on_row=lambda rows: None) -> list[dict]:
    """Every variant in its own process, in order; on_row(rows so far) after each."""
    data = prepare_data(settings)
    print(f"{len(variants)} variants, {settings['warmup']} + {settings['steps']} steps of {settings['batch']} reviews "
          f"each (mean {statistics.fmean(map(len, data['ids'])):.0f} tokens, truncated to {settings['max_length']}); "
          f"estimated {estimate_s(variants, data, settings) / 60:.1f} min on {os.cpu_count()} idle cores (a recipe at "
          f"{RECIPE_TOKENS_PER_S:.0f} tokens/s)", flush=True)
    rows = []
    header = f"{'variant':<70} {'tokens/s':>9} {'steps/s':>8} {'peak MB':>8} {'loss':>7} {'x recipe':>8}"
    with tempfile.TemporaryDirectory(prefix="train_cpu-") as tmp:
        data_file = Path(tmp) / "data.json"
        data_file.write_text(json.dumps(data))
        print(header, flush=True)
        for variant in variants:
            out = Path(tmp) / f"{variant}.json"
            started = time.perf_counter()
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / f"inductor-{variant}")}
            try:
                done = subprocess.run(child_command(variant, settings, data_file, out), capture_output=True, text=True,
                                      timeout=args.variant_timeout, cwd=Path(__file__).parent, env=env)
                if out.is_file():
                    row = json.loads(out.read_text())
                    if "error" in row:
                        row["stderr_tail"] = done.stderr.strip()[-1000:]
                else:
                    row = {"id": variant, "variant": variant_name(variant, settings),
                           "error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-1500:]}"}
            except subprocess.TimeoutExpired:
                row = {"id": variant, "variant": variant_name(variant, settings),
                       "error": f"timed out after {args.variant_timeout} s"}
            row["process_s"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            recipe = next((r for r in rows if r["id"] == "recipe" and "useful_tokens_per_s" in r), None)
            print(table_line(row, recipe), flush=True)
            on_row(rows)
            if row is recipe and not settings["smoke"] and len(variants) > 1:
                rest = estimate_s(variants[len(rows):], data, settings, max(recipe["useful_tokens_per_s"], 1.0))
                print(f"  (the recipe ran at {recipe['useful_tokens_per_s']:.0f} tokens/s: about {rest / 60:.1f} min "
                      "more for the rest)", flush=True)
    return rows


def table_line(row: dict, recipe: dict | None) -> str:
    if "useful_tokens_per_s" not in row:
        last = ([line for line in row.get("error", "?").splitlines() if line.strip()] or ["?"])[-1]
        return f"{row['variant'][:70]:<70} failed: {last[:300]}"
    speedup = f"{row['useful_tokens_per_s'] / recipe['useful_tokens_per_s']:.2f}" if recipe else "-"
    return (f"{row['variant'][:70]:<70} {row['useful_tokens_per_s']:>9.0f} {row['steps_per_s']:>8.3f} "
            f"{row['peak_rss_mb']:>8.0f} {row['final_loss']:>7.4f} {speedup:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", help=f"comma-separated ids (default: {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--only", help="run this one variant in this process and write its row (--json-out)")
    parser.add_argument("--json-out", help="with --only: where the row goes (else printed)")
    parser.add_argument("--data-file", help="with --only: the tokenized batches a parent prepared")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps before them")
    parser.add_argument("--batch", type=int, help="reviews per step (default: the recipe's batch_size)")
    parser.add_argument("--max-length", type=int, help="tokens per review (default: the recipe's max_length)")
    parser.add_argument("--variant-timeout", type=int, default=900, help="seconds before a variant is given up")
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few texts, 2 steps, 3 variants")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--tag", help="results file train_cpu-TAG-<date>.json (keeps another CPU's file of the day)")
    args = parser.parse_args()
    recipe = read_recipe()
    if args.list:
        shown = {"lora_layers": recipe["lora_layers"], "batch": args.batch or recipe["batch_size"]}
        for variant in VARIANTS:
            print(f"{variant:<18} {'' if variant in DEFAULT_VARIANTS else '(not default) '}"
                  f"{variant_name(variant, shown)}")
        return
    if args.smoke:
        args.steps, args.warmup = 2, 1
        args.batch, args.max_length = args.batch or 4, args.max_length or 64
    settings = {
        "model": "tiny-random-llama" if args.smoke else recipe["model"], "smoke": args.smoke,
        "batch": args.batch or recipe["batch_size"], "max_length": args.max_length or recipe["max_length"],
        "warmup": args.warmup, "steps": args.steps, "pad_to_multiple_of": recipe["pad_to_multiple_of"],
        "learning_rate": recipe["learning_rate"], "weight_decay": recipe["weight_decay"],
        "lora_r": recipe["lora_r"], "lora_alpha": recipe["lora_alpha"], "lora_dropout": recipe["lora_dropout"],
        "lora_layers": 1 if args.smoke else recipe["lora_layers"], "seed": recipe["seed"], "max_grad_norm": 1.0,
        "group_by_length": f"megabatches of {MEGABATCH} batches, sorted by length",
        "recipe_file": str(RECIPE_FILE.relative_to(ROOT)),
    }
    if args.only:
        if args.only not in VARIANTS:
            raise SystemExit(f"--only {args.only}: unknown variant; known: {', '.join(VARIANTS)}")
        data = json.loads(Path(args.data_file).read_text()) if args.data_file else prepare_data(settings)
        try:
            row = run_variant(args.only, settings, data)
        except Exception as exc:  # noqa: BLE001 - a variant that fails (a compile error...) is a row that says so
            import traceback

            traceback.print_exc()
            row = {"id": args.only, "variant": variant_name(args.only, settings), "error": repr(exc)[:1500],
                   "traceback_tail": traceback.format_exc()[-1500:], "peak_rss_mb": round(max_rss_mb(), 1)}
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(row, indent=2))
        else:
            print(json.dumps(row, indent=2))
        return
    variants = (args.variants.split(",") if args.variants else SMOKE_VARIANTS if args.smoke else DEFAULT_VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if "recipe" not in variants:
        variants = ["recipe"] + variants  # the baseline is measured in the same run as every variant
        print("note: the recipe (the baseline) is always measured; added it", file=sys.stderr)
    started, load_before = time.perf_counter(), os.getloadavg()
    info = machine()
    cpu = cpu_description()
    info["device"] = (f"{cpu['cpu_model']}, {cpu['cores']} cores, "
                      f"{', '.join(cpu['bf16_flags']) or 'no bf16 units'}" + (", AMX" if cpu["amx"] else ""))
    name = ("train_cpu-smoke" if args.smoke else "train_cpu") + (f"-{args.tag}" if args.tag else "")
    Path(args.results_dir).mkdir(parents=True, exist_ok=True)
    # The rows so far, after each variant: a run stopped half-way keeps what it measured.
    partial = Path(args.results_dir) / f"{name}-{info['date']}.partial.json"

    def write_partial(rows: list[dict]) -> None:
        partial.write_text(json.dumps({"bench": "train_cpu", **info, "settings": settings, "partial": True,
                                       "rows": rows}, indent=2) + "\n")

    rows = run_all(variants, settings, args, write_partial)
    recipe_row = next((r for r in rows if r["id"] == "recipe" and "useful_tokens_per_s" in r), None)
    for row in rows:
        if recipe_row and "useful_tokens_per_s" in row:
            row["speedup_vs_recipe"] = round(row["useful_tokens_per_s"] / recipe_row["useful_tokens_per_s"], 3)
    measured = [r for r in rows if "speedup_vs_recipe" in r]
    best = max(measured, key=lambda r: r["speedup_vs_recipe"], default=None)
    result = {
        "bench": "train_cpu", **info, "cpu": cpu, "settings": settings, "smoke": args.smoke,
        "data": ("a few short texts (smoke)" if args.smoke else
                 f"IMDb reviews ({os.environ.get(IMDB_TEXTS_ENV) or IMDB.relative_to(ROOT.parent)}), "
                 f"fixed shuffled order, {settings['model']} tokenizer, truncated to max_length"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
        "target": {"speedup_vs_recipe": TARGET_SPEEDUP, "fastest": best and best["variant"],
                   "fastest_speedup": best and best["speedup_vs_recipe"],
                   "met": bool(best and best["speedup_vs_recipe"] >= TARGET_SPEEDUP)},
        "rows": rows,
    }
    print(f"total {result['total_s']:.0f} s; load average before {result['load_average_before'][0]}, "
          f"after {result['load_average_after'][0]} (compare with {cpu['cores']} cores: above it, the CPU was shared)")
    write_result(name, result, args.results_dir)
    partial.unlink(missing_ok=True)
    if any("error" in r for r in rows):
        print("some variants failed: see their `error`", file=sys.stderr)


if __name__ == "__main__":
    main()
