"""How sentiment models read the short texts the behaviour checks are made of: does a model that passes the
sarcasm check see sarcasm, or does it lean negative on every short text? Issue 13 item 6 asks for 64/72 checks
and sarcasm is most of the misses, so this tells a real ability apart from a lean before a recipe is built on it.

Every combination of llmclf.behaviour's phrases (not only the 12 cases a check draws): sincere praise ("The film
was brilliant."), sincere criticism, and sarcastic praise ("Wow, what a brilliant film. I only fell asleep
twice."), each model deciding as `predict` does. Per model: the share of each set called negative, and the
ROC-AUC of P(negative) between sarcastic and sincere praise (0.5: it cannot tell them apart; 1: every
sarcastic text is more negative than every sincere one), which no threshold or lean can change. Sarcastic texts
are longer, so the AUC is also taken against sincere praise lengthened by one of the checks' neutral sentences
("The film was brilliant. I paid with a card."). These are still a word or two shorter, so a rule that only
counts words scores 1.0 against sincere praise and 0.79 against the lengthened praise. Last, the behaviour
checks themselves on --draws draws of their cases (seed 0 is the draw every report uses): how much of a score
the draw decides.

    python bench/short_texts.py --model shipped=imdb-sentiment \\
        --zero-shot "plain=Review: {text}\\nSentiment:" --zero-shot chat            # ~2 min a model on 2 cores
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from common import RESULTS, machine, write_result

TARGET_CHECKS = 64  # issue 13 item 6's target, of 72
QUESTION = "Movie review: {text}\nIs the sentiment of this review negative or positive? Answer:"


def fill(templates: list[str], adjectives: list[str]) -> list[str]:
    """Every text the templates make with the checks' things and these adjectives, without repeats (a template
    without an adjective gives one text per thing)."""
    from llmclf.behaviour import THINGS

    texts = (t.format(thing=thing, adj=adj) for t, thing, adj in itertools.product(templates, THINGS, adjectives))
    return list(dict.fromkeys(texts))


def phrase_sets() -> dict[str, list[str]]:
    """Sincere praise, sincere criticism and sarcastic praise, from the behaviour checks' phrases, and the
    sincere praise lengthened by a neutral sentence (the length control)."""
    from llmclf.behaviour import BASES, FILLERS, NEGATIVE, POSITIVE, SARCASM

    praise = fill(BASES, POSITIVE)
    return {"praise": praise, "criticism": fill(BASES, NEGATIVE), "sarcasm": fill(SARCASM, POSITIVE),
            "long_praise": [f"{text} {FILLERS[i % len(FILLERS)]}" for i, text in enumerate(praise)]}


def by_template(called_negative: dict[str, bool]) -> dict[str, float]:
    """The share of each sarcasm template's texts called negative: which kinds of sarcasm a model catches."""
    from llmclf.behaviour import POSITIVE, SARCASM

    return {template: round(float(np.mean([called_negative[text] for text in fill([template], POSITIVE)])), 3)
            for template in SARCASM}


def parse_spec(text: str) -> tuple[str, str]:
    """NAME=VALUE, or VALUE alone (then also its name)."""
    name, _, value = text.partition("=")
    return (name, value) if value else (text, text)


def load(kind: str, value: str):
    from llmclf.predict import Classifier

    if kind == "model":
        return Classifier.from_pretrained(value)
    # a "\n" typed in a shell is read as a newline by llmclf.prompts.split_template, as for --prompt-template
    return Classifier.from_pretrained("smollm2-135m", labels=["negative", "positive"], prompt_template=value)


def checks_over_draws(classifier, draws: int) -> dict:
    """The behaviour checks (72 cases) on `draws` draws of their cases (seeds 0..draws-1; seed 0 is the draw
    every report uses): how much of a model's score is the draw."""
    from llmclf.behaviour import run_checks

    reports = [run_checks(classifier, seed=seed) for seed in range(draws)]
    passed = np.array([report["passed"] for report in reports])
    names = [check["name"] for check in reports[0]["checks"]]
    per_check = {name: np.mean([report["checks"][i]["passed"] for report in reports]) for i, name in enumerate(names)}
    return {"draws": draws, "n": reports[0]["n"], "passed_seed_0": int(passed[0]),
            "passed_mean": round(float(passed.mean()), 2), "passed_min": int(passed.min()),
            "passed_max": int(passed.max()), f"draws_at_least_{TARGET_CHECKS}": int((passed >= TARGET_CHECKS).sum()),
            "per_check_mean": {name: round(float(mean), 2) for name, mean in per_check.items()}}


def scores(classifier, sets: dict[str, list[str]]) -> dict:
    from sklearn.metrics import roc_auc_score

    from llmclf.behaviour import sentiment_labels

    negative = sentiment_labels(classifier.id2label)[0]
    p_negative, decided_negative = {}, {}
    for name, texts in sets.items():
        probs = np.atleast_2d(classifier.predict_proba(texts))
        p_negative[name], decided_negative[name] = probs[:, negative], classifier.decide(probs) == negative
    called_negative = {name: float(decided.mean()) for name, decided in decided_negative.items()}

    def auc(sincere: str, meant_negative: str) -> float:
        """ROC-AUC of P(negative) for telling the texts of set `meant_negative` from those of set `sincere`."""
        truth = np.r_[np.zeros(len(p_negative[sincere])), np.ones(len(p_negative[meant_negative]))]
        return round(float(roc_auc_score(truth, np.concatenate([p_negative[sincere], p_negative[meant_negative]]))),
                     3)

    return {"called_negative": {k: round(v, 3) for k, v in called_negative.items()},
            "mean_p_negative": {k: round(float(v.mean()), 3) for k, v in p_negative.items()},
            "sincere_accuracy": round((called_negative["criticism"] + 1 - called_negative["praise"]) / 2, 3),
            "sincere_auc": auc("praise", "criticism"), "sarcasm_vs_praise_auc": auc("praise", "sarcasm"),
            "sarcasm_vs_long_praise_auc": auc("long_praise", "sarcasm"),
            "sarcasm_by_template": by_template(dict(zip(sets["sarcasm"], decided_negative["sarcasm"])))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR: a trained model or shipped name")
    parser.add_argument("--zero-shot", action="append", default=[],
                        help="NAME=TEMPLATE: the bare backbone with this template (or 'chat'), label words "
                             "negative/positive, contextual calibration")
    parser.add_argument("--draws", type=int, default=20, help="draws of the behaviour checks' cases per model")
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
        classifier = load(kind, value)
        row = {"name": name, "kind": kind, ("template" if kind == "zero-shot" else "model"): value,
               **scores(classifier, sets), "checks": checks_over_draws(classifier, args.draws)}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        write_result(f"short_texts-{args.tag}" if args.tag else "short_texts", result, args.results_dir)


if __name__ == "__main__":
    main()
