"""Does more training of the shipped model reach issue 13's targets (0.945 validation accuracy, 64/72 behaviour
checks)? A probe: the shipped `imdb-sentiment` adapter (one epoch of its recipe) trained on for a second,
learning-rate-decayed pass over the first N training reviews, a stand-in for about 1 + N/20,000 epochs.

    python bench/continue_shipped.py --reviews 6000 --learning-rate 1e-4 --output /tmp/continued   # ~55 min
    python bench/continue_shipped.py --record-only --output /tmp/continued   # the JSON of a finished run again

It runs llmclf's own `train()` with the recipe (src/llmclf/configs/imdb-sentiment.yaml) and two substitutions:
the model starts from the shipped adapter and head (trainable, float32 over the bf16 backbone, as a fresh run's
adapters are) instead of the backbone with a label-word head, and the Trainer's per-epoch evaluation is skipped
(`--no-eval-each-epoch`), since the finishing step scores all 5,000 validation reviews as `predict` runs the model and runs the behaviour
checks anyway. Learning rate: linear decay from --learning-rate after 5% warm-up; at 1e-4 (a quarter of the
recipe's peak) it is about where a linear schedule stretched over 1.3 epochs would be at the end of the first.

Writes bench/results/continue_shipped-<date>.json: the continued model's validation metrics, behaviour checks
and training time beside the shipped model's (from its metrics.json and behaviour.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from common import IMDB, ROOT, machine, trained_model_scores, write_result


def shipped_start(args, id2label, precision, problem_type):
    """train.build_model's stand-in: the backbone in bf16 with the shipped adapter and head, trainable."""
    import torch
    from peft import PeftModel

    from llmclf.artifacts import model_dir
    from llmclf.models import load_backbone, quiet_progress
    from llmclf.problem_types import HF_PROBLEM_TYPES
    from llmclf.prompts import PromptEncoding

    with quiet_progress():
        model, tokenizer = load_backbone(args.model, id2label, seed=args.seed, dtype=torch.bfloat16,
                                         problem_type=HF_PROBLEM_TYPES[problem_type])
    prompt = PromptEncoding.build(tokenizer, args.prompt_template, args.label_names)
    prompt.room(args.max_length)
    model = PeftModel.from_pretrained(model, str(model_dir("imdb-sentiment")), is_trainable=True)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model, tokenizer, prompt


def continue_training(reviews: int, learning_rate: float, output: str) -> float:
    import llmclf.train as train_module
    from llmclf.config import resolve_train_args

    train_module.build_model = shipped_start
    args = resolve_train_args(recipe="imdb-sentiment", overrides={
        "data": str(IMDB), "label_names": ["neg", "pos"], "output": output, "max_train_samples": reviews,
        "learning_rate": learning_rate, "warmup_ratio": 0.05, "eval_each_epoch": False})
    started = time.perf_counter()
    train_module.train(args, overwrite=True)
    return time.perf_counter() - started


def summary(directory: Path) -> dict:
    scores = trained_model_scores(directory)
    return {**scores, "correct": round(scores["accuracy"] * scores["n_eval"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=6000, help="training reviews of the second pass")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--output", required=True, help="where the continued model goes")
    parser.add_argument("--record-only", action="store_true", help="write the JSON of a finished --output")
    parser.add_argument("--wall-s", type=float, default=None,
                        help="with --record-only: the training command's wall time, as its run measured it")
    args = parser.parse_args()
    if args.record_only:
        wall = args.wall_s
    else:
        wall = round(continue_training(args.reviews, args.learning_rate, args.output), 1)
    from llmclf.artifacts import model_dir

    continued, shipped = summary(Path(args.output)), summary(model_dir("imdb-sentiment"))
    config = yaml.safe_load((Path(args.output) / "llmclf_config.yaml").read_text())
    result = {**machine(), "bench": "continue_shipped",
              "data": f"{IMDB.relative_to(ROOT.parent)}, 80/20 split seed 42: the first {continued['train_examples']} "
                      "training reviews for the second pass; all 5,000 held-out reviews scored",
              "settings": {"learning_rate": config["learning_rate"], "warmup_ratio": config["warmup_ratio"],
                           "lr_scheduler_type": config["lr_scheduler_type"], "batch_size": config["batch_size"],
                           "max_length": config["max_length"], "truncation": config["truncation"],
                           "lora_layers": config["lora_layers"]},
              "command_wall_s": wall, "targets": {"accuracy": 0.945, "behaviour_passed": "64/72"},
              "shipped": {**shipped, "trained_on": "the AMD EPYC CPU without AMX (its card)"},
              "continued": continued}
    write_result("continue_shipped", result)


if __name__ == "__main__":
    main()
