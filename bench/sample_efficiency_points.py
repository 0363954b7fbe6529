"""bench/sample_efficiency.py's data and points: the IMDb and AG News tasks (or made-up ones for --smoke), and one
point of the learning curve: the untrained classifier of a variant (size 0) or llmclf's own train() on the first N
rows, each scored on the held-out rows."""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import IMDB, ROOT

AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news" / "sample.parquet"
RECIPE = "imdb-sentiment"  # src/llmclf/configs/imdb-sentiment.yaml: the shipped model's recipe


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
            if k not in ("prompt_template", "head_init", "label_words", "save_steps", "save_minutes")}
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
