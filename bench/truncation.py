"""Long reviews: accuracy of the shipped model with each --truncation mode (head, head_tail, chunks) at two
max_lengths, on real IMDb validation reviews (80/20 split, seed 42), in one run.

    python bench/truncation.py --n 2000

Prints a table and writes bench/results/truncation-<date>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import imdb_validation, machine, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imdb-sentiment")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--max-lengths", default="256,512")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from llmclf.predict import TRUNCATION_CHOICES, Classifier

    texts, labels = imdb_validation(args.n)
    labels = np.asarray(labels)
    classifier = Classifier.from_pretrained(args.model)
    lengths = np.asarray([len(ids) for ids in classifier.tokenizer(texts)["input_ids"]])
    rows = []
    print(f"{'max_length':>10} {'truncation':<10} {'longer':>7} {'accuracy':>8} {'roc_auc':>7} {'reviews/s':>9}")
    for max_length in (int(x) for x in args.max_lengths.split(",")):
        for truncation in TRUNCATION_CHOICES:
            classifier.max_length, classifier.truncation = max_length, truncation
            start = time.perf_counter()
            probs = classifier.predict_proba(texts)
            seconds = time.perf_counter() - start
            row = {"max_length": max_length, "truncation": truncation,
                   "share_longer_than_max_length": round(float((lengths > max_length).mean()), 4),
                   "accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
                   "roc_auc": round(float(roc_auc_score(labels, probs[:, 1])), 4),
                   "reviews_per_s": round(len(texts) / seconds, 2)}
            rows.append(row)
            print(f"{max_length:>10} {truncation:<10} {row['share_longer_than_max_length']:>7.1%} "
                  f"{row['accuracy']:>8.4f} {row['roc_auc']:>7.4f} {row['reviews_per_s']:>9.2f}", flush=True)
    write_result("truncation", {
        "bench": "truncation", **machine(), "model": args.model, "reviews": len(texts),
        "precision": "bf16" if classifier.bf16 else "fp32",
        "data": "IMDb train.parquet, validation split 80/20 seed 42, first N reviews", "rows": rows,
    })


if __name__ == "__main__":
    main()
