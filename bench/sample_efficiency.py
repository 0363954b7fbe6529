"""Sample efficiency (issue 13, item 5): held-out accuracy after 0, 128, 512, 2,048 and 8,192 training examples,
for a random vs a label-word head, with no prompt template, a plain one, or `chat`, on IMDb and AG News.

    python bench/sample_efficiency.py --plan                        # the points and their estimated time only
    python bench/sample_efficiency.py --sizes 0,128,512 --time-budget-min 45
    python bench/sample_efficiency.py --datasets imdb --variants plain/label-words,none/random --sizes 0,32 \\
        --n-eval 32 --results-dir /tmp                                # a short real check
    python bench/sample_efficiency.py --smoke --results-dir /tmp    # tiny random model, made-up texts: the script only
    python bench/sample_efficiency.py --resume bench/results/sample_efficiency-<date>.json --sizes 2048
                                                                    # add points to an earlier file (same settings)

Data. IMDb: ../shared/data/imdb/train.parquet split 80/20 with seed 42 as `llmclf train` splits it (labels 0/1,
named negative/positive); AG News: ../shared/data/ag_news/sample.parquet (6,000 rows) split the same way (labels
0-3, named World/Sports/Business/Sci/Tech). Held-out accuracy is on the first --n-eval rows of each held-out
part; the next --n-validation rows are the runs' --validation-data (temperature, the binary threshold, the
per-epoch evaluation), so no training run sees an evaluation row and train's own split takes no examples. A
point with N examples trains on the first N rows of the training part: the same rows for every variant, so two
runs at one size differ only in the variant. AG News has 4,800 training rows, so its 8,192 point is not run (it
is listed under `not_run`).

Variants: template none (the bare text), plain ("Review: {text}\\nSentiment:" / "Article: {text}\\nTopic:") or
chat, times head_init random or label-words. The label words are the label names (negative/positive;
World/Sports/Business/Sci/Tech): in bench/results/zero_shot-2026-11-30.json the AG News names beat the words
world/sports/business/technology (0.430 vs 0.360 calibrated); --ag-news-words words switches to those.

Size 0 is the untrained classifier. label-words: the zero-shot classifier, `Classifier.from_pretrained(backbone,
labels=..., label_words=..., prompt_template=...)`, reported raw and with its contextual calibration (`accuracy`
is the calibrated one, what that call gives); with template none it is built the same way by hand (load_backbone,
init_label_word_head with the bare text's tail, contextual_bias), since from_pretrained substitutes `chat` for a
missing template. random: the backbone with the seed-42 random head a training run starts from, measured (it is
chance by construction, not assumed to be). Size N > 0: `llmclf.train.train(TrainArgs(...))` into a temporary
directory, the shipped model's recipe (src/llmclf/configs/imdb-sentiment.yaml: SmolLM2-135M, LoRA r16/alpha 32
on the top 12 layers, bf16 where the CPU has it, grouped by length) with batch 8, learning rate 2e-4, one epoch,
truncation head, --max-length tokens; then the saved model is loaded with `Classifier.from_pretrained(output)`
and scored on the held-out rows. `accuracy` is its decisions as shipped (with the binary threshold train tuned
on the validation rows), `accuracy_argmax` the plain argmax; IMDb rows also give ROC-AUC.

The order is size by size (every data set and variant at one size before the next size), so a run cut short by
--time-budget-min (no point starts that would end past it, by the planning estimate scaled to the pace of the
points done so far) or by a kill still holds whole sizes; --resume FILE then runs only the missing points. The JSON
(bench/results/sample_efficiency-<date>.json) and the learning-curve plot (the same name, .png) are rewritten
after every point; with --smoke they are sample_efficiency-smoke-<date>.*.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import IMDB, RESULTS, ROOT, machine

AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news" / "sample.parquet"
RECIPE = "imdb-sentiment"  # src/llmclf/configs/imdb-sentiment.yaml: the shipped model's recipe
TEMPLATES = ("none", "plain", "chat")
HEADS = ("random", "label-words")
VARIANTS = [f"{t}/{h}" for t in TEMPLATES for h in HEADS]
DEFAULT_VARIANT = "none/random"  # llmclf's defaults today: no prompt template, random head
# Planning figures for the estimate (2-core development CPU with AMX, SmolLM2-135M, measured by bench/train_cpu.py
# and bench/predict_cpu.py): useful training tokens/s of LoRA top-12, scoring tokens/s, and a trained point's fixed
# cost (two backbone loads, trainer set-up, validation twice, behaviour checks, report, save).
RATES = {"train_tokens_per_s": 1000.0, "score_tokens_per_s": 2300.0, "point_overhead_s": 35.0,
         "zero_shot_overhead_s": 8.0}
# Settings that must agree for --resume to add to an earlier file.
SAME_FOR_RESUME = ("model", "n_eval", "n_validation", "max_length", "truncation", "batch_size", "learning_rate",
                   "lora_layers", "epochs", "seed", "recipe", "ag_news_words")


@dataclass
class Part:
    texts: list[str]
    labels: list[int]


@dataclass
class Task:
    name: str
    labels: list[str]
    words: list[str]
    plain: str
    train: Part
    validation: Part
    evaluation: Part
    source: str


# --------------------------------------------------------------------------------------------------------- data

def split_source(path: Path) -> tuple[Part, Part]:
    from llmclf.data import load_labelled, split_train_validation

    train, held = split_train_validation(load_labelled(str(path)), 0.2, 42)
    return (Part(train.texts, [int(x) for x in train.labels]), Part(held.texts, [int(x) for x in held.labels]))


def real_tasks(names: list[str], n_eval: int, n_validation: int, ag_news_words: str) -> list[Task]:
    specs = {
        "imdb": (IMDB, ["negative", "positive"], None, "Review: {text}\\nSentiment:"),
        "ag_news": (AG_NEWS, ["World", "Sports", "Business", "Sci/Tech"],
                    ["world", "sports", "business", "technology"] if ag_news_words == "words" else None,
                    "Article: {text}\\nTopic:"),
    }
    tasks = []
    for name in names:
        path, labels, words, plain = specs[name]
        if not path.is_file():
            raise SystemExit(f"{name}: {path} not found (the real run reads ../shared/data; --smoke needs nothing)")
        train, held = split_source(path)
        if len(held.texts) < n_eval + n_validation:
            raise SystemExit(f"{name}: the held-out part has {len(held.texts)} rows, fewer than --n-eval "
                             f"{n_eval} + --n-validation {n_validation}")
        tasks.append(Task(name, labels, words or labels, plain, train,
                          Part(held.texts[n_eval:n_eval + n_validation], held.labels[n_eval:n_eval + n_validation]),
                          Part(held.texts[:n_eval], held.labels[:n_eval]),
                          f"{path.relative_to(ROOT.parent)}, 80/20 split seed 42; evaluation: the held-out part's "
                          f"first {n_eval} rows; validation: its next {n_validation}"))
    return tasks


SMOKE_WORDS = {
    "imdb": [["wonderful", "superb", "moving", "great"], ["dull", "awful", "boring", "terrible"]],
    "ag_news": [["election", "minister", "treaty"], ["goal", "match", "league"], ["profit", "shares", "merger"],
                ["software", "chip", "laptop"]],
}


def smoke_tasks(names: list[str], n_eval: int, n_validation: int, n_train: int) -> list[Task]:
    """Made-up texts whose class a keyword gives away, labels cycling so that any first N hold every class."""
    filler = "the a film story report said today after before week people new".split()

    def part(name: str, n: int, what: str) -> Part:
        rng = random.Random(f"{name}-{what}")  # each part its own: the evaluation rows never depend on the sizes
        classes = SMOKE_WORDS[name] if name == "ag_news" else [SMOKE_WORDS[name][1], SMOKE_WORDS[name][0]]
        texts, labels = [], []
        for i in range(n):
            label = i % len(classes)
            words = rng.sample(filler, rng.randint(2, 6)) + [rng.choice(classes[label])]
            rng.shuffle(words)
            texts.append(" ".join(words).capitalize() + ".")
            labels.append(label)
        return Part(texts, labels)

    specs = {"imdb": (["negative", "positive"], "Review: {text}\\nSentiment:"),
             "ag_news": (["World", "Sports", "Business", "Sci/Tech"], "Article: {text}\\nTopic:")}
    return [Task(name, specs[name][0], specs[name][0], specs[name][1], part(name, n_train, "train"),
                 part(name, n_validation, "validation"), part(name, n_eval, "evaluation"), "made-up texts (--smoke)")
            for name in names]


# ------------------------------------------------------------------------------------------------------ metrics

def scores(labels: list[int], probs: np.ndarray, predicted: np.ndarray, n_labels: int) -> dict:
    from sklearn.metrics import f1_score, roc_auc_score

    labels_ = np.asarray(labels)
    accuracy = float((predicted == labels_).mean())
    out = {"accuracy": round(accuracy, 4),
           "accuracy_ci95": round(1.96 * math.sqrt(accuracy * (1 - accuracy) / len(labels_)), 4),
           "f1_macro": round(float(f1_score(labels_, predicted, average="macro", labels=list(range(n_labels)),
                                            zero_division=0)), 4),
           "predicted_counts": np.bincount(predicted, minlength=n_labels).tolist(),
           # one digit per evaluation row: lets two variants be compared row by row (paired) later
           "predicted_ids": "".join(str(int(p)) for p in predicted)}
    if n_labels == 2:
        out["roc_auc"] = round(float(roc_auc_score(labels_, probs[:, 1])), 4) if len(set(labels)) == 2 else None
    return out


def mean_probs(logits: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """As Classifier.predict_proba: each text's windows' softmax probabilities averaged."""
    from llmclf.metrics import softmax

    probs = np.zeros((n, logits.shape[1]))
    np.add.at(probs, owner, softmax(logits.astype(np.float64)))
    return probs / np.bincount(owner, minlength=n)[:, None]


# ------------------------------------------------------------------------------------------------------- points

def template_of(task: Task, template: str) -> str | None:
    return {"none": None, "plain": task.plain, "chat": "chat"}[template]


def untrained_point(task: Task, template: str, head: str, settings: dict) -> dict:
    """Size 0: the untrained classifier of the variant, raw and with contextual calibration."""
    import torch

    from llmclf.models import load_backbone, quiet_progress
    from llmclf.predict import Classifier
    from llmclf.prompts import PromptEncoding
    from llmclf.zeroshot import contextual_bias, init_label_word_head

    prompt_template = template_of(task, template)
    options = dict(max_length=settings["max_length"], truncation="head", batch_size=settings["eval_batch_size"])
    if head == "label-words" and prompt_template is not None:
        how = "Classifier.from_pretrained(backbone, labels, label_words, prompt_template): zero-shot"
        classifier = Classifier.from_pretrained(settings["model"], labels=task.labels, label_words=task.words,
                                                prompt_template=prompt_template, **options)
    else:
        id2label = dict(enumerate(task.labels))
        with quiet_progress():
            model, tokenizer = load_backbone(settings["model"], id2label, seed=settings["seed"])
        if head == "label-words":  # the bare text: from_pretrained would substitute chat, so as train does it
            how = "load_backbone + init_label_word_head after the bare text (as train's prepare_head)"
            init_label_word_head(model, tokenizer, task.words, PromptEncoding.build(tokenizer, None).tail,
                                 settings["model"])
        else:
            how = f"load_backbone: the seed-{settings['seed']} random head a training run starts from"
        classifier = Classifier(model, tokenizer, prompt_template=prompt_template, **options)
        if classifier.bf16:
            classifier.model.to(torch.bfloat16)
    bias = classifier.label_bias if classifier.label_bias is not None else contextual_bias(classifier)
    classifier.label_bias = None
    started = time.perf_counter()
    logits, owner = classifier.window_logits(task.evaluation.texts)
    eval_seconds = time.perf_counter() - started
    n, k = len(task.evaluation.texts), len(task.labels)
    raw = mean_probs(logits, owner, n)
    calibrated = mean_probs(logits + bias, owner, n)
    raw_scores = scores(task.evaluation.labels, raw, raw.argmax(axis=1), k)
    cal_scores = scores(task.evaluation.labels, calibrated, calibrated.argmax(axis=1), k)
    chosen = cal_scores if head == "label-words" else raw_scores  # what llmclf gives by default for each
    brief = ("accuracy", "f1_macro", "predicted_counts", "roc_auc")
    return {**chosen, "accuracy_raw": raw_scores["accuracy"], "accuracy_calibrated": cal_scores["accuracy"],
            "raw": {key: raw_scores[key] for key in brief if key in raw_scores},
            "calibrated": {key: cal_scores[key] for key in brief if key in cal_scores},
            "accuracy_is": "calibrated" if head == "label-words" else "raw",
            "label_bias": [round(float(b), 4) for b in bias], "built_by": how,
            "precision": "bf16" if classifier.bf16 else "fp32",
            "eval_seconds": round(eval_seconds, 2), "eval_texts_per_s": round(n / eval_seconds, 2)}


def write_part(path: Path, part: Part, n: int | None = None) -> Path:
    import pandas as pd

    n = len(part.texts) if n is None else n
    pd.DataFrame({"text": part.texts[:n], "label": part.labels[:n]}).to_parquet(path, index=False)
    return path


def trained_point(task: Task, template: str, head: str, size: int, settings: dict, work: Path) -> dict:
    """Size N: llmclf's own train() on the first N training rows, then the saved model scored on the held-out rows."""
    from llmclf.config import read_yaml_config, recipe_path, resolve_train_args
    from llmclf.predict import Classifier
    from llmclf.train import train

    data = work / f"{task.name}-train-{size}.parquet"
    if not data.exists():
        write_part(data, task.train, size)
    validation = work / f"{task.name}-validation.parquet"
    if not validation.exists():
        write_part(validation, task.validation)
    output = Path(tempfile.mkdtemp(prefix=f"{task.name}-{template}-{head}-{size}-", dir=work)) / "model"
    # The recipe's LoRA and optimiser settings; the template, head and label words are this bench's variants.
    base = {k: v for k, v in read_yaml_config(recipe_path(RECIPE)).items()
            if k not in ("prompt_template", "head_init", "label_words", "save_steps")}
    args = resolve_train_args(overrides={**base,
        "data": str(data), "validation_data": str(validation), "label_names": task.labels,
        "model": settings["model"], "max_length": settings["max_length"], "truncation": "head",
        "prompt_template": template_of(task, template), "head_init": head,
        "label_words": task.words if head == "label-words" else None,
        "batch_size": settings["batch_size"], "learning_rate": settings["learning_rate"], "epochs": 1.0,
        "eval_batch_size": settings["eval_batch_size"], "max_eval_samples": settings["n_validation"],
        "lora_layers": settings["lora_layers"], "seed": settings["seed"], "output": str(output),
    })
    args.max_train_samples = None  # the file already holds exactly N rows
    started = time.perf_counter()
    train(args)
    point_train_seconds = time.perf_counter() - started
    metrics = json.loads((output / "metrics.json").read_text())
    training = metrics.get("training", {})
    classifier = Classifier.from_pretrained(str(output), batch_size=settings["eval_batch_size"])
    started = time.perf_counter()
    probs = classifier.predict_proba(task.evaluation.texts)
    eval_seconds = time.perf_counter() - started
    k = len(task.labels)
    shipped = scores(task.evaluation.labels, probs, classifier.decide(probs), k)
    argmax = scores(task.evaluation.labels, probs, probs.argmax(axis=1), k)
    shutil.rmtree(output.parent, ignore_errors=True)
    return {**shipped, "accuracy_argmax": argmax["accuracy"], "accuracy_is": "decisions as shipped (tuned threshold)",
            "threshold": classifier.threshold, "temperature": round(float(classifier.temperature), 4),
            "validation_accuracy": metrics.get("validation", {}).get("accuracy"),
            "train_seconds": training.get("train_seconds"), "train_loss": training.get("train_loss"),
            "train_call_seconds": round(point_train_seconds, 2),
            "precision": "bf16" if training.get("bf16") else "fp32",
            "eval_seconds": round(eval_seconds, 2), "eval_texts_per_s": round(len(probs) / eval_seconds, 2)}


# ----------------------------------------------------------------------------------------------------- estimate

def token_lengths(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.int64)
    cut = max_length * 8  # a huge text is not tokenized whole (as Classifier and training_windows cut it)
    ids = tokenizer([t[:cut] for t in texts], add_special_tokens=False)["input_ids"]
    return np.asarray([len(x) for x in ids])


def estimate(points: list[tuple], tasks: dict[str, Task], settings: dict) -> list[float]:
    """Seconds per point from the planning rates (settings["rates"]) and the real token counts of the rows each
    point reads."""
    from llmclf.models import load_tokenizer, resolve_backbone
    from llmclf.prompts import PromptEncoding

    if settings["model"] == "tiny-random-llama":
        from llmclf.models import default_tokenizer_dir

        tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    else:
        tokenizer = load_tokenizer(resolve_backbone(settings["model"]))
    length, rates = settings["max_length"], settings["rates"]
    biggest = max([p[2] for p in points] or [0])
    cache = {}
    for name, task in tasks.items():
        train = token_lengths(tokenizer, task.train.texts[:biggest], length)
        cache[name] = (np.concatenate([[0], np.cumsum(train)]), token_lengths(tokenizer, task.evaluation.texts, length),
                       token_lengths(tokenizer, task.validation.texts, length))
    out = []
    for name, variant, size in points:
        template = variant.split("/")[0]
        task = tasks[name]
        prompt = PromptEncoding.build(tokenizer, template_of(task, template), task.labels)
        extra = len(prompt.prefix) + len(prompt.suffix)
        cumulative, evaluation, validation = cache[name]
        score_tokens = np.minimum(evaluation + extra, length).sum()
        if size == 0:
            out.append(rates["zero_shot_overhead_s"] + score_tokens / rates["score_tokens_per_s"])
            continue
        n = min(size, len(cumulative) - 1)
        train_tokens = min(cumulative[n] + extra * n, length * n)  # a bound: texts are cut to max_length
        score_tokens += 2 * np.minimum(validation + extra, length).sum()  # per-epoch and final validation
        out.append(rates["point_overhead_s"] + train_tokens / rates["train_tokens_per_s"]
                   + score_tokens / rates["score_tokens_per_s"])
    return [float(x) for x in out]


class Pace:
    """The estimate corrected as points finish: each kind of point (untrained, trained) scaled by the ratio of
    its measured to its estimated seconds so far, so the time budget holds on a slower or busier machine."""

    def __init__(self):
        self.done = {True: [0.0, 0.0], False: [0.0, 0.0]}  # trained? -> [estimated, measured]

    def factor(self, size: int) -> float:
        estimated, measured = self.done[size > 0]
        if not estimated:  # nothing of this kind yet: borrow the other kind's ratio, else trust the plan
            estimated, measured = self.done[size == 0]
        return measured / estimated if estimated else 1.0

    def add(self, size: int, estimated: float, measured: float) -> None:
        self.done[size > 0][0] += estimated
        self.done[size > 0][1] += measured


# ------------------------------------------------------------------------------------------------ JSON and plot

COLOURS = {"none": "tab:gray", "plain": "tab:blue", "chat": "tab:orange"}
STYLES = {"label-words": ("-", "o"), "random": ("--", "s")}


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["settings"]["datasets"]
    positive = sorted({s for s in result["settings"]["sizes"] if s > 0}) or [1]
    fig, axes = plt.subplots(1, len(names), figsize=(6.4 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in result["rows"] if r["dataset"] == name and "accuracy" in r]
        for variant in result["settings"]["variants"]:
            points = sorted((r["train_examples"], r["accuracy"]) for r in rows if r["variant"] == variant)
            if not points:
                continue
            template, head = variant.split("/")
            line, marker = STYLES[head]
            ax.plot(*zip(*points), line, marker=marker, color=COLOURS[template], label=variant, markersize=5)
            zero = [r for r in rows if r["variant"] == variant and r["train_examples"] == 0 and head == "label-words"]
            if zero:  # the zero-shot point without calibration, hollow
                ax.plot([0], [zero[0]["accuracy_raw"]], marker=marker, color=COLOURS[template], fillstyle="none",
                        linestyle="none", markersize=7)
        labels = result["labels"].get(name) or []
        if labels:
            ax.axhline(1 / len(labels), color="black", linewidth=0.8, linestyle=":", label="chance")
        ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlim(left=0)
        ticks = [0] + positive
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:,}" for t in ticks])
        lowest = min([r["accuracy"] for r in rows] + [r["accuracy_raw"] for r in rows if "accuracy_raw" in r] + [1.0])
        ax.set_ylim(max(0.0, min((1 / len(labels) if labels else 0.5) - 0.1, lowest - 0.05)), 1.0)
        ax.set_xlabel("training examples (symlog; 0 = untrained, hollow = zero-shot uncalibrated)")
        ax.set_ylabel(f"accuracy on {result['settings']['n_eval']} held-out texts")
        ax.set_title(f"{name} ({result['model']})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def summarise(result: dict) -> list[dict]:
    """Per data set and size: the best variant against llmclf's default (none/random), paired on the same rows."""
    from scipy.stats import binomtest

    out = []
    for name in result["settings"]["datasets"]:
        for size in result["settings"]["sizes"]:
            rows = {r["variant"]: r for r in result["rows"]
                    if r["dataset"] == name and r["train_examples"] == size and "accuracy" in r}
            if not rows:
                continue
            best = max(rows.values(), key=lambda r: (r["accuracy"], r["variant"] == DEFAULT_VARIANT))
            entry = {"dataset": name, "train_examples": size, "best": best["variant"],
                     "best_accuracy": best["accuracy"],
                     "accuracies": {v: r["accuracy"] for v, r in rows.items()}}
            default = rows.get(DEFAULT_VARIANT)
            if default is not None and best is not default:
                truth = result["eval_labels"][name]
                a = [int(c) for c in best["predicted_ids"]]
                b = [int(c) for c in default["predicted_ids"]]
                only_best = sum(x == t != y for x, y, t in zip(a, b, truth))
                only_default = sum(y == t != x for x, y, t in zip(a, b, truth))
                entry.update(default_accuracy=default["accuracy"],
                             gain=round(best["accuracy"] - default["accuracy"], 4),
                             right_only_best=only_best, right_only_default=only_default,
                             sign_test_p=round(float(binomtest(only_best, only_best + only_default).pvalue), 4)
                             if only_best + only_default else 1.0)
            out.append(entry)
    return out


def save(result: dict, json_path: Path, png_path: Path) -> None:
    result["summary"] = summarise(result)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)  # a kill mid-write never leaves half a file
    try:
        draw(result, png_path)
    except Exception as exc:  # noqa: BLE001 - a plot that fails must not cost the numbers
        print(f"warning: the plot failed: {exc!r}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------------- main

def parse_list(value: str, known: list[str], what: str) -> list[str]:
    chosen = []
    for token in (t.strip() for t in value.split(",") if t.strip()):
        matches = [k for k in known if token in (k, *k.split("/"))]
        if not matches:
            raise SystemExit(f"{what} {token}: unknown; choose from {', '.join(known)}")
        chosen += [m for m in matches if m not in chosen]
    return [k for k in known if k in chosen]  # in the canonical order


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--datasets", default="imdb,ag_news", help="comma-separated: imdb, ag_news")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated TEMPLATE/HEAD ids, or a template (none, plain, chat) or head "
                             "(random, label-words) for all of its variants")
    parser.add_argument("--sizes", default=None, help="training examples per point (default 0,128,512,2048,8192)")
    parser.add_argument("--n-eval", type=int, default=300, help="held-out texts scored per point")
    parser.add_argument("--n-validation", type=int, default=64, help="validation rows of each training run")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--lora-layers", type=int, default=12, help="LoRA on the top N layers (the recipe's 12)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ag-news-words", choices=("names", "words"), default="names",
                        help="AG News label words: the label names, or world,sports,business,technology")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help="start no point whose estimate (corrected by the points done) would end past this "
                             "many minutes; finish cleanly")
    for key, value in RATES.items():
        parser.add_argument("--" + key.replace("_", "-"), type=float, default=value,
                            help=f"planning figure for the estimate (default {value:g})")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--resume", default=None, metavar="JSON",
                        help="add to an earlier result file (same settings): its finished points are kept and not "
                             "run again, and it is rewritten in place")
    parser.add_argument("--plan", action="store_true", help="print the points and the time estimate, run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny-random-llama, made-up texts, sizes 0,8, n-eval 8: checks the script only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.n_eval, args.n_validation, args.max_length = "tiny-random-llama", 8, 4, 64
        args.lora_layers = 1  # the tiny model has 2 layers
    args.sizes = args.sizes or ("0,8" if args.smoke else "0,128,512,2048,8192")
    return args


def merge_list(old: list, new: list, order: list | None = None) -> list:
    union = list(old) + [x for x in new if x not in old]
    return sorted(union, key=order.index) if order else sorted(union)


def start_result(args, settings: dict, tasks: dict[str, Task], not_run: list[dict]) -> tuple[dict, Path, Path]:
    """A fresh result, or with --resume the earlier one (checked to have the same settings) with this run's
    data sets, variants and sizes added."""
    info = machine()
    fresh = {"bench": "sample_efficiency", **info, "smoke": args.smoke, "model": args.model, "settings": settings,
             "data": {name: t.source for name, t in tasks.items()},
             "labels": {name: t.labels for name, t in tasks.items()},
             "label_words": {name: t.words for name, t in tasks.items()},
             "eval_labels": {name: t.evaluation.labels for name, t in tasks.items()},
             "rows": [], "not_run": list(not_run), "stopped": None, "runs": []}
    if args.resume is None:
        directory = Path(args.results_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"sample_efficiency{'-smoke' if args.smoke else ''}-{info['date']}"
        return fresh, directory / f"{stem}.json", directory / f"{stem}.png"
    json_path = Path(args.resume)
    if not json_path.is_file():
        raise SystemExit(f"--resume {json_path}: no such file")
    old = json.loads(json_path.read_text())
    differ = [k for k in SAME_FOR_RESUME if old["settings"].get(k) != settings[k]]
    if differ or old.get("smoke") != args.smoke:
        raise SystemExit(f"--resume {json_path}: settings differ ({', '.join(differ) or 'smoke'}: "
                         + ", ".join(f"{k} {old['settings'].get(k)!r} there, {settings[k]!r} here" for k in differ)
                         + "); pass the same settings, or start a new file")
    for name in tasks:
        if name in old["eval_labels"] and old["eval_labels"][name] != fresh["eval_labels"][name]:
            raise SystemExit(f"--resume {json_path}: the {name} evaluation rows differ; start a new file")
    s = old["settings"]
    s["datasets"] = merge_list(s["datasets"], settings["datasets"], ["imdb", "ag_news"])
    s["variants"] = merge_list(s["variants"], settings["variants"], VARIANTS)
    s["sizes"] = merge_list(s["sizes"], settings["sizes"])
    s["templates"].update(settings["templates"])
    s["rates"], s["time_budget_min"] = settings["rates"], settings["time_budget_min"]
    for key in ("data", "labels", "label_words", "eval_labels"):
        old[key].update(fresh[key])
    old["rows"] = [r for r in old["rows"] if "error" not in r]  # failed points are run again
    done = {(r["dataset"], r["variant"], r["train_examples"]) for r in old["rows"]}
    seen, old_not_run = set(done), []
    for r in old.get("not_run", []) + not_run:  # earlier reasons first; a point done since is dropped
        key = (r["dataset"], r["variant"], r["train_examples"])
        if key not in seen:
            seen.add(key)
            old_not_run.append(r)
    old["not_run"] = old_not_run
    old["stopped"] = None
    old.setdefault("runs", [])
    return old, json_path, json_path.with_suffix(".png")


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    datasets = parse_list(args.datasets, ["imdb", "ag_news"], "--datasets")
    variants = parse_list(args.variants, VARIANTS, "--variants")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not datasets or not variants or not sizes or min(sizes) < 0:
        raise SystemExit("--datasets, --variants and --sizes each need at least one valid entry")
    tasks = {t.name: t for t in (smoke_tasks(datasets, args.n_eval, args.n_validation, max(sizes)) if args.smoke
                                 else real_tasks(datasets, args.n_eval, args.n_validation, args.ag_news_words))}
    settings = {"model": args.model, "datasets": datasets, "variants": variants, "sizes": sizes,
                "n_eval": args.n_eval, "n_validation": args.n_validation, "max_length": args.max_length,
                "truncation": "head", "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "eval_batch_size": args.eval_batch_size, "lora_layers": args.lora_layers, "epochs": 1, "seed": 42,
                "recipe": RECIPE,
                "recipe_overrides": "batch_size, learning_rate, lora_layers, epochs 1, max_length, truncation head, "
                                    "prompt_template, head_init, label_words, validation_data, max_eval_samples = "
                                    "n_validation",
                "time_budget_min": args.time_budget_min, "ag_news_words": args.ag_news_words,
                "rates": {key: getattr(args, key) for key in RATES},
                "templates": {name: {"none": None, "plain": t.plain, "chat": "chat"} for name, t in tasks.items()}}

    points, not_run = [], []
    for size in sizes:  # size by size: a run cut short still holds whole sizes
        for name in datasets:
            for variant in variants:
                if size > len(tasks[name].train.texts):
                    not_run.append({"dataset": name, "variant": variant, "train_examples": size,
                                    "reason": f"the training part holds {len(tasks[name].train.texts)} rows"})
                else:
                    points.append((name, variant, size))
    result, json_path, png_path = (None, None, None) if args.plan else start_result(args, settings, tasks, not_run)
    if result is not None:
        done = {(r["dataset"], r["variant"], r["train_examples"]) for r in result["rows"]}
        kept = len(points)
        points = [p for p in points if p not in done]
        result["not_run"] = [r for r in result["not_run"]  # to be run now (an earlier run's budget left them)
                             if (r["dataset"], r["variant"], r["train_examples"]) not in set(points)]
        if kept != len(points):
            print(f"--resume: {kept - len(points)} of these points are already in {json_path}; not run again")
    seconds = estimate(points, tasks, settings) if points else []
    rates = settings["rates"]
    print(f"{len(points)} points to run ({len(not_run)} not possible); estimated at the planning rates "
          f"({rates['train_tokens_per_s']:g} train tokens/s, {rates['score_tokens_per_s']:g} scoring tokens/s, "
          f"{rates['point_overhead_s']:g} s per trained point: an idle 2-core AMX CPU):")
    total = 0.0
    for (name, variant, size), s in zip(points, seconds):
        total += s
        print(f"  {name:<8} {variant:<18} {size:>6,}  ~{s / 60:5.1f} min  (cumulative {total / 60:6.1f} min)")
    print(f"estimated total: {total / 60:.1f} min" + (" (tiny model: the rates do not apply)" if args.smoke else ""),
          flush=True)
    if args.plan:
        return

    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "points": len(points),
           "estimated_total_min": round(total / 60, 1), "time_budget_min": args.time_budget_min}
    result["runs"].append(run)
    pace = Pace()
    with tempfile.TemporaryDirectory(prefix="sample-efficiency-") as scratch:
        work = Path(scratch)
        for i, ((name, variant, size), planned) in enumerate(zip(points, seconds)):
            elapsed = time.perf_counter() - started
            guess = planned * pace.factor(size)
            if args.time_budget_min is not None and elapsed + guess > args.time_budget_min * 60:
                result["stopped"] = (f"time budget: {elapsed / 60:.1f} min spent, the next point "
                                     f"({name} {variant} {size}) estimated {guess / 60:.1f} min at the pace so far, "
                                     f"budget {args.time_budget_min} min")
                result["not_run"] += [{"dataset": n, "variant": v, "train_examples": s, "reason": "time budget"}
                                      for n, v, s in points[i:]]
                print(f"stopping: {result['stopped']}", flush=True)
                break
            template, head = variant.split("/")
            task = tasks[name]
            print(f"[{i + 1}/{len(points)}] {name} {variant} {size} examples (~{guess / 60:.1f} min)", flush=True)
            row = {"dataset": name, "variant": variant, "template": template,
                   "prompt_template": template_of(task, template), "head_init": head,
                   "label_words": task.words if head == "label-words" else None, "train_examples": size,
                   "train_label_counts": np.bincount(task.train.labels[:size], minlength=len(task.labels)).tolist(),
                   "n_eval": len(task.evaluation.texts), "estimated_seconds": round(planned, 1)}
            point_started = time.perf_counter()
            try:
                row.update(untrained_point(task, template, head, settings) if size == 0
                           else trained_point(task, template, head, size, settings, work))
            except Exception as exc:  # noqa: BLE001 - one failed point must not cost the others
                traceback.print_exc()
                row["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            row["point_seconds"] = round(time.perf_counter() - point_started, 2)
            pace.add(size, planned, row["point_seconds"])
            gc.collect()  # the point's models, before the next one loads its own
            result["rows"].append(row)
            run["elapsed_min"] = round((time.perf_counter() - started) / 60, 2)
            save(result, json_path, png_path)
            if "error" in row:
                print(f"    error: {row['error']}", flush=True)
            else:
                extra = (f"raw {row['accuracy_raw']:.3f}, calibrated {row['accuracy_calibrated']:.3f}" if size == 0
                         else f"argmax {row['accuracy_argmax']:.3f}, train {row['train_seconds']} s")
                auc = f", ROC-AUC {row['roc_auc']:.3f}" if row.get("roc_auc") is not None else ""
                left = sum(p * pace.factor(z) for (_, _, z), p in zip(points[i + 1:], seconds[i + 1:]))
                print(f"    accuracy {row['accuracy']:.3f} ±{row['accuracy_ci95']:.3f}{auc} ({extra}); point "
                      f"{row['point_seconds']:.0f} s (planned {planned:.0f} s); ~{left / 60:.1f} min left at this pace",
                      flush=True)
    run["elapsed_min"] = round((time.perf_counter() - started) / 60, 2)
    save(result, json_path, png_path)
    print(f"wrote {json_path} and {png_path}")
    print("best variant per data set and size (against the default none/random, paired on the same rows):")
    for entry in result["summary"]:
        against = (f"; default {entry['default_accuracy']:.3f}, gain {entry['gain']:+.3f}, sign test "
                   f"p={entry['sign_test_p']:.3g}" if "default_accuracy" in entry else "")
        print(f"  {entry['dataset']:<8} {entry['train_examples']:>6,}: {entry['best']} {entry['best_accuracy']:.3f}"
              f"{against}")
    errors = sum("error" in r for r in result["rows"])
    print(f"sample_efficiency: {len(result['rows'])} points, {errors} errors, {len(result['not_run'])} not run, "
          f"{run['elapsed_min']} min")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
