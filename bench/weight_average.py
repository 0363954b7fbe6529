"""Does averaging weights buy the shipped model's missing accuracy for free? (issue 13, item 6)

    python bench/weight_average.py --band 0.02 1688 1359+1413+1470+1532+1594+1653+1688 shipped+1688

Each variant is one adapter, or a uniform average of several ("+"): a run's checkpoint snapshots by step
(`bench/shipped_run.py` keeps them in RUN.snapshots/checkpoint-<step>/), or `shipped`, the shipped model (its
head's folded temperature undone first, so that every head is on the same scale). Averaging LoRA's A and B
factors separately is what a uniform "soup" of adapters does; the runs share their start (seed 42).

Scoring all 5,000 held-out reviews takes ~28 minutes a model on 2 cores, so variants are scored on the reviews
the shipped model is unsure of: p(positive) inside (band, 1 - band), read from its logits kept by
`bench/shipped_threshold.py` (1,707 reviews at band 0.02). A model that differs from another only there moves
its accuracy by the difference of its counts. Each variant is decided at 0.5, as `predict` decides these models.
Prints one JSON line a variant; the probabilities are kept in WORK/<variant>/probs_<band>.npy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from common import ROOT, imdb_validation

HEAD = "base_model.model.score.weight"


def unsure_reviews(logits_file: Path, band: float) -> np.ndarray:
    kept = json.loads(logits_file.read_text())
    p = np.exp(np.array(kept["logits"]))[:, 1]
    return np.where((p > band) & (p < 1 - band))[0] if band > 0 else np.arange(len(p))


def averaged_adapter(names: list[str], run: Path, shipped: Path, target: Path) -> Path:
    """A loadable copy of the run with the uniform average of the named adapters' weights."""
    from safetensors.torch import load_file, save_file

    def source(name: str) -> Path:
        folder = shipped if name == "shipped" else run.with_name(run.name + ".snapshots") / f"checkpoint-{name}"
        return folder / "adapter_model.safetensors"

    states = [load_file(source(name)) for name in names]
    for name, state in zip(names, states):
        if name == "shipped":  # its head has the fitted temperature folded in; snapshots' heads do not
            state[HEAD] *= json.loads((shipped / "calibration.json").read_text())["fitted_temperature"]
    average = {key: sum(state[key] for state in states) / len(states) for key in states[0]}
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("plots", "*.html"))
    save_file(average, str(target / "adapter_model.safetensors"))
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="e.g. 1688, 1359+1413+1688, shipped+1688")
    parser.add_argument("--band", type=float, default=0.02, help="score reviews the shipped model puts inside "
                        "(band, 1 - band); 0: all 5,000")
    parser.add_argument("--run", default=str(ROOT / "runs" / "imdb-sentiment"))
    parser.add_argument("--shipped", default=str(ROOT / "src" / "llmclf" / "shipped" / "imdb-sentiment"))
    parser.add_argument("--logits", default=str(ROOT / "bench" / "results" / "shipped_threshold-2026-12-05.json"))
    parser.add_argument("--work", default="/tmp/weight_average")
    args = parser.parse_args(argv)
    from llmclf.predict import Classifier

    idx = unsure_reviews(Path(args.logits), args.band)
    texts, labels = imdb_validation()
    texts, labels = [texts[i] for i in idx], np.array([labels[i] for i in idx])
    for variant in args.variants:
        target = averaged_adapter(variant.split("+"), Path(args.run), Path(args.shipped),
                                  Path(args.work) / variant.replace("+", "_")[:80])
        started = time.time()
        probs = Classifier.from_pretrained(str(target)).predict_proba(texts)
        right = int(((probs[:, 1] >= 0.5) == labels).sum())
        np.save(str(target / f"probs_{args.band}.npy"), probs)
        print(json.dumps({"variant": variant, "n": len(idx), "right": right, "wrong": len(idx) - right,
                          "seconds": round(time.time() - started)}), flush=True)


if __name__ == "__main__":
    main()
