"""More kinds of classification on real data (issue 14): multi-label GoEmotions, IMDb ratings as a regression
target, and an imbalanced IMDb set (5% positive), each against a TF-IDF baseline trained on the same rows in the
same run.

    python bench/tasks.py --tasks goemotions,rating,imbalance --budget-min 60
    python bench/tasks.py --tasks imbalance --budget-min 10 --results-dir /tmp      # one task, a short budget
    python bench/tasks.py --smoke --results-dir /tmp          # tiny random model, made-up texts: the script only
    python bench/tasks.py --budget-min goemotions=40,rating=25,imbalance=10 --resume bench/results/tasks-<date>.json

Each llmclf run is `llmclf train` in a subprocess (the command a user types) with the shipped model's LoRA recipe
(src/llmclf/configs/imdb-sentiment.yaml minus its template and label-word head, which are sentiment-specific)
and as many training rows as --budget-min allows at the training pace measured by bench/train_cpu.py on this
machine (`--tokens-per-s`): the row count is chosen before the run from the rows' token lengths, and the
measured training time is reported beside it. Validation metrics are read from the run's metrics.json, i.e.
computed the way `llmclf predict` runs the saved model.

- goemotions: ../shared/data/goemotions (28 labels, a list per comment) train -> validation split as given;
  macro-F1 (per-label thresholds tuned on validation, as saved) against TF-IDF + one-vs-rest logistic
  regression (threshold 0.5, and per-label tuned thresholds, for a like-for-like line).
- rating: IMDb's `rating` column (1-4 and 7-10) as a regression target (`--problem-type regression`); the
  80/20 seed-42 split; MAE and Spearman against TF-IDF ridge regression.
- imbalance: IMDb, all negatives of the 80/20 training part plus positives making 5%, validation drawn the
  same way from the held-out part; minority (positive) recall and average precision with `--class-weights
  balanced` and without, against logistic regression with and without class_weight="balanced".

Writes bench/results/tasks-<date>.json (tasks-smoke-<date>.json with --smoke) after every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import IMDB, ROOT, machine, write_result

GOEMOTIONS = ROOT.parent / "shared" / "data" / "goemotions"
TASKS = ("goemotions", "rating", "imbalance")
RECIPE = ["--model", "smollm2-135m", "--lora", "--lora-r", "16", "--lora-alpha", "32", "--lora-dropout", "0",
          "--lora-layers", "12", "--batch-size", "16", "--learning-rate", "4e-4", "--epochs", "1",
          "--max-length", "256", "--group-by-length", "--pad-to-multiple-of", "64"]
PAD_MULTIPLE = 64
# GoEmotions comments are short (tens of tokens): padded to 64 they would cost about twice their tokens, so its
# batches are packed (llmclf.packing) into rows of max_length.
PACKED_TASKS = {"goemotions"}
SMOKE_RECIPE = ["--model", "tiny-random-llama", "--epochs", "1", "--batch-size", "8", "--max-length", "64"]


# --- data --------------------------------------------------------------------------------------------------

def smoke_frames(task: str, n: int = 96):
    """Made-up rows with the shape of each task's data (no ../shared needed)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    words = "good bad great awful fine dull moving boring superb weak".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) + f" #{i}" for i in range(n)]
    if task == "goemotions":
        names = ["joy", "anger", "neutral"]
        labels = [sorted({names[i % 3], names[(i * 7) % 3]}) for i in range(n)]
        frame = pd.DataFrame({"text": texts, "labels": labels})
    elif task == "rating":
        frame = pd.DataFrame({"text": texts, "rating": rng.integers(1, 11, size=n).astype(float)})
    else:  # drawn from a balanced set as the real task is
        balanced = pd.DataFrame({"text": texts * 4, "label": np.arange(4 * n) % 2})
        frame = imbalanced(balanced, 0.125).iloc[:n]
    cut = int(n * 0.75)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def imdb_parts():
    """IMDb's 80/20 split with seed 42 (as `llmclf train` splits it), as two frames with text, label, rating."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_parquet(IMDB)
    train, validation = train_test_split(frame, test_size=0.2, random_state=42, stratify=frame["label"])
    return train.reset_index(drop=True), validation.reset_index(drop=True)


def imbalanced(frame, share: float, seed: int = 42):
    """All negatives, plus positives making `share` of the rows."""
    import pandas as pd

    negatives = frame[frame["label"] == 0]
    n_pos = round(len(negatives) * share / (1 - share))
    positives = frame[frame["label"] == 1].sample(n=n_pos, random_state=seed)
    return pd.concat([negatives, positives]).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def task_frames(task: str, smoke: bool):
    """(train, validation) frames with a `text` column and the task's label column."""
    import pandas as pd

    if smoke:
        return smoke_frames(task)
    if task == "goemotions":
        read = lambda name: pd.read_parquet(GOEMOTIONS / f"{name}.parquet", columns=["text", "labels"])
        train, validation = read("train"), read("validation")
        for part in (train, validation):
            part["labels"] = part["labels"].map(list)
        return train, validation
    train, validation = imdb_parts()
    if task == "rating":
        return train[["text", "rating"]].astype({"rating": float}), validation[["text", "rating"]].astype({"rating": float})
    return imbalanced(train[["text", "label"]], 0.05), imbalanced(validation[["text", "label"]], 0.05)


def rows_within_budget(texts: list[str], budget_s: float, tokens_per_s: float, max_length: int, packed: bool,
                       smoke: bool) -> int:
    """How many of the first training rows one epoch at `tokens_per_s` gets through in `budget_s`: a row costs its
    token count when batches are packed, else its length padded to the recipe's multiple of 64."""
    if smoke:
        return len(texts)
    from llmclf.models import load_tokenizer, resolve_backbone

    tokenizer = load_tokenizer(resolve_backbone("smollm2-135m"))
    lengths = np.minimum([len(ids) for ids in tokenizer(texts[:20000])["input_ids"]], max_length)
    if not packed:
        lengths = np.minimum(-(-lengths // PAD_MULTIPLE) * PAD_MULTIPLE, max_length)
    return int(min(len(texts), budget_s * tokens_per_s / float(lengths.mean())))


# --- baselines ---------------------------------------------------------------------------------------------

def tfidf(train_texts, validation_texts):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True)
    return vectorizer.fit_transform(train_texts), vectorizer.transform(validation_texts)


def tuned_f1_thresholds(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per label, the threshold on the validation probabilities with the best F1 (0.5 without positives)."""
    from sklearn.metrics import precision_recall_curve

    out = np.full(y.shape[1], 0.5)
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, j], probs[:, j])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        out[j] = thresholds[int(np.argmax(f1[:-1]))]
    return out


def goemotions_baseline(train, validation) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer().fit(list(train["labels"]) + list(validation["labels"]))
    y_train, y_val = binarizer.transform(train["labels"]), binarizer.transform(validation["labels"])
    x_train, x_val = tfidf(train["text"], validation["text"])
    model = OneVsRestClassifier(LogisticRegression(max_iter=1000, C=4.0), n_jobs=1).fit(x_train, y_train)
    probs = model.predict_proba(x_val)
    tuned = probs >= tuned_f1_thresholds(y_val, probs)
    return {"model": "TF-IDF (1-2 grams) + one-vs-rest logistic regression",
            "f1_macro": f1_score(y_val, probs >= 0.5, average="macro", zero_division=0),
            "f1_micro": f1_score(y_val, probs >= 0.5, average="micro", zero_division=0),
            "f1_macro_tuned_thresholds": f1_score(y_val, tuned, average="macro", zero_division=0),
            "f1_micro_tuned_thresholds": f1_score(y_val, tuned, average="micro", zero_division=0)}


def rating_baseline(train, validation) -> dict:
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    x_train, x_val = tfidf(train["text"], validation["text"])
    predicted = Ridge(alpha=1.0).fit(x_train, train["rating"]).predict(x_val)
    true = validation["rating"].to_numpy()
    return {"model": "TF-IDF (1-2 grams) + ridge regression", "mae": mean_absolute_error(true, predicted),
            "rmse": float(np.sqrt(mean_squared_error(true, predicted))), "spearman": spearmanr(true, predicted)[0]}


def imbalance_baseline(train, validation) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, recall_score

    x_train, x_val = tfidf(train["text"], validation["text"])
    rows = []
    for weights in (None, "balanced"):
        model = LogisticRegression(max_iter=1000, class_weight=weights).fit(x_train, train["label"])
        probs = model.predict_proba(x_val)[:, 1]
        rows.append({"model": f"TF-IDF + logistic regression, class_weight={weights}",
                     "recall_positive": recall_score(validation["label"], probs >= 0.5),
                     "average_precision": average_precision_score(validation["label"], probs)})
    return rows


# --- llmclf runs -------------------------------------------------------------------------------------------

def train_run(work: Path, name: str, train, validation, flags: list[str], smoke: bool) -> dict:
    """`llmclf train` on the two frames (written as Parquet); its validation metrics and timings."""
    train_file, validation_file = work / f"{name}-train.parquet", work / f"{name}-validation.parquet"
    train.to_parquet(train_file)
    validation.to_parquet(validation_file)
    out = work / name
    command = [sys.executable, "-m", "llmclf", "train", "--data", str(train_file), "--validation-data",
               str(validation_file), "--output", str(out), *(SMOKE_RECIPE if smoke else RECIPE), *flags]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"command": " ".join(command[1:]), "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"command": "llmclf " + " ".join(command[3:]), "train_rows": len(train), "validation_rows": len(validation),
            "train_seconds": metrics.get("training", {}).get("train_seconds"), "wall_seconds": round(wall, 1),
            "summary": summary(name.split("-")[0], metrics["validation"]), "validation": metrics["validation"]}


def summary(task: str, validation: dict) -> dict:
    """The numbers the task is judged by, from a run's validation metrics."""
    if task == "goemotions":
        keys = ("f1_macro", "f1_micro", "f1_weighted", "subset_accuracy", "hamming_loss")
    elif task == "rating":
        keys = ("mae", "rmse", "r2", "spearman", "pearson")
    else:
        positive = validation["label_names"][1]
        # As the saved model decides (its tuned threshold), and at the plain argmax.
        at_threshold = validation.get("at_threshold") or {}
        return {"recall_positive": at_threshold.get("recall", validation["per_class"][positive]["recall"]),
                "recall_positive_argmax": validation["per_class"][positive]["recall"],
                "average_precision": validation["average_precision"],
                "balanced_accuracy": validation["balanced_accuracy"], "f1_macro": validation["f1_macro"]}
    return {key: validation.get(key) for key in keys}


def run_task(task: str, args, work: Path) -> dict:
    train, validation = task_frames(task, args.smoke)
    budget_min = args.budgets[task]
    packed = task in PACKED_TASKS
    n = rows_within_budget(train["text"].tolist(), budget_min * 60, args.tokens_per_s, 256, packed, args.smoke)
    limited = train.iloc[:n]
    record = {"task": task, "train_rows_available": len(train), "train_rows_used": n,
              "validation_rows": len(validation), "budget_min": budget_min, "packed_batches": packed}
    print(f"{task}: {n} of {len(train)} training rows within {budget_min} min", flush=True)
    if task == "goemotions":
        record["baseline"] = goemotions_baseline(limited, validation)
        record["baseline_all_rows"] = goemotions_baseline(train, validation) if n < len(train) else None
        flags = ["--label-column", "labels"] + (["--packing"] if packed else [])
        record["llmclf"] = [train_run(work, task, limited, validation, flags, args.smoke)]
    elif task == "rating":
        record["baseline"] = rating_baseline(limited, validation)
        record["llmclf"] = [train_run(work, task, limited, validation,
                                      ["--label-column", "rating", "--problem-type", "regression"], args.smoke)]
    else:
        record["baseline"] = imbalance_baseline(limited, validation)
        record["llmclf"] = [train_run(work, f"{task}-{w}", limited, validation, ["--class-weights", w], args.smoke)
                            for w in ("none", "balanced")]
    return record


def task_budgets(text: str, tasks: list[str], parser) -> dict[str, float]:
    """--budget-min as minutes per task: "60" for every task, or "goemotions=40,rating=20,imbalance=10"."""
    try:
        if "=" not in text:
            return {task: float(text) for task in tasks}
        given = {key.strip(): float(value) for key, value in (pair.split("=") for pair in text.split(","))}
    except ValueError:
        parser.error(f"--budget-min {text!r} is neither minutes nor task=minutes pairs; e.g. 60 or goemotions=40")
    missing = [task for task in tasks if task not in given]
    if missing:
        parser.error(f"--budget-min gives no minutes for {', '.join(missing)}; add {missing[0]}=MINUTES")
    return {task: given[task] for task in tasks}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--budget-min", default="60",
                        help="training minutes per llmclf run: one number, or per task (goemotions=40,rating=20)")
    parser.add_argument("--tokens-per-s", type=float, default=1296.0,
                        help="training pace (bench/results/train_cpu-2026-11-30.json, LoRA top-12: 1,296)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--resume", help="a results JSON of an earlier run: its rows are kept and their tasks skipped")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    args.budgets = task_budgets(args.budget_min, tasks, parser)
    result = {**machine(), "bench": "tasks", "smoke": args.smoke,
              "settings": {"budget_min": args.budgets, "tokens_per_s": args.tokens_per_s,
                           "recipe": " ".join(SMOKE_RECIPE if args.smoke else RECIPE)}, "rows": []}
    if args.resume:
        earlier = json.loads(Path(args.resume).read_text())
        result["rows"] = earlier["rows"]
        tasks = [task for task in tasks if task not in {row["task"] for row in earlier["rows"]}]
        result["settings"]["budget_min"] = {**earlier["settings"]["budget_min"],
                                            **{task: args.budgets[task] for task in tasks}}
    name = "tasks-smoke" if args.smoke else "tasks"
    with tempfile.TemporaryDirectory(prefix="llmclf-tasks-") as work:
        for task in tasks:
            result["rows"].append(run_task(task, args, Path(work)))
            write_result(name, result, args.results_dir)
            print(json.dumps(result["rows"][-1], indent=1, default=str)[:3000], flush=True)


if __name__ == "__main__":
    main()
