"""Training speed on one GPU: the model card's recipe with plain transformers (every review padded to 512,
batch 8, AdamW; fp32 as written, and with bf16 autocast) against llmclf's fast path (bf16, the batch's reviews
packed into rows of 512 with per-review pooling, fused AdamW), on the same IMDb reviews, in one run.

    python bench/train_speed.py --model llama-3.2-1b-shape      # the 1B shape: the GPU training-speed target
    python bench/train_speed.py --model smollm2-135m
    python bench/train_speed.py --smoke                         # a tiny model on the CPU: checks the script only

Measures useful (non-pad) tokens/s, reviews/s and peak memory per configuration, checks that the packed loss
equals the padded loss on the same batch, prints a table and writes bench/results/train_speed-<model>-<date>.json
(`train_speed-smoke-<model>-<date>.json` with --smoke). Rows to which a GPU speed target applies carry `target` and
`met`; `--profile` adds, per configuration, the top ops of a few profiled steps (torch.profiler), to show where
the time goes.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import RESULTS, imdb_texts, machine, profiled, speed_model, speed_tokenizer, with_target, write_result

# the GPU speed targets: the Llama-3.2-1B shape's fast path, and an epoch of the card's 20,000 reviews on SmolLM2
TARGET_TOKENS_PER_S = {"llama-3.2-1b-shape": 60_000}
TARGET_SPEEDUP_VS_FP32 = {"llama-3.2-1b-shape": 15.0}
TARGET_EPOCH_S = {"smollm2-135m": 30.0}
EPOCH_REVIEWS = 20_000


def padded_batch(ids: list[list[int]], pad_id: int, width: int, device: str) -> dict:
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def step_loss(model, layout: str, ids: list[list[int]], labels: torch.Tensor, pad_id: int, max_length: int):
    from llmclf.packing import PackedCollator, packed_logits

    device = labels.device
    if layout == "packed":
        batch = PackedCollator(pad_id, max_length, 64)([{"input_ids": x} for x in ids])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = packed_logits(model, batch["input_ids"], batch["position_ids"], batch["text_ends"])
        return torch.nn.functional.cross_entropy(logits.float(), labels)
    return model(**padded_batch(ids, pad_id, max_length, device), labels=labels).loss


def run(config: dict, model_name: str, ids: list[list[int]], pad_id: int, args, device: str) -> dict:
    model, _ = speed_model(model_name, device)
    model.train()
    fused = config["fused"] and device == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=fused)
    per_step = config["batch"]
    batches = [ids[i : i + per_step] for i in range(0, len(ids) - per_step + 1, per_step)]
    steps = min(len(batches), args.warmup + args.steps)
    generator = torch.Generator().manual_seed(0)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=config["bf16"])

    def train_step(batch: list[list[int]]) -> None:
        labels = torch.randint(0, 2, (len(batch),), generator=generator).to(device)
        with autocast:
            loss = step_loss(model, config["layout"], batch, labels, pad_id, args.max_length)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start, useful = None, 0
    for step in range(steps):
        if step == args.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start, useful, reviews = time.perf_counter(), 0, 0
        train_step(batches[step])
        if start is not None:
            useful += sum(len(x) for x in batches[step])
            reviews += len(batches[step])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    result = {"tokens_per_s": useful / seconds, "reviews_per_s": reviews / seconds, "peak_gib": peak}
    if args.profile:  # after the timing, on the first batches again: the profiler's overhead is not timed
        result["profile"] = profiled(lambda: [train_step(batches[i % len(batches)]) for i in range(3)], device)
        result["profile"]["steps"] = 3
    model = optimizer = None  # free them before the next variant loads (train_step still holds the cells)
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def loss_check(model_name: str, ids, pad_id: int, max_length: int, device: str) -> float:
    """|packed - padded| loss on one batch of 8 reviews, fp32: the fast path computes the same thing."""
    model, _ = speed_model(model_name, device)
    model.eval()
    labels = torch.tensor([0, 1] * 4, device=device)
    with torch.no_grad():
        return abs(float(step_loss(model, "packed", ids[:8], labels, pad_id, max_length))
                   - float(step_loss(model, "padded", ids[:8], labels, pad_id, max_length)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.2-1b-shape", choices=("llama-3.2-1b-shape", "smollm2-135m", "tiny"))
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--fast-batch", type=int, default=16, help="reviews per step on the fast path")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 3 steps, CPU: checks that the script runs")
    parser.add_argument("--profile", action="store_true",
                        help="also profile 3 steps of each configuration (torch.profiler): top ops into the JSON")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args()
    result_name = f"train_speed-{args.model}"
    if args.smoke:  # the file keeps the model it stands in for, so smoke runs of both models do not collide
        result_name = f"train_speed-smoke-{args.model}"
        args.model, args.steps, args.warmup, args.max_length = "tiny", 3, 1, 64
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = speed_tokenizer(args.model)
    needed = max(8, args.fast_batch) * (args.warmup + args.steps)
    ids = [x[: args.max_length] for x in tokenizer(imdb_texts(needed), add_special_tokens=True)["input_ids"]]
    pad_id = tokenizer.pad_token_id
    configs = {
        "card recipe fp32 (pad 512, batch 8, AdamW)": dict(bf16=False, layout="padded", batch=8, fused=False),
        "card recipe bf16 (pad 512, batch 8, AdamW)": dict(bf16=True, layout="padded", batch=8, fused=False),
        f"llmclf (bf16, packed rows, batch {args.fast_batch}, fused AdamW)":
            dict(bf16=True, layout="packed", batch=args.fast_batch, fused=True),
    }
    results = {}
    print(f"{'configuration':<58} {'tokens/s':>9} {'reviews/s':>9} {'peak GiB':>8}")
    for name, config in configs.items():
        results[name] = run(config, args.model, ids, pad_id, args, device)
        r = results[name]
        print(f"{name:<58} {r['tokens_per_s']:>9.0f} {r['reviews_per_s']:>9.2f} {r['peak_gib']:>8.2f}", flush=True)
    profiles = {name: r.pop("profile") for name, r in results.items() if "profile" in r}
    base_fp32, base_bf16, fast = results.values()
    rows = []
    for label, base in (("card recipe fp32", base_fp32), ("card recipe bf16", base_bf16)):
        tokens = {"metric": f"useful tokens/s vs {label}", "unit": "tokens/s",
                  "baseline": round(base["tokens_per_s"], 1), "llmclf": round(fast["tokens_per_s"], 1)}
        if args.model in TARGET_TOKENS_PER_S:
            tokens = with_target(tokens, TARGET_TOKENS_PER_S[args.model], higher_is_better=True)
        rows += [
            tokens,
            {"metric": f"reviews/s vs {label}", "unit": "reviews/s", "baseline": round(base["reviews_per_s"], 2),
             "llmclf": round(fast["reviews_per_s"], 2)},
            {"metric": f"peak memory vs {label}", "unit": "GiB", "baseline": round(base["peak_gib"], 2),
             "llmclf": round(fast["peak_gib"], 2)},
        ]
    speedup = {"metric": "speed-up over the card recipe as written (fp32), useful tokens/s", "unit": "x",
               "baseline": 1.0, "llmclf": round(fast["tokens_per_s"] / base_fp32["tokens_per_s"], 2)}
    if args.model in TARGET_SPEEDUP_VS_FP32:
        speedup = with_target(speedup, TARGET_SPEEDUP_VS_FP32[args.model], higher_is_better=True)
    epoch = {"metric": f"epoch of {EPOCH_REVIEWS} reviews vs card recipe bf16, estimated from the timed steps",
             "unit": "s", "baseline": round(EPOCH_REVIEWS / base_bf16["reviews_per_s"], 1),
             "llmclf": round(EPOCH_REVIEWS / fast["reviews_per_s"], 1)}
    if args.model in TARGET_EPOCH_S:
        epoch = with_target(epoch, TARGET_EPOCH_S[args.model], higher_is_better=False)
    rows += [speedup, epoch]
    difference = loss_check(args.model, ids, pad_id, args.max_length, device)
    print(f"|packed loss - padded loss| on one batch, fp32: {difference:.2e}")
    info = machine()
    if device == "cuda":
        info["device"] = torch.cuda.get_device_name()
    result = {
        "bench": "train_speed", **info, "model": args.model, "max_length": args.max_length, "steps": args.steps,
        "data": "IMDb reviews (SmolLM2 tokenizer), truncated to max_length", "configurations": results,
        "packed_vs_padded_loss_difference": difference, "rows": rows, "smoke": args.smoke,
    }
    if profiles:
        result["profile"] = profiles
    write_result(result_name, result, args.results_dir)


if __name__ == "__main__":
    main()
