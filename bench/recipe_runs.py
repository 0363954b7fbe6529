"""Accuracy per training time of training settings (issue 13 item 1): `llmclf train --recipe imdb-sentiment`
(the shipped model's recipe; `--recipe` picks another) once per named run, each with its own extra flags and
number of training reviews, then scored by the run's own validation pass (metrics.json: the model's default
truncation, as `predict` runs it). Every run's measured time is recorded, so that runs sized for equal time can
be checked to be equal.

    python bench/recipe_runs.py --eval 500 --run "top20=1120=" --run "top20-compiled=1120=--torch-compile" \\
        --run "top4=3360=--lora-layers 4"                                   # ~40 min on 2 AMX cores

Size each run's reviews from bench/train_cpu.py's steps/s on the same machine (batches of 16). `--keep DIR` keeps
each run's model (DIR/NAME) for `llmclf check` or shipping; by default they are removed.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import IMDB, RESULTS, ROOT, machine, trained_model_scores, write_result


def parse_run(text: str) -> tuple[str, int, list[str]]:
    """NAME=REVIEWS=FLAGS, e.g. "top4=3360=--lora-layers 4" (FLAGS may be empty)."""
    parts = text.split("=", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
        raise SystemExit(f"--run: expected NAME=REVIEWS=FLAGS like 'top4=3360=--lora-layers 4', got {text!r}")
    return parts[0], int(parts[1]), shlex.split(parts[2])


def train_command(data: str, label_names: str, recipe: str, reviews: int, flags: list[str], n_eval: int,
                  output: Path) -> list[str]:
    return [sys.executable, "-m", "llmclf", "train", "--data", data,
            *(["--label-names", label_names] if label_names else []),
            "--recipe", recipe, "--max-train-samples", str(reviews), "--max-eval-samples", str(n_eval),
            "--save-steps", "100000", "--save-minutes", "100000", *flags, "--output", str(output)]


def one_run(args, name: str, reviews: int, flags: list[str], workdir: Path) -> dict:
    output = workdir / name
    command = train_command(args.data, args.label_names, args.recipe, reviews, flags, args.eval, output)
    row = {"run": name, "flags": flags, "train_reviews": reviews,
           "command": shlex.join(["llmclf", *command[3:]]).replace(str(output), "OUT")}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    row["command_wall_s"] = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        return {**row, "error": done.stderr.strip().splitlines()[-3:]}
    scores = trained_model_scores(output)
    return {**row, **{key: scores[key] for key in ("n_eval", "accuracy", "roc_auc", "ece", "steps",
                                                   "behaviour_passed", "behaviour_checks", "train_seconds")}}


def shared_name(data: str) -> str:
    """The data path as the results file names it: shared/... for the shared data, not this machine's path."""
    path = Path(data).resolve()
    return str(path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT.parent) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=REVIEWS=FLAGS, repeated")
    parser.add_argument("--recipe", default="imdb-sentiment", help="the recipe every run starts from (default: "
                                                                  "imdb-sentiment, the shipped model's)")
    parser.add_argument("--eval", type=int, default=500, help="validation reviews scored per run")
    parser.add_argument("--data", default=str(IMDB), help="labelled texts (default: the shared IMDb train split)")
    parser.add_argument("--label-names", default="neg,pos", help="names of integer labels ('' for string labels)")
    parser.add_argument("--tag", default=None, help="results file recipe_runs-TAG-<date>.json")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--keep", default=None, help="keep each run's model in KEEP/NAME (default: a temporary "
                                                      "folder, removed at the end)")
    args = parser.parse_args()
    runs = [parse_run(text) for text in args.run]
    result = {"bench": "recipe_runs", **machine(), "recipe": f"{args.recipe} (src/llmclf/configs)",
              "data": f"{shared_name(args.data)}, 80/20 split seed 42: the first REVIEWS training rows, the first "
                      "--eval held-out rows", "rows": []}
    with tempfile.TemporaryDirectory(prefix="recipe-runs-") as workdir:
        for name, reviews, flags in runs:
            row = one_run(args, name, reviews, flags, Path(args.keep or workdir))
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
            # after each run, so that a killed bench keeps the rows it finished
            write_result(f"recipe_runs-{args.tag}" if args.tag else "recipe_runs", result, args.results_dir)


if __name__ == "__main__":
    main()
