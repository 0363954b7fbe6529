"""Accuracy against training time for a long `llmclf train` run (issue 13, item 6: the shipped model's curve).

    python bench/shipped_curve.py --snapshots /tmp/ckpt-snap --run src/llmclf/shipped/imdb-sentiment --n 1000 \\
        --steps 300,600,900,1200

--snapshots holds copies of the run's checkpoints (checkpoint-<step>/ with adapter_model.safetensors,
adapter_config.json and trainer_state.json, their modification times kept: `cp -p`), taken while it trained.
Each checkpoint is loaded as the finished model is (`Classifier.from_pretrained`, with the run's tokenizer,
template and truncation) and scored on the first
--n reviews of the IMDb held-out 20% (seed 42): accuracy of the argmax (no calibration), ROC-AUC. The finished
model (--run) is scored the same way, and the untrained start (step 0: the label-word head's zero-shot
classifier without contextual calibration, i.e. the weights training started from). Minutes of training are
each checkpoint's own record (llmclf_train_time.json, written by `llmclf train` as it saves: the seconds of
every process up to that checkpoint, so a run resumed on another day counts only the work it kept); a
checkpoint from an older llmclf without it falls back to wall-clock from the run's llmclf_config.yaml (written
just before training starts) to the checkpoint's save. The finished model's are metrics.json's train_seconds.

Writes bench/results/shipped_curve-<date>.json and a PNG of the curve beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, imdb_validation, machine, write_result

RUN_FILES = ("llmclf_config.yaml", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def score(classifier, texts: list[str], labels: list[int]) -> dict:
    from sklearn.metrics import roc_auc_score

    probs = classifier.predict_proba(texts)
    return {"accuracy": round(float(np.mean(probs.argmax(axis=1) == np.asarray(labels))), 4),
            "roc_auc": round(float(roc_auc_score(labels, probs[:, 1])), 4)}


def training_time(snapshot: Path, started: float) -> dict:
    """Minutes of training behind a checkpoint, and on which devices (one segment per process)."""
    from llmclf.trainer import TRAIN_TIME_FILE

    record = snapshot / TRAIN_TIME_FILE
    if record.is_file():
        segments = json.loads(record.read_text())["segments"]
        return {"minutes": round(sum(s["seconds"] for s in segments) / 60, 1),
                "devices": [s["device"] for s in segments]}
    saved = (snapshot / "adapter_model.safetensors").stat().st_mtime
    return {"minutes": round((saved - started) / 60, 1)}


def checkpoint_classifier(snapshot: Path, run: Path, work: Path):
    """A checkpoint as a loadable adapter directory: its weights beside the run's tokenizer and settings."""
    from llmclf.predict import Classifier

    target = work / snapshot.name
    target.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(snapshot / name, target / name)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy(run / name, target / name)
    return Classifier.from_pretrained(str(target), temperature=1.0)


def untrained_classifier(run: Path):
    """The weights training started from: the backbone with the label-word head, no calibration."""
    import yaml

    from llmclf.predict import Classifier

    config = yaml.safe_load((run / "llmclf_config.yaml").read_text())
    return Classifier.from_pretrained(config["model"], labels=config["label_names"], label_words=config["label_words"],
                                      prompt_template=config["prompt_template"], max_length=config["max_length"],
                                      truncation=config["truncation"], calibrate=False)


def draw(rows: list[dict], path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["minutes"] for r in rows], [r["accuracy"] for r in rows], marker="o", label="llmclf (argmax)")
    ax.axhline(target, linestyle="--", color="grey", label=f"target {target}")
    ax.set_xlabel("training wall-clock minutes on this CPU")
    ax.set_ylabel("accuracy (IMDb validation subset)")
    ax.set_title("imdb-sentiment: accuracy against training time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--steps", help="only these checkpoints, e.g. 300,600,900 (default: all)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--target", type=float, default=0.945)
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    from llmclf.predict import Classifier

    run = Path(args.run)
    started = (run / "llmclf_config.yaml").stat().st_mtime
    texts, labels = imdb_validation(args.n)
    rows = [{"step": 0, "minutes": 0.0, **score(untrained_classifier(run), texts, labels)}]
    print(rows[-1], flush=True)
    snapshots = sorted(Path(args.snapshots).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if args.steps:
        wanted = {int(step) for step in args.steps.split(",")}
        snapshots = [p for p in snapshots if int(p.name.split("-")[1]) in wanted]
    with tempfile.TemporaryDirectory() as work:
        for snapshot in snapshots:
            step = json.loads((snapshot / "trainer_state.json").read_text())["global_step"]
            rows.append({"step": step, **training_time(snapshot, started),
                         **score(checkpoint_classifier(snapshot, run, Path(work)), texts, labels)})
            print(rows[-1], flush=True)
    metrics = json.loads((run / "metrics.json").read_text())
    final = Classifier.from_pretrained(str(run), temperature=1.0, threshold=None)
    rows.append({"step": "final", "minutes": round(metrics["training"]["train_seconds"] / 60, 1),
                 **score(final, texts, labels)})
    print(rows[-1], flush=True)
    result = {**machine(), "bench": "shipped_curve", "run": str(run), "n": args.n, "target": args.target,
              "data": f"the first {args.n} reviews of the IMDb held-out 20% (seed 42)",
              "final_validation_all_5000": {k: metrics["validation"].get(k) for k in ("n", "accuracy", "roc_auc")},
              "rows": rows}
    out = write_result("shipped_curve", result, args.results_dir)
    draw(rows, out.with_suffix(".png"), args.target)


if __name__ == "__main__":
    main()
