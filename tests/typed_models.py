"""Tiny random multi-label and regression models saved as `llmclf train` saves them (config.json's problem_type
and "llmclf" record), for the inference and serving tests of these types without the training side."""

from pathlib import Path

MULTI_LABELS = {0: "action", 1: "comedy", 2: "drama"}
# "drama" has no saved threshold: it gets 0.5.
MULTI_RECORD = {"thresholds": {"action": 0.45, "comedy": 0.55}}
REGRESSION_RECORD = {"target_mean": 3.25, "target_std": 1.5, "interval": {"level": 0.9, "halfwidth": 0.8}}


def save_typed_model(out: Path, id2label: dict[int, str], problem_type: str, record: dict, seed: int = 0) -> Path:
    """A 2-layer random Llama with `problem_type` and the llmclf `record` in its config.json (max_length 64)."""
    import yaml

    from llmclf.models import save_classifier, tiny_random_llama

    model, tokenizer = tiny_random_llama(id2label, seed=seed)
    model.config.problem_type = problem_type
    model.config.llmclf = record
    save_classifier(model, tokenizer, out)
    (out / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 64}))
    return out


def multi_label_dir(root: Path) -> Path:
    return save_typed_model(root / "multi", MULTI_LABELS, "multi_label_classification", MULTI_RECORD, seed=3)


def regression_dir(root: Path, interval: bool = True) -> Path:
    record = REGRESSION_RECORD if interval else {k: v for k, v in REGRESSION_RECORD.items() if k != "interval"}
    name = "regression" if interval else "regression-plain"
    return save_typed_model(root / name, {0: "rating"}, "regression", record, seed=4)
