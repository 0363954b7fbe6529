"""The main job, offline on a CPU in minutes: LoRA-tune the default backbone on bundled reviews, evaluate,
report, set the fine-tuned accuracy beside the bare backbone's zero-shot accuracy on the same held-out
reviews, and show predictions on hard sentences.

    llmclf demo --output runs/demo
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from llmclf.config import resolve_train_args
from llmclf.artifacts import DEFAULT_CLASSIFIER as SHIPPED_SENTIMENT
from llmclf.artifacts import read_metrics, read_run_config, shipped_model_available
from llmclf.metrics import summary_line

# Hard on purpose: negation, sarcasm, mixed feelings, understatement.
EXAMPLES = [
    "The plot dragged, but the acting was superb.",
    "Not bad at all, I would happily watch it again.",
    "I wouldn't call it good.",
    "Oh great, another sequel nobody asked for. Two hours I will never get back.",
    "The food was cold and the waiter ignored us, but the dessert almost made up for it.",
    "Does exactly what it says on the box. Five stars.",
    "Absolutely brilliant, if your idea of fun is watching paint dry.",
    "Support fixed my problem in five minutes. Impressive.",
]


def demo_data_path() -> Path:
    return Path(str(resources.files("llmclf") / "data" / "demo_reviews.jsonl"))


def zero_shot_accuracy(args) -> float:
    """Accuracy of the untrained backbone on the run's validation split: a zero-shot classifier with the run's
    template and label words (llmclf.zeroshot, contextual calibration), read the way `predict` reads texts."""
    import numpy as np

    from llmclf.predict import Classifier
    from llmclf.train import load_splits

    splits = load_splits(args)
    names = [splits.id2label[i] for i in sorted(splits.id2label)]
    classifier = Classifier.from_pretrained(args.model, labels=names, label_words=args.label_words,
                                            prompt_template=args.prompt_template, max_length=args.max_length,
                                            batch_size=args.eval_batch_size)
    predicted = classifier.predict(splits.validation.texts)
    return float(np.mean([p == names[y] for p, y in zip(predicted, splits.validation.labels)]))


def run_demo(output: str = "runs/demo", overwrite: bool = False, model: str = "smollm2-135m") -> Path:
    """Train, evaluate and report on the bundled reviews; print predictions; return the output directory."""
    from llmclf.predict import Classifier
    from llmclf.train import check_output, train

    args = resolve_train_args(recipe="demo", overrides={"data": str(demo_data_path()), "output": output, "model": model})
    # Rerunning the README's command replaces the previous demo's output, and nothing else.
    previous = read_run_config(Path(output))
    overwrite = overwrite or Path(previous.get("data") or "").name == demo_data_path().name
    check_output(Path(args.output), overwrite, resume=False)  # refuse before printing anything
    started = time.perf_counter()
    print(f"llmclf demo: LoRA fine-tuning {args.model} on {demo_data_path().name} (bundled, 360 labelled reviews "
          f"of films, products and services; 80/20 split, seed {args.seed}) on the CPU...")
    out = train(args, overwrite=overwrite)
    classifier = Classifier.from_pretrained(str(out))
    validation = read_metrics(out)["validation"]
    print(f"\nvalidation ({validation['n']} held-out reviews): {summary_line(validation)}")
    print(f"trained and evaluated in {time.perf_counter() - started:.0f} s")
    zero_shot = zero_shot_accuracy(args)
    print(f"accuracy on the same {validation['n']} reviews: fine-tuned {validation['accuracy']:.3f} | "
          f"bare {args.model}, zero-shot (same template and label words, no training) {zero_shot:.3f}\n")
    # Side by side: the model just trained on 288 reviews, and the shipped one trained on 20,000 IMDb reviews.
    columns = [("demo model", classifier)]
    if shipped_model_available(SHIPPED_SENTIMENT):
        columns.append((f"shipped {SHIPPED_SENTIMENT}", Classifier.from_pretrained(SHIPPED_SENTIMENT)))
    print("Predictions on hard sentences (label and its probability): " + " | ".join(name for name, _ in columns))
    answers = [[(c.id2label[int(p.argmax())], float(p.max())) for p in c.predict_proba(EXAMPLES)] for _, c in columns]
    for i, text in enumerate(EXAMPLES):
        cells = " | ".join(f"{label:>8} {prob:.2f}" for label, prob in (column[i] for column in answers))
        print(f"  {cells}  {text}")
    print(f"\nOutputs in {out}/: model (safetensors), metrics.json, history.jsonl, plots/*.png, README.md (model card)")
    print(f"Try it: llmclf predict --model {out} \"Your text here\"")
    return out
