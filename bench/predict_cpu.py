"""CPU prediction speed: plain transformers fp32 at batch size 1 (the baseline) against llmclf's CPU paths,
in one run, on real IMDb reviews from the validation split (80/20, seed 42) of ../shared/data.

    python bench/predict_cpu.py --model runs/imdb-lora --n 64

Prints a table and writes bench/results/predict_cpu-<date>.json (device, versions, rows with baseline and
llmclf figures, so every ratio can be recomputed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def imdb_validation(n: int) -> tuple[list[str], list[int]]:
    from llmclf.data import load_labelled, split_train_validation

    data = load_labelled(str(ROOT.parent / "shared" / "data" / "imdb" / "train.parquet"))
    _, validation = split_train_validation(data, 0.2, 42)
    return validation.texts[:n], validation.labels[:n]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def baseline_probs(model_dir: str, texts: list[str], max_length: int) -> np.ndarray:
    """Plain transformers, fp32, one review at a time, truncated to max_length: what a user writes first."""
    from llmclf.models import load_classifier

    model, tokenizer = load_classifier(model_dir)
    rows = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(torch.softmax(model(**batch).logits.float(), -1)[0].numpy())
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a classifier directory trained on IMDb")
    parser.add_argument("--n", type=int, default=64, help="validation reviews to score")
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()

    from llmclf.predict import Classifier

    texts, labels = imdb_validation(args.n)
    labels = np.asarray(labels)
    tokenizer = Classifier.from_pretrained(args.model).tokenizer
    tokens = sum(min(len(ids), args.max_length) for ids in tokenizer(texts)["input_ids"])
    base, base_s = timed(lambda: baseline_probs(args.model, texts, args.max_length))
    variants = {
        "llmclf fp32, batch 1": dict(batch_size=1),
        "llmclf fp32, length-sorted batch 8": dict(batch_size=8),
        "llmclf int8 dynamic, batch 1": dict(batch_size=1, quantize="int8"),
        "llmclf int8 dynamic, length-sorted batch 4": dict(batch_size=4, quantize="int8"),
    }
    rows = []
    base_acc = float((base.argmax(1) == labels).mean())
    print(f"{'variant':<44} {'reviews/s':>10} {'tokens/s':>9} {'speed-up':>8} {'accuracy':>8} {'agree':>6}")
    print(f"{'plain transformers fp32, batch 1 (baseline)':<44} {len(texts) / base_s:>10.2f} {tokens / base_s:>9.0f} "
          f"{1.0:>8.2f} {base_acc:>8.4f} {1.0:>6.3f}")
    for name, options in variants.items():
        classifier = Classifier.from_pretrained(args.model, max_length=args.max_length, **options)
        classifier.predict_proba(texts[:2])  # warm-up
        probs, seconds = timed(lambda: classifier.predict_proba(texts))
        accuracy = float((probs.argmax(1) == labels).mean())
        agree = float((probs.argmax(1) == base.argmax(1)).mean())
        print(f"{name:<44} {len(texts) / seconds:>10.2f} {tokens / seconds:>9.0f} {base_s / seconds:>8.2f} "
              f"{accuracy:>8.4f} {agree:>6.3f}")
        for metric, unit, b, o in (("throughput " + name, "reviews/s", len(texts) / base_s, len(texts) / seconds),
                                   ("token throughput " + name, "tokens/s", tokens / base_s, tokens / seconds),
                                   ("accuracy " + name, "fraction", base_acc, accuracy)):
            rows.append({"metric": metric, "unit": unit, "baseline": round(b, 4), "llmclf": round(o, 4)})
        rows.append({"metric": "agreement with baseline labels " + name, "unit": "fraction", "baseline": 1.0,
                     "llmclf": round(agree, 4)})
    import transformers

    result = {
        "bench": "predict_cpu", "date": datetime.date.today().isoformat(),
        "device": f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                  f"{torch.backends.cpu.get_cpu_capability()}",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
        "model": args.model, "reviews": len(texts), "tokens": tokens, "max_length": args.max_length,
        "data": "IMDb train.parquet, validation split 80/20 seed 42, first N reviews",
        "baseline": "plain transformers AutoModelForSequenceClassification fp32, batch size 1, truncation 512",
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / f"predict_cpu-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
