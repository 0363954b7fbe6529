"""Does the shipped model's saved threshold pass the rule `llmclf train` has applied since 2026-12-05?

The shipped `imdb-sentiment` was calibrated before the rule: its threshold (0.442) is the best cut on its 5,000
validation reviews, kept whatever the evidence. Since then an accuracy-tuned threshold replaces 0.5 only when
its gain is significant (`llmclf.calibration.gain_p_value`, a one-sided sign test, p < THRESHOLD_SIGNIFICANCE).

    python bench/shipped_threshold.py                    # ~28 min on 2 cores: scores the 5,000 reviews
    python bench/shipped_threshold.py --logits bench/results/shipped_threshold-<date>.json   # no scoring
    python bench/shipped_threshold.py --logits ... --apply   # and recalibrate the shipped model (seconds)

Scores the held-out 20% (seed 42) as `predict` runs the shipped model (`analysis.model_logits`: its truncation
and template, the temperature in its head multiplied back out, as `llmclf evaluate` does), then refits the
calibration with llmclf's own `fit_calibration`. Writes bench/results/shipped_threshold-<date>.json: the saved
and the refitted temperature and threshold, the p-value of the saved threshold's gain over 0.5, the accuracy
of each rule, and the validation logits (so a later run needs no scoring).

--apply saves the refitted calibration with the shipped model (keeping the temperature its head already
carries) and rewrites what `llmclf train`'s finishing step computes from it, from these logits: metrics.json's
validation block, errors.jsonl, behaviour.json (the checks rerun at the new threshold), plots, report.html and
the card, whose hand-written paragraph on how the model was trained is carried over.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import imdb_validation, machine, write_result

NAME = "imdb-sentiment"
LOGIT_DECIMALS = 5
HAND_WRITTEN = ("This is llmclf's shipped model.", "## Data")  # the card's paragraph no generator writes


def score_validation() -> tuple[np.ndarray, np.ndarray, float]:
    """Uncalibrated validation logits of the shipped model, the labels, and the seconds scoring took."""
    from llmclf.analysis import model_logits
    from llmclf.artifacts import model_dir
    from llmclf.predict import Classifier

    texts, labels = imdb_validation()
    started = time.perf_counter()
    logits, _ = model_logits(Classifier.from_pretrained(NAME), texts, str(model_dir(NAME)))
    return logits, np.asarray(labels), time.perf_counter() - started


def rule_summary(labels, probs_pos, threshold: float) -> dict:
    from llmclf.calibration import gain_p_value

    chosen = probs_pos >= threshold
    moved = chosen != (probs_pos >= 0.5)
    return {"threshold": round(threshold, 6), "accuracy": round(float(np.mean(chosen == (labels == 1))), 4),
            "rows_moved_from_0.5": int(moved.sum()),
            "moved_rows_it_gets_right": int((chosen[moved] == (labels[moved] == 1)).sum()),
            "p_value_of_gain_over_0.5": gain_p_value(labels, probs_pos, threshold)}


def apply(directory: Path, texts: list[str], labels, logits, threshold: float, p_value: float | None) -> None:
    """Save `threshold` with the model in `directory` (its validation `texts` scored as `logits`) and rewrite
    everything `llmclf train`'s finishing step derives from it."""
    from llmclf.analysis import ScoredSplit, lookup_ratings, write_analysis
    from llmclf.artifacts import read_calibration, read_metrics, read_run_config, write_metrics
    from llmclf.calibration import Calibration, save_calibration
    from llmclf.predict import Classifier
    from llmclf.report import write_model_card

    record, metrics, config = read_calibration(directory), read_metrics(directory), read_run_config(directory)
    history = [json.loads(line) for line in (directory / "history.jsonl").read_text().splitlines()]
    calibration = Calibration(temperature=record["fitted_temperature"], threshold=threshold,
                              threshold_objective=record["threshold_objective"], threshold_p_value=p_value)
    save_calibration(directory, calibration, temperature_in_head=True)
    part = ScoredSplit("validation", texts, labels, logits, lookup_ratings(config["data"], "text", texts))
    id2label = dict(enumerate(config["label_names"]))
    data_info = {"train": config["data"], "validation": None, "test": None, "train_size": metrics["training"][
        "train_examples"], "validation_size": len(texts), "test_size": None, "label_names": config["label_names"]}
    classifier = Classifier.from_pretrained(str(directory))  # after save_calibration: it decides at `threshold`
    analysis = write_analysis(directory, [part], id2label, calibration, classifier=classifier, history=history,
                              run={"config": config, "data_info": data_info, "training": metrics["training"],
                                   "title": directory.name})
    card = directory / "README.md"
    start, end = HAND_WRITTEN
    old = card.read_text()
    hand_written = old[old.index(start):old.index(end)]
    write_model_card(directory, config=config, metrics=analysis.metrics["validation"], history=history,
                     data_info=data_info, plots=[str(p) for p in analysis.plots], name=directory.name,
                     training=metrics["training"],
                     analysis={"split": "validation", "metrics": analysis.metrics["validation"],
                               "errors": analysis.errors, "behaviour": analysis.behaviour, "temperature_in_head": True})
    new = card.read_text()
    card.write_text(new.replace(end, hand_written + end, 1))
    write_metrics(directory, {**analysis.metrics, "training": metrics["training"]})


def main() -> None:
    from llmclf.artifacts import model_dir, read_calibration
    from llmclf.calibration import THRESHOLD_SIGNIFICANCE, fit_calibration
    from llmclf.metrics import softmax

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logits", help="a JSON this bench wrote: reuse its logits instead of scoring")
    parser.add_argument("--apply", action="store_true", help="save the refitted threshold with the shipped model")
    args = parser.parse_args()
    if args.logits:
        saved = json.loads(Path(args.logits).read_text())
        logits, labels, seconds = np.asarray(saved["logits"]), np.asarray(saved["labels"]), saved["scoring_seconds"]
        scored_on = saved["scored_on"]
    else:
        logits, labels, seconds = score_validation()
        # Rounded as saved, before anything is computed from them, so a rerun from the JSON gives the same numbers.
        logits = np.round(logits, LOGIT_DECIMALS)
        scored_on = machine()["device"]
    record = read_calibration(NAME)
    saved_probs = softmax(logits / record["fitted_temperature"])[:, 1]
    refit = fit_calibration(logits, labels, "accuracy")
    refit_probs = softmax(logits / refit.temperature)[:, 1]
    result = {
        **machine(), "model": NAME, "n": int(len(labels)), "scored_on": scored_on,
        "scoring_seconds": round(seconds, 1),
        "significance": THRESHOLD_SIGNIFICANCE,
        "at_0.5": rule_summary(labels, saved_probs, 0.5),  # ties (equal logits) go to label 1, as a threshold does
        "saved": {"temperature": record["fitted_temperature"],
                  **rule_summary(labels, saved_probs, record["threshold"])},
        "refitted": {"temperature": refit.temperature, "p_value_of_best_cut": refit.threshold_p_value,
                     **rule_summary(labels, refit_probs, refit.threshold)},
        "labels": labels.tolist(), "logits": logits.tolist(),
    }
    for key in ("at_0.5", "saved", "refitted"):
        print(key, result[key])
    if not args.apply:
        write_result("shipped_threshold", result)
    elif refit.threshold == record["threshold"]:
        print(f"{NAME} already decides at the rule's threshold ({refit.threshold:.4g}): nothing to apply")
    else:
        apply(model_dir(NAME), imdb_validation()[0], labels, logits, refit.threshold, refit.threshold_p_value)


if __name__ == "__main__":
    main()
