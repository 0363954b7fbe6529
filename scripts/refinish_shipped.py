"""Recompute everything downstream of training for the shipped model, keeping its trained weights.

Why this exists: the shipped model's first run (`llmclf train ... --recipe imdb-sentiment`, 42 minutes on a
2-core CPU) trained correctly (Trainer's own evaluation: accuracy 0.909), but its recipe uses group_by_length,
and transformers 5 then length-groups *prediction* batches too, so the validation logits handed to calibration
and analysis were in another order than their labels (chance-level metrics, a temperature at its bound).
`llmclf.train.trainer_class` now keeps evaluation in dataset order. This script loads the run's adapter,
undoes the temperature that was folded into its head, predicts the validation split in order with the fixed
Trainer, and calls the same `finish_run` that `llmclf train` calls. Rerunning the recipe reproduces it whole.

    python scripts/refinish_shipped.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml
from peft import PeftModel

from llmclf.analysis import Part, lookup_ratings
from llmclf.calibration import scale_head
from llmclf.config import TrainArgs
from llmclf.models import CONFIG_FILE, load_backbone, shipped_model_dir
from llmclf.train import TokenizedTexts, finish_run, load_splits, staging_dir, trainer_class, training_arguments


def main() -> None:
    from transformers import DataCollatorWithPadding

    shipped = shipped_model_dir("imdb-sentiment")
    args = TrainArgs(**yaml.safe_load((shipped / CONFIG_FILE).read_text()))
    splits = load_splits(args)
    calibration = json.loads((shipped / "calibration.json").read_text())
    previous = json.loads((shipped / "metrics.json").read_text())
    history = [json.loads(line) for line in (shipped / "history.jsonl").read_text().splitlines()]

    model, tokenizer = load_backbone(args.model, splits.id2label, seed=args.seed, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(model, shipped)
    if calibration.get("temperature_in_head"):
        scale_head(model, 1.0 / calibration["fitted_temperature"])
    output = Path(args.output) if Path(args.output).resolve() == shipped.resolve() else shipped
    stage = staging_dir(output)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copy(shipped / CONFIG_FILE, stage / CONFIG_FILE)
    collator = DataCollatorWithPadding(tokenizer, padding=args.padding, max_length=args.max_length,
                                       pad_to_multiple_of=args.pad_to_multiple_of)
    validation = splits.validation
    encoded = TokenizedTexts(validation, tokenizer, args.max_length)
    trainer = trainer_class()(model=model, args=training_arguments(args, stage / "checkpoints"),
                              eval_dataset=encoded, data_collator=collator)
    logits = trainer.predict(encoded).predictions
    parts = [Part("validation", validation.texts, validation.labels, logits,
                  lookup_ratings(args.data, args.text_column, validation.texts))]
    training = {**previous["training"], "refinished": "scripts/refinish_shipped.py (evaluation order fix)"}
    finish_run(stage, output, args, trainer.model, tokenizer, splits, parts, history, training)
    print(json.dumps(json.loads((output / "metrics.json").read_text())["validation"]["accuracy"]))


if __name__ == "__main__":
    main()
