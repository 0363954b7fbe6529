"""Prediction speed on one GPU: the model card's recipe (`Trainer.predict`, every review padded to 512, batch 64,
bf16 autocast) against llmclf's Classifier (bf16 weights, reviews sorted by length into batches, per-batch
padding), on the same IMDb reviews, in one run.

    python bench/predict_speed.py --model smollm2-135m --n 25000       # 25,000 predictions: the GPU prediction-speed target
    python bench/predict_speed.py --model llama-3.2-1b-shape --n 25000
    python bench/predict_speed.py --smoke                                # a tiny model on the CPU: checks the script

Prints a table (seconds, reviews/s, agreement of the two paths' labels) and writes
bench/results/predict_speed-<model>-<date>.json (`predict_speed-smoke-<model>-<date>.json` with --smoke). The time
row carries the GPU speed `target` (scaled to --n) and `met`; `--profile` adds the top ops (torch.profiler) of each
path on the first 512 reviews, written after the timed results (which are written first, in case it runs long).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import RESULTS, imdb_texts, machine, profiled, speed_model, with_target, write_result

# the GPU speed targets: seconds for llmclf to score 25,000 reviews
TARGET_S_PER_25K = {"smollm2-135m": 8.0, "llama-3.2-1b-shape": 35.0}
PROFILE_REVIEWS = 512


class Padded512:
    def __init__(self, encoded):
        self.rows = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in encoded["input_ids"]]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def card_predict(model, tokenizer, texts: list[str], max_length: int, device: str) -> np.ndarray:
    """The card's `Trainer.predict`: tokenized up front, padded to max_length, batch 64, bf16 autocast on CUDA."""
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, per_device_eval_batch_size=64, bf16=device == "cuda",
                                 use_cpu=device != "cuda", report_to=[], disable_tqdm=True)
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
        logits = Trainer(model=model, args=args, data_collator=collator).predict(Padded512(encoded)).predictions
    return torch.softmax(torch.as_tensor(logits).float(), -1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=("llama-3.2-1b-shape", "smollm2-135m", "tiny"))
    parser.add_argument("--n", type=int, default=25000, help="reviews to score")
    parser.add_argument("--batch-size", type=int, default=128, help="llmclf's batch size")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 64 reviews, CPU: checks that the script runs")
    parser.add_argument("--profile", action="store_true",
                        help=f"also profile both paths on {PROFILE_REVIEWS} reviews (torch.profiler) into the JSON")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args()
    result_name = f"predict_speed-{args.model}"
    if args.smoke:  # the file keeps the model it stands in for, so smoke runs of both models do not collide
        result_name = f"predict_speed-smoke-{args.model}"
        args.model, args.n, args.max_length = "tiny", 64, 64
    from llmclf.predict import Classifier

    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts = imdb_texts(args.n)
    model, tokenizer = speed_model(args.model, device)
    model.eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    card_predict(model, tokenizer, texts[:128], args.max_length, device)  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    base = card_predict(model, tokenizer, texts, args.max_length, device)
    sync()
    base_s = time.perf_counter() - start

    classifier = Classifier(model, tokenizer, max_length=args.max_length, batch_size=args.batch_size, device=device,
                            truncation="head", precision="bf16" if device == "cuda" else "auto")
    if classifier.bf16:
        classifier.model.to(torch.bfloat16)  # what Classifier.from_pretrained does with the weights it loads
    classifier.predict_proba(texts[:128])  # warm-up
    sync()
    start = time.perf_counter()
    ours = classifier.predict_proba(texts)
    sync()
    ours_s = time.perf_counter() - start

    agree = float((ours.argmax(1) == base.argmax(1)).mean())
    max_diff = float(np.abs(ours - base).max())
    print(f"{'path':<52} {'seconds':>8} {'reviews/s':>9}")
    print(f"{'card recipe: Trainer.predict, pad 512, batch 64':<52} {base_s:>8.2f} {len(texts) / base_s:>9.1f}")
    print(f"{f'llmclf: Classifier, length-sorted batch {args.batch_size}':<52} {ours_s:>8.2f} {len(texts) / ours_s:>9.1f}")
    print(f"label agreement {agree:.4f}, largest probability difference {max_diff:.4f}")
    info = machine()
    if device == "cuda":
        info["device"] = torch.cuda.get_device_name()
    timed = {"metric": f"time to score {len(texts)} reviews", "unit": "s", "baseline": round(base_s, 3),
             "llmclf": round(ours_s, 3)}
    if args.model in TARGET_S_PER_25K:
        timed = with_target(timed, round(TARGET_S_PER_25K[args.model] * len(texts) / 25000, 3), higher_is_better=False)
        timed["target_basis"] = f"{TARGET_S_PER_25K[args.model]} s per 25,000 reviews"
    result = {
        "bench": "predict_speed", **info, "model": args.model, "reviews": len(texts), "max_length": args.max_length,
        "data": "IMDb reviews", "smoke": args.smoke,
        "rows": [
            timed,
            {"metric": "throughput", "unit": "reviews/s", "baseline": round(len(texts) / base_s, 2),
             "llmclf": round(len(texts) / ours_s, 2)},
            {"metric": "label agreement with the card's path", "unit": "fraction", "baseline": 1.0,
             "llmclf": round(agree, 4)},
            {"metric": "largest probability difference from the card's path", "unit": "probability",
             "baseline": 0.0, "llmclf": round(max_diff, 4)},
        ],
    }
    write_result(result_name, result, args.results_dir)
    if args.profile:
        sample = texts[:PROFILE_REVIEWS]
        print(f"profiling both paths on {len(sample)} reviews")
        ours_profile = profiled(lambda: classifier.predict_proba(sample), device)
        model.float()  # the card's path runs float32 weights under autocast (Classifier made them bf16 above)
        result["profile"] = {
            "card recipe: Trainer.predict, pad 512, batch 64":
                profiled(lambda: card_predict(model, tokenizer, sample, args.max_length, device), device),
            f"llmclf: Classifier, length-sorted batch {args.batch_size}": ours_profile,
        }
        result["profile_reviews"] = len(sample)
        write_result(result_name, result, args.results_dir)


if __name__ == "__main__":
    main()
