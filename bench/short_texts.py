"""How sentiment models read the short texts the behaviour checks are made of: does a model that passes the
sarcasm check see sarcasm, or does it lean negative on every short text? Issue 13 item 6 asks for 64/72 checks
and sarcasm is most of the misses, so this tells a real ability apart from a lean before a recipe is built on it.

Every combination of llmclf.behaviour's phrases (not only the 12 cases a check draws): sincere praise ("The film
was brilliant."), sincere criticism, and sarcastic praise ("Wow, what a brilliant film. I only fell asleep
twice."), each model deciding as `predict` does. Per model: the share of each set called negative, and the
ROC-AUC of P(negative) between sarcastic and sincere praise (0.5: it cannot tell them apart; 1: every
sarcastic text is more negative than every sincere one), which no threshold or lean can change.

    python bench/short_texts.py --model shipped=imdb-sentiment \\
        --zero-shot "plain=Review: {text}\\nSentiment:" --zero-shot chat            # ~3 min on 2 cores
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from common import RESULTS, machine, write_result

QUESTION = "Movie review: {text}\nIs the sentiment of this review negative or positive? Answer:"


def fill(templates: list[str], adjectives: list[str]) -> list[str]:
    """Every text the templates make with the checks' things and these adjectives, without repeats (a template
    without an adjective gives one text per thing)."""
    from llmclf.behaviour import THINGS

    texts = (t.format(thing=thing, adj=adj) for t, thing, adj in itertools.product(templates, THINGS, adjectives))
    return list(dict.fromkeys(texts))


def phrase_sets() -> dict[str, list[str]]:
    """Sincere praise, sincere criticism and sarcastic praise, from the behaviour checks' phrases."""
    from llmclf.behaviour import BASES, NEGATIVE, POSITIVE, SARCASM

    return {"praise": fill(BASES, POSITIVE), "criticism": fill(BASES, NEGATIVE), "sarcasm": fill(SARCASM, POSITIVE)}


def sarcasm_by_template(classifier, negative: int) -> dict[str, float]:
    """The share of each sarcasm template's texts called negative: which kinds of sarcasm a model catches."""
    from llmclf.behaviour import POSITIVE, SARCASM

    return {template: round(float(np.mean(classifier.decide(np.atleast_2d(classifier.predict_proba(
        fill([template], POSITIVE)))) == negative)), 3) for template in SARCASM}


def parse_spec(text: str) -> tuple[str, str]:
    """NAME=VALUE, or VALUE alone (then also its name)."""
    name, _, value = text.partition("=")
    return (name, value) if value else (text, text)


def load(kind: str, value: str):
    from llmclf.predict import Classifier

    if kind == "model":
        return Classifier.from_pretrained(value)
    template = value.encode().decode("unicode_escape") if value != "chat" else value  # "\n" typed in a shell
    return Classifier.from_pretrained("smollm2-135m", labels=["negative", "positive"], prompt_template=template)


def scores(classifier, sets: dict[str, list[str]]) -> dict:
    from sklearn.metrics import roc_auc_score

    from llmclf.behaviour import sentiment_labels

    negative = sentiment_labels(classifier.id2label)[0]
    p_negative, called_negative = {}, {}
    for name, texts in sets.items():
        probs = np.atleast_2d(classifier.predict_proba(texts))
        p_negative[name] = probs[:, negative]
        called_negative[name] = float(np.mean(classifier.decide(probs) == negative))
    sincere = np.concatenate([p_negative["praise"], p_negative["criticism"]])
    sincere_truth = np.r_[np.zeros(len(p_negative["praise"])), np.ones(len(p_negative["criticism"]))]
    irony = np.concatenate([p_negative["praise"], p_negative["sarcasm"]])
    irony_truth = np.r_[np.zeros(len(p_negative["praise"])), np.ones(len(p_negative["sarcasm"]))]
    return {"called_negative": {k: round(v, 3) for k, v in called_negative.items()},
            "mean_p_negative": {k: round(float(v.mean()), 3) for k, v in p_negative.items()},
            "sincere_accuracy": round((called_negative["criticism"] + 1 - called_negative["praise"]) / 2, 3),
            "sincere_auc": round(float(roc_auc_score(sincere_truth, sincere)), 3),
            "sarcasm_vs_praise_auc": round(float(roc_auc_score(irony_truth, irony)), 3),
            "sarcasm_by_template": sarcasm_by_template(classifier, negative)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR: a trained model or shipped name")
    parser.add_argument("--zero-shot", action="append", default=[],
                        help="NAME=TEMPLATE: the bare backbone with this template (or 'chat'), label words "
                             "negative/positive, contextual calibration")
    parser.add_argument("--tag", default=None, help="results file short_texts-TAG-<date>.json")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args()
    specs = [("model", *parse_spec(s)) for s in args.model] + [("zero-shot", *parse_spec(s)) for s in args.zero_shot]
    if not specs:
        specs = [("model", "shipped", "imdb-sentiment"), ("zero-shot", "question", QUESTION)]
    sets = phrase_sets()
    result = {"bench": "short_texts", **machine(), "texts": {k: len(v) for k, v in sets.items()},
              "examples": {k: v[:2] for k, v in sets.items()}, "rows": []}
    for kind, name, value in specs:
        row = {"name": name, "kind": kind, ("template" if kind == "zero-shot" else "model"): value,
               **scores(load(kind, value), sets)}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        write_result(f"short_texts-{args.tag}" if args.tag else "short_texts", result, args.results_dir)


if __name__ == "__main__":
    main()
