"""Training's per-epoch evaluation in dataset order (llmclf before) against longest text first (llmclf.trainer
now), on the shipped model and real IMDb validation reviews, both in one run.

    python bench/eval_order.py --n 640

Both orders evaluate the same windows (the shipped model's template, head truncation at its max_length, as the
Trainer's evaluation inside `llmclf train` sees them) with the same collator (padding to each batch's longest,
rounded up to a multiple of 64) and the same batch size (the recipe's eval_batch_size, 32), through
transformers' Trainer.evaluate with llmclf's Trainer class. Reports seconds, padded tokens and the metrics
(which must not change with the order). Writes bench/results/eval_order-<date>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import imdb_validation, machine, write_result


class CountingCollator:
    """The training collator, counting the tokens (text and padding) of the batches it builds."""

    def __init__(self, inner):
        self.inner, self.tokens = inner, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.tokens += int(batch["input_ids"].numel())
        return batch


def collator_for(tokenizer, classifier) -> CountingCollator:
    from transformers import DataCollatorWithPadding

    return CountingCollator(DataCollatorWithPadding(tokenizer, padding="longest", max_length=classifier.max_length,
                                                    pad_to_multiple_of=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imdb-sentiment", help="a classifier trained on IMDb (default: shipped)")
    parser.add_argument("--n", type=int, default=640, help="validation reviews to evaluate")
    parser.add_argument("--batch-size", type=int, default=32, help="evaluation batch size (the recipe's 32)")
    args = parser.parse_args()

    import torch
    from transformers import TrainingArguments

    from llmclf.precision import native_bf16
    from llmclf.predict import Classifier
    from llmclf.prompts import training_windows
    from llmclf.trainer import trainer_class, trainer_metrics

    texts, labels = imdb_validation(args.n)
    classifier = Classifier.from_pretrained(args.model)
    model, tokenizer = classifier.model, classifier.tokenizer
    windows = training_windows(texts, tokenizer, classifier.max_length, "head", classifier.prompt)
    rows = [{"input_ids": w, "attention_mask": [1] * len(w), "labels": y} for w, y in zip(windows, labels)]
    text_tokens = sum(len(w) for w in windows)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    results = {}
    print(f"{'order':<16} {'seconds':>8} {'reviews/s':>9} {'tokens run':>10} {'pad share':>9} {'accuracy':>8} "
          f"{'roc_auc':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(output_dir=tmp, use_cpu=True, report_to=[], bf16=native_bf16(),
                                          per_device_eval_batch_size=args.batch_size,
                                          train_sampling_strategy="group_by_length", disable_tqdm=True)
        warm = trainer_class()(model=model, args=training_args, data_collator=collator_for(tokenizer, classifier),
                               compute_metrics=trainer_metrics(id2label))
        with torch.inference_mode():
            warm.evaluate(rows[: args.batch_size])  # first-call costs (kernels, allocator) stay out of both timings
        for order in ("dataset", "longest first"):
            collator = collator_for(tokenizer, classifier)
            trainer = trainer_class()(model=model, args=training_args, data_collator=collator,
                                      compute_metrics=trainer_metrics(id2label))
            if order == "dataset":
                trainer._eval_order = lambda dataset: None  # llmclf before: the sequential sampler
            with torch.inference_mode():
                start = time.perf_counter()
                evaluated = trainer.evaluate(rows)
                seconds = time.perf_counter() - start
            results[order] = {"seconds": round(seconds, 2), "reviews_per_s": round(len(rows) / seconds, 3),
                              "tokens_run": collator.tokens, "pad_share": round(1 - text_tokens / collator.tokens, 4),
                              "accuracy": evaluated["eval_accuracy"], "roc_auc": evaluated["eval_roc_auc"],
                              "loss": evaluated["eval_loss"]}
            r = results[order]
            print(f"{order:<16} {seconds:>8.1f} {r['reviews_per_s']:>9.2f} {r['tokens_run']:>10,} "
                  f"{r['pad_share']:>9.3f} {r['accuracy']:>8.4f} {r['roc_auc']:>8.4f}", flush=True)
    speedup = results["dataset"]["seconds"] / results["longest first"]["seconds"]
    print(f"longest first: {speedup:.2f}x the speed of dataset order")
    write_result("eval_order", {
        "bench": "eval_order", **machine(), "model": args.model, "reviews": len(rows), "text_tokens": text_tokens,
        "max_length": classifier.max_length, "batch_size": args.batch_size, "precision_bf16": native_bf16(),
        "data": "IMDb train.parquet, validation split 80/20 seed 42, first N reviews",
        "baseline": "dataset order (llmclf before this change): SequentialSampler",
        "orders": results, "speedup": round(speedup, 3),
    })


if __name__ == "__main__":
    main()
