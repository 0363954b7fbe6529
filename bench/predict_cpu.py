"""CPU prediction speed of the shipped model: plain transformers fp32 at batch size 1 (the baseline) against
llmclf's CPU path, in one run, on real IMDb reviews from the validation split (80/20, seed 42).

    python bench/predict_cpu.py --n 1000

Both read the same token ids (the model's prompt template kept whole around the review's first tokens, 512 in
all), so speed and accuracy compare like with like. Prints a table and writes
bench/results/predict_cpu-<date>.json (device, versions, and rows with baseline and llmclf figures, so every
ratio can be recomputed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import imdb_validation, machine, write_result


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def baseline_probs(model_dir: str, windows: list[list[int]]) -> np.ndarray:
    """Plain transformers, fp32, one review at a time: what a user writes first, on the same token ids."""
    from llmclf.models import load_classifier

    model, _ = load_classifier(model_dir)  # the adapter merged into a float32 LlamaForSequenceClassification
    rows = []
    with torch.inference_mode():
        for ids in windows:
            rows.append(torch.softmax(model(input_ids=torch.tensor([ids])).logits.float(), -1)[0].numpy())
    return np.stack(rows)


def variants_for(auto: str, int8: bool) -> dict[str, dict]:
    """llmclf's default path and, beside it, the other precision (so a CPU without native bf16 shows what
    emulated bf16 would cost) and, with --int8, dynamic int8 linear layers (`--quantize int8`)."""
    other = "fp32" if auto == "bf16" else "bf16"
    variants = {
        f"llmclf default (precision auto = {auto} here, length-sorted batch 16)": dict(batch_size=16),
        f"llmclf {auto}, batch 1": dict(batch_size=1, precision=auto),
        f"llmclf {other}, length-sorted batch 16": dict(batch_size=16, precision=other),
    }
    if int8:
        variants["llmclf --quantize int8, length-sorted batch 16"] = dict(batch_size=16, quantize="int8")
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imdb-sentiment", help="a classifier trained on IMDb (default: shipped)")
    parser.add_argument("--n", type=int, default=1000, help="validation reviews to score")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--int8", action="store_true", help="also run dynamic int8 linear layers (--quantize int8)")
    parser.add_argument("--tag", help="results file predict_cpu-TAG-<date>.json (keeps another CPU's file of the day)")
    args = parser.parse_args()

    from llmclf.precision import resolve_precision
    from llmclf.predict import Classifier
    from llmclf.prompts import training_windows

    texts, labels = imdb_validation(args.n)
    labels = np.asarray(labels)
    reference = Classifier.from_pretrained(args.model, precision="fp32", max_length=args.max_length, truncation="head")
    # The windows llmclf reads (the model's prompt template kept whole, the review cut to fit max_length): the
    # baseline is fed the very same ids, so only the way they are run differs.
    windows = training_windows(texts, reference.tokenizer, args.max_length, "head", reference.prompt)
    tokens = sum(len(ids) for ids in windows)
    base, base_s = timed(lambda: baseline_probs(args.model, windows))
    base_acc = float((base.argmax(1) == labels).mean())
    variants = variants_for(resolve_precision("auto", "cpu"), args.int8)
    rows = []
    print(f"{'variant':<70} {'reviews/s':>9} {'tokens/s':>8} {'speed-up':>8} {'accuracy':>8} {'agree':>6} {'max|dp|':>7}")
    print(f"{'plain transformers fp32, batch 1 (baseline)':<70} {len(texts) / base_s:>9.2f} {tokens / base_s:>8.0f} "
          f"{1.0:>8.2f} {base_acc:>8.4f} {1.0:>6.3f} {0.0:>7.4f}")
    for name, options in variants.items():
        classifier = Classifier.from_pretrained(args.model, max_length=args.max_length, truncation="head", **options)
        classifier.predict_proba(texts[:4])  # warm-up
        probs, seconds = timed(lambda: classifier.predict_proba(texts))
        accuracy = float((probs.argmax(1) == labels).mean())
        agree = float((probs.argmax(1) == base.argmax(1)).mean())
        max_diff = float(np.abs(probs - base).max())
        print(f"{name:<70} {len(texts) / seconds:>9.2f} {tokens / seconds:>8.0f} {base_s / seconds:>8.2f} "
              f"{accuracy:>8.4f} {agree:>6.3f} {max_diff:>7.4f}")
        for metric, unit, b, o in (("throughput " + name, "reviews/s", len(texts) / base_s, len(texts) / seconds),
                                   ("token throughput " + name, "tokens/s", tokens / base_s, tokens / seconds),
                                   ("accuracy " + name, "fraction", base_acc, accuracy),
                                   ("agreement with baseline labels " + name, "fraction", 1.0, agree),
                                   ("largest probability difference from baseline " + name, "probability", 0.0,
                                    max_diff)):
            rows.append({"metric": metric, "unit": unit, "baseline": round(b, 4), "llmclf": round(o, 4)})
    write_result("predict_cpu" + (f"-{args.tag}" if args.tag else ""), {
        "bench": "predict_cpu", **machine(),
        "model": args.model, "reviews": len(texts), "tokens": tokens, "max_length": args.max_length,
        "data": "IMDb train.parquet, validation split 80/20 seed 42, first N reviews",
        "baseline": "plain transformers AutoModelForSequenceClassification fp32, batch size 1, on llmclf's own "
                    "windows (template kept whole, the review's head cut to max_length)",
        "cpu_native_bf16": resolve_precision("auto", "cpu") == "bf16",
        "rows": rows,
    })


if __name__ == "__main__":
    main()
