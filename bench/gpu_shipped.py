"""Trains the shipped model's recipe on a lent GPU within a time budget, and packs the finished run for the CPU
side (issue 13, item 6: "where a GPU is lent, train it there instead: same targets, same artifact rules").
`bash bench/gpu_suite.sh --shipped` (the second device call) runs it after gathering the backbone and reviews:

    python bench/gpu_shipped.py --data reviews.jsonl.xz --work /tmp/llmclf-gpu --out $OUT --seconds 450

1. probe: the recipe on the first 640 training reviews (40 steps, a checkpoint every 10) gives the seconds a step
   on this device, from the checkpoints' own training-time records (steps 10 to 40: start-up left out);
2. epochs: the most, in 0.05 steps up to --max-epochs, whose steps fit what is left of --seconds after
   --finish-seconds (the finishing step: scoring the 5,000 held-out reviews, behaviour checks, report);
3. train: `llmclf train --recipe imdb-sentiment --epochs E --no-eval-each-epoch` on the 80/20 split (seed 42)
   of all the reviews: the same split as ../shared/data/imdb/train.parquet gives, the same recipe otherwise;
4. pack: the run folder as OUT/imdb-sentiment-gpu.tar.gz (13 MB) and OUT/gpu_shipped.json: the device, the
   probe, the epochs chosen, the training time, the run's figures and which targets it misses.

A training that would outlive its deadline is stopped; the JSON then says `finished: false` and nothing is
packed (its checkpoints, with the optimizer's state, are too big to come back). Back on the CPU: `tar -xzf
imdb-sentiment-gpu.tar.gz -C runs`, rescore it there (`llmclf evaluate` on the held-out rows; the commands are
in docs/shipped-model.md, "Training it on a GPU"), then `python bench/shipped_run.py ship --run
runs/imdb-sentiment-gpu`.
`--smoke` (the suite's --dry-run) trains on a few reviews, for the tests on the CPU.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from shipped_run import misses, paths, result

RECIPE_NAME, LABELS = "imdb-sentiment", ["neg", "pos"]
RECIPE = ["--label-names", ",".join(LABELS), "--recipe", RECIPE_NAME, "--no-eval-each-epoch"]
SMOKE_LIMITS = {"max_train_samples": 64, "max_eval_samples": 32}  # --smoke: a few reviews
PROBE_REVIEWS, PROBE_EVERY = 640, 10
RUN_NAME = "imdb-sentiment-gpu"


def llmclf(args: list[str], deadline: float, log, poll=None) -> int | None:
    """`llmclf ARGS` in a child process, stopped at `deadline` (time.monotonic), calling `poll()` every 50 ms
    while it runs: its exit status, or None if it was stopped."""
    child = subprocess.Popen([sys.executable, "-m", "llmclf", *args], stdout=log, stderr=subprocess.STDOUT)
    while child.poll() is None and time.monotonic() < deadline:
        if poll:
            poll()
        time.sleep(0.05)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
        return None
    return child.returncode


class StepClock:
    """Seconds an optimizer step, from the training-time record each checkpoint gets as it is saved
    (llmclf_train_time.json). Trainer keeps only the newest checkpoint, so they are read while training runs;
    the first and the last seen give the rate with the model's loading and the first steps' warm-up left out."""

    def __init__(self, run: Path):
        # checkpoints are made in the run's staging folder, and --keep-checkpoints moves the last into the run
        self.folders, self.seen = [paths(run)["checkpoints"], run / "checkpoints"], {}

    def __call__(self) -> None:
        from llmclf.trainer import TRAIN_TIME_FILE

        for record in (r for folder in self.folders for r in folder.glob(f"checkpoint-*/{TRAIN_TIME_FILE}")):
            try:
                segment = json.loads(record.read_text())["segments"][-1]
            except (OSError, ValueError, KeyError, IndexError):  # being written, or rotated away meanwhile
                continue
            self.seen[segment["steps"]] = segment["seconds"]

    def seconds_a_step(self) -> float:
        self()
        if len(self.seen) < 2:
            raise SystemExit(f"gpu_shipped: the probe's checkpoints gave {len(self.seen)} time record(s); need 2")
        first, last = min(self.seen), max(self.seen)
        return (self.seen[last] - self.seen[first]) / (last - first)


def steps_an_epoch(data: Path, limits: dict) -> int:
    """Optimizer steps in one epoch of the recipe on `data`: its training part as `llmclf train` splits it
    (llmclf.train.load_splits, with the same limits), in the recipe's batches."""
    from llmclf.config import resolve_train_args
    from llmclf.train import load_splits

    args = resolve_train_args(recipe=RECIPE_NAME, overrides={"data": str(data), "label_names": LABELS, **limits})
    batches = math.ceil(len(load_splits(args).train.texts) / args.batch_size)
    return math.ceil(batches / args.gradient_accumulation_steps)


def choose_epochs(seconds_left: float, step_seconds: float, steps_an_epoch: int, max_epochs: float,
                  finish_seconds: float, margin: float = 0.9) -> float:
    """The most epochs, a multiple of 0.05 up to max_epochs, whose steps fit `margin` of the seconds left after
    the finishing step; 0 when not even 0.05 of an epoch fits."""
    affordable = margin * (seconds_left - finish_seconds) / (step_seconds * steps_an_epoch)
    return round(min(max_epochs, math.floor(max(affordable, 0) * 20) / 20), 2)


def unpack_reviews(source: Path, work: Path) -> Path:
    """The carried reviews as the JSON lines `llmclf train` reads (xz-compressed in the carry)."""
    if source.suffix != ".xz":
        return source
    target = work / source.stem
    with lzma.open(source) as packed:
        target.write_bytes(packed.read())
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the IMDb reviews: JSON lines (text, label), .xz or not")
    parser.add_argument("--work", required=True, help="a scratch folder (the runs are made here)")
    parser.add_argument("--out", required=True, help="where the packed run and gpu_shipped.json go")
    parser.add_argument("--seconds", type=float, default=450, help="the whole job's budget, probe included")
    parser.add_argument("--finish-seconds", type=float, default=90, help="kept for the finishing step")
    parser.add_argument("--max-epochs", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="a few reviews only (a dry run on the CPU)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.seconds
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data = unpack_reviews(Path(args.data), work)
    probe_reviews = 48 if args.smoke else PROBE_REVIEWS
    every = 1 if args.smoke else PROBE_EVERY
    from llmclf.config import flag

    limits = SMOKE_LIMITS if args.smoke else {}
    small = [part for name, value in limits.items() for part in (flag(name), str(value))]
    summary = {"bench": "gpu_shipped", "smoke": args.smoke, "budget_seconds": args.seconds}
    summary_path = out / "gpu_shipped.json"

    def record(**fields) -> None:  # written as it goes: a call stopped at its limit still brings this back
        summary.update(fields)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")

    import torch

    record(device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    with open(out / "gpu_shipped.log", "ab") as log:
        probe = work / "probe"
        clock = StepClock(probe)
        rc = llmclf(["train", "--data", str(data), *RECIPE, "--output", str(probe), "--overwrite",
                     "--max-train-samples", str(probe_reviews), "--max-eval-samples", "32", "--epochs", "1",
                     "--save-steps", str(every), "--keep-checkpoints"], deadline, log, poll=clock)
        if rc != 0:
            record(stage="probe", rc=rc)
            raise SystemExit(f"gpu_shipped: the probe failed (rc {rc}); see gpu_shipped.log")
        step_seconds = clock.seconds_a_step()
        steps = steps_an_epoch(data, limits)
        epochs = choose_epochs(deadline - time.monotonic(), step_seconds, steps, args.max_epochs,
                               args.finish_seconds)
        record(probe={"seconds_a_step": round(step_seconds, 4), "reviews": probe_reviews,
                      "seconds": round(time.monotonic() - started, 1)},
               steps_an_epoch=steps, epochs=epochs)
        if epochs <= 0:
            raise SystemExit("gpu_shipped: no time left to train (see gpu_shipped.json)")
        run = work / RUN_NAME
        rc = llmclf(["train", "--data", str(data), *RECIPE, "--output", str(run), "--overwrite",
                     "--epochs", str(epochs), "--save-minutes", "1", *small], deadline, log)
    finished = rc == 0 and (run / "metrics.json").is_file()
    found = result(run) if finished else {}
    record(rc=rc, finished=finished, seconds=round(time.monotonic() - started, 1), result=found,
           misses=misses(found) if finished else None)
    if finished:
        with tarfile.open(out / f"{RUN_NAME}.tar.gz", "w:gz") as tar:
            tar.add(run, arcname=RUN_NAME)
    else:
        raise SystemExit(f"gpu_shipped: training {'ran out of time' if rc is None else f'failed (rc {rc})'}")


if __name__ == "__main__":
    main()
