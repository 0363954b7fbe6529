"""Long reviews: does a trained model gain from reading more of a review than the window it was trained on?

The shipped model was trained on 512-token windows and by default reads a longer review in overlapping 512-token
chunks, averaging their probabilities. RoPE models can read far longer inputs than they were trained on, so this
scores the held-out reviews (80/20 split, seed 42) that do not fit one window, first as the model runs by default
(the baseline) and then with each other reading, in one run, and compares them pair by pair: the reviews each
reading gets right that the baseline gets wrong (gains) and the reverse (losses), with the one-sided sign test on
them. Reviews that fit one window are read identically either way, so the model's own validation accuracy
(metrics.json, which `llmclf evaluate` reproduces) gives the estimate on all held-out reviews.

    python bench/long_reviews.py --readings 4096:head 1024:chunks     # 11-16 min a reading on 2 cores (748 reviews)
    python bench/long_reviews.py --model runs/imdb-sentiment --tag run135   # another trained model

Writes bench/results/long_reviews[-TAG]-<date>.json as it goes.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common import RESULTS, imdb_validation, machine, write_result


def parse_reading(text: str) -> tuple[int, str]:
    """MAX_LENGTH:TRUNCATION, e.g. 4096:head."""
    from llmclf.predict import TRUNCATION_CHOICES

    max_length, _, truncation = text.partition(":")
    if not max_length.isdigit() or truncation not in TRUNCATION_CHOICES:
        raise argparse.ArgumentTypeError(f"a reading is MAX_LENGTH:TRUNCATION with TRUNCATION one of "
                                         f"{', '.join(TRUNCATION_CHOICES)}, e.g. 4096:head; got {text!r}")
    return int(max_length), truncation


def longer_than_window(classifier, texts: list[str]) -> np.ndarray:
    """Indices of the texts that do not fit one of the classifier's windows, its prompt template included."""
    room = classifier.prompt.room(classifier.max_length)
    return np.flatnonzero([len(classifier.prompt.text_ids(classifier.tokenizer, t)) > room for t in texts])


def paired(baseline_right: np.ndarray, right: np.ndarray) -> dict:
    """Gains and losses of a reading against the baseline on the same rows, and the one-sided sign test's p-value
    of the gains (1.0 where no row changes)."""
    from scipy.stats import binomtest

    gains, losses = int((right & ~baseline_right).sum()), int((baseline_right & ~right).sum())
    p_value = binomtest(gains, gains + losses, 0.5, alternative="greater").pvalue if gains + losses else 1.0
    return {"right": int(right.sum()), "gains": gains, "losses": losses,
            "sign_test_p_value": round(float(p_value), 4)}


def validation_right(model: str, reviews: int) -> int | None:
    """Held-out reviews the model gets right as it runs by default, from its metrics.json (`llmclf evaluate`
    reproduces it on the same split); None when the model was validated on other data."""
    from llmclf.artifacts import read_metrics

    validation = (read_metrics(model) or {}).get("validation") or {}
    return round(validation["accuracy"] * reviews) if validation.get("n") == reviews else None


def score(classifier, texts: list[str], labels: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    right = classifier.decide(classifier.predict_proba(texts)) == labels
    return right, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imdb-sentiment")
    parser.add_argument("--readings", nargs="+", type=parse_reading, default=[(4096, "head")],
                        help="MAX_LENGTH:TRUNCATION readings to compare with the model's own")
    parser.add_argument("--batch-size", type=int, default=4, help="texts per forward pass (long texts: keep small)")
    parser.add_argument("--limit", type=int, help="only the first N held-out reviews (a quick try)")
    parser.add_argument("--tag", help="added to the result's file name: long_reviews-TAG-<date>.json")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args()

    from llmclf.predict import Classifier

    texts, labels = imdb_validation(args.limit)
    labels = np.asarray(labels)
    classifier = Classifier.from_pretrained(args.model, batch_size=args.batch_size)
    long_idx = longer_than_window(classifier, texts)
    long_texts, long_labels = [texts[i] for i in long_idx], labels[long_idx]
    baseline_right, seconds = score(classifier, long_texts, long_labels)
    result = {"bench": "long_reviews", **machine(), "model": args.model,
              "precision": "bf16" if classifier.bf16 else "fp32",
              "data": "IMDb train.parquet, held-out 20% (seed 42)" + (f", first {args.limit}" if args.limit else ""),
              "reviews": len(texts), "longer_than_window": len(long_idx),
              "baseline": {"max_length": classifier.max_length, "truncation": classifier.truncation,
                           "right": int(baseline_right.sum()), "seconds": round(seconds, 1)},
              "readings": []}
    print(json.dumps(result["baseline"]), flush=True)
    for max_length, truncation in args.readings:
        classifier.max_length, classifier.truncation = max_length, truncation
        right, seconds = score(classifier, long_texts, long_labels)
        row = {"max_length": max_length, "truncation": truncation,
               **paired(baseline_right, right), "seconds": round(seconds, 1)}
        known = None if args.limit else validation_right(args.model, len(texts))
        if known is not None:  # every review that fits a window is read alike: only the long ones change
            row["all_reviews_right_estimate"] = known + row["gains"] - row["losses"]
        result["readings"].append(row)
        print(json.dumps(row), flush=True)
        write_result("-".join(filter(None, ["long_reviews", args.tag])), result, args.results_dir)


if __name__ == "__main__":
    main()
