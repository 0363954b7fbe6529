"""CheckList-style behaviour checks for sentiment classifiers (Ribeiro et al., 2020), with templates of our own.

    llmclf check --model runs/imdb

>>> report = run_checks(Classifier.from_pretrained("runs/imdb"))      # doctest: +SKIP
>>> {c["name"]: c["pass_rate"] for c in report["checks"]}             # doctest: +SKIP
{'negation': 0.58, 'intensifiers': 0.92, 'sarcasm': 0.25, 'neutral_filler': 1.0, 'names_and_places': 1.0, 'typos': 0.92}

Three kinds of test:
- MFT (minimum functionality): a text with an expected label; passes when the prediction is that label.
- INV (invariance): a text and a harmless edit of it; passes when both get the same label.
- DIR (directional): an edit that should strengthen the expected label; passes when that label's probability
  does not fall by more than DIR_TOLERANCE.

Which models are sentiment models: exactly two labels, one named neg/negative/bad and the other
pos/positive/good (case-insensitive). Others are checked only when the caller names the two labels.
The cases come from fixed templates and a seeded generator, so every run checks the same texts; each check
has CASES_PER_CHECK cases, so a tiny model runs all of them in seconds.
"""

from __future__ import annotations

import random

import numpy as np

from llmclf.errors import UserError

NEGATIVE_NAMES = ("neg", "negative", "bad")
POSITIVE_NAMES = ("pos", "positive", "good")
CASES_PER_CHECK = 12
DIR_TOLERANCE = 0.05
MAX_FAILURES_SHOWN = 5
SEED = 0

THINGS = ["movie", "film", "book", "restaurant", "hotel", "phone", "album", "series", "laptop", "service"]
POSITIVE = ["good", "great", "excellent", "wonderful", "enjoyable", "brilliant", "fantastic", "delightful"]
NEGATIVE = ["bad", "terrible", "awful", "boring", "disappointing", "dreadful", "poor", "horrible"]
INTENSIFIERS = ["very", "really", "extremely", "incredibly", "truly", "absolutely"]
NAMES = ["Maria", "John", "Aisha", "Wei", "Olga", "Kwame", "Priya", "Diego", "Fatima", "Lars"]
PLACES = ["Paris", "Lagos", "Tokyo", "Chicago", "Mumbai", "Lima", "Cairo", "Oslo", "Hanoi", "Toronto"]
FILLERS = ["I saw it on a Tuesday.", "I went there with a friend.", "It was raining outside.",
           "I read about it last week.", "My cousin told me about it.", "I paid with a card.",
           "This is my first review.", "I used it in the evening."]
BASES = ["The {thing} was {adj}.", "I found the {thing} {adj}.", "What a {adj} {thing}.",
         "Overall, the {thing} is {adj}.", "Honestly, this {thing} was {adj}."]
NEGATIONS = [("The {thing} was not {adj}.", "negative", POSITIVE), ("I would not call this {thing} {adj}.", "negative",
             POSITIVE), ("This {thing} is not {adj} at all.", "negative", POSITIVE),
             ("The {thing} was not {adj}.", "positive", NEGATIVE), ("I did not find the {thing} {adj}.", "positive",
             NEGATIVE), ("Contrary to the reviews, the {thing} was not {adj}.", "positive", NEGATIVE)]
SARCASM = ["Oh great, another {thing} that is a complete waste of time.",
           "Wow, what a {adj} {thing}. I only fell asleep twice.",
           "Yeah, a really {adj} {thing}, if you enjoy throwing money away.",
           "Absolutely {adj}, if your idea of fun is watching paint dry.",
           "Thanks a lot for the {adj} {thing} that broke on the first day.",
           "Best {thing} ever... said no one.",
           "Sure, the {thing} was {adj}, in the same way a toothache is {adj}.",
           "Just what I needed: a {thing} that makes me regret every minute."]


def sentiment_labels(id2label: dict) -> tuple[int, int] | None:
    """(negative id, positive id) when the labels look like binary sentiment (see the module docstring).

    >>> sentiment_labels({0: "neg", 1: "pos"}), sentiment_labels({0: "Positive", 1: "Negative"})
    ((0, 1), (1, 0))
    >>> sentiment_labels({0: "spam", 1: "ham"}) is None
    True
    """
    if len(id2label) != 2:
        return None
    names = {int(i): str(name).strip().lower() for i, name in id2label.items()}
    negative = [i for i, n in names.items() if n in NEGATIVE_NAMES]
    positive = [i for i, n in names.items() if n in POSITIVE_NAMES]
    if len(negative) == 1 and len(positive) == 1:
        return negative[0], positive[0]
    return None


def _typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters inside one word of four letters or more."""
    words = text.split(" ")
    choices = [i for i, w in enumerate(words) if sum(ch.isalpha() for ch in w) >= 4]
    i = rng.choice(choices)
    chars = list(words[i])
    # Only pairs of different letters, so the edit always changes the text.
    j = rng.choice([j for j in range(len(chars) - 1)
                    if chars[j].isalpha() and chars[j + 1].isalpha() and chars[j] != chars[j + 1]])
    chars[j], chars[j + 1] = chars[j + 1], chars[j]
    words[i] = "".join(chars)
    return " ".join(words)


def _base(rng: random.Random, polarity: str) -> str:
    adj = rng.choice(POSITIVE if polarity == "positive" else NEGATIVE)
    return rng.choice(BASES).format(thing=rng.choice(THINGS), adj=adj)


def build_cases(n: int = CASES_PER_CHECK, seed: int = SEED) -> list[dict]:
    """Every check with its cases. Expected labels are "negative"/"positive"; a case holds `text` (MFT), or
    `text` and `edited` (INV), or both and `expected` (DIR)."""
    rng = random.Random(seed)
    polarity = ["positive", "negative"]
    checks = []

    cases = []
    for i in range(n):
        template, expected, adjectives = NEGATIONS[i % len(NEGATIONS)]
        cases.append({"text": template.format(thing=rng.choice(THINGS), adj=rng.choice(adjectives)),
                      "expected": expected})
    checks.append({"name": "negation", "kind": "MFT", "cases": cases,
                   "description": "Negated sentiment words flip the label (not good: negative; not bad: positive)."})

    cases = []
    for i in range(n):
        expected = polarity[i % 2]
        thing, adj = rng.choice(THINGS), rng.choice(POSITIVE if expected == "positive" else NEGATIVE)
        cases.append({"text": f"The {thing} was {adj}.", "edited": f"The {thing} was {rng.choice(INTENSIFIERS)} {adj}.",
                      "expected": expected})
    checks.append({"name": "intensifiers", "kind": "DIR", "cases": cases,
                   "description": f"Adding very/really/extremely does not lower the expected label's probability "
                                  f"by more than {DIR_TOLERANCE}."})

    cases = [{"text": SARCASM[i % len(SARCASM)].format(thing=rng.choice(THINGS), adj=rng.choice(POSITIVE)),
              "expected": "negative"} for i in range(n)]
    checks.append({"name": "sarcasm", "kind": "MFT", "cases": cases,
                   "description": "Sarcastic praise (positive words, negative meaning) is negative."})

    cases = []
    for i in range(n):
        text, filler = _base(rng, polarity[i % 2]), rng.choice(FILLERS)
        cases.append({"text": text, "edited": f"{filler} {text}" if i % 4 < 2 else f"{text} {filler}"})
    checks.append({"name": "neutral_filler", "kind": "INV", "cases": cases,
                   "description": "A neutral sentence before or after the review does not change the label."})

    cases = []
    for i in range(n):
        adj = rng.choice(POSITIVE if polarity[i % 2] == "positive" else NEGATIVE)
        template = "{name} said the {thing} in {place} was {adj}."
        thing = rng.choice(THINGS)
        (a, b), (p, q) = rng.sample(NAMES, 2), rng.sample(PLACES, 2)
        cases.append({"text": template.format(name=a, thing=thing, place=p, adj=adj),
                      "edited": template.format(name=b, thing=thing, place=q, adj=adj)})
    checks.append({"name": "names_and_places", "kind": "INV", "cases": cases,
                   "description": "Swapping people's names and places does not change the label."})

    cases = []
    for i in range(n):
        text = _base(rng, polarity[i % 2])
        cases.append({"text": text, "edited": _typo(text, rng)})
    checks.append({"name": "typos", "kind": "INV", "cases": cases,
                   "description": "Swapping two neighbouring letters in one word does not change the label."})
    return checks


def run_checks(classifier, negative: str | None = None, positive: str | None = None, n: int = CASES_PER_CHECK,
               seed: int = SEED) -> dict:
    """Run every check with `classifier` (anything with id2label, predict_proba and decide, like `Classifier`);
    `seed` draws the cases (every report uses SEED: another seed is another draw of the same checks).

    Returns a JSON-ready dict: the label names used, `checks` (name, kind, description, n, passed, pass_rate,
    up to MAX_FAILURES_SHOWN failures each) and the overall n, passed and pass_rate. Decisions are the
    classifier's own (its threshold and temperature apply).
    """
    id2label = {int(i): str(name) for i, name in classifier.id2label.items()}
    label2id = {name: i for i, name in id2label.items()}
    if negative is not None or positive is not None:
        missing = [name for name in (negative, positive) if name not in label2id]
        if negative is None or positive is None or missing:
            raise UserError(f"behaviour checks need --negative-label and --positive-label among the model's labels "
                            f"({', '.join(id2label.values())}); got {negative!r} and {positive!r}.")
        ids = {"negative": label2id[negative], "positive": label2id[positive]}
    else:
        found = sentiment_labels(id2label)
        if found is None:
            raise UserError(f"behaviour checks are for sentiment models; labels {', '.join(id2label.values())} do "
                            "not look like negative/positive. Name them with --negative-label and --positive-label.")
        ids = {"negative": found[0], "positive": found[1]}
    checks = build_cases(n, seed)
    texts = sorted({t for check in checks for case in check["cases"] for t in (case["text"], case.get("edited"))
                    if t is not None})
    probs = np.atleast_2d(classifier.predict_proba(texts))
    chosen = classifier.decide(probs)
    prob_of = {t: probs[i] for i, t in enumerate(texts)}
    label_of = {t: id2label[int(chosen[i])] for i, t in enumerate(texts)}

    results, total, total_passed = [], 0, 0
    for check in checks:
        passed, failures = 0, []
        for case in check["cases"]:
            text, edited = case["text"], case.get("edited")
            if check["kind"] == "MFT":
                expected = id2label[ids[case["expected"]]]
                ok = label_of[text] == expected
                shown = {"text": text, "expected": expected, "predicted": label_of[text]}
            elif check["kind"] == "INV":
                ok = label_of[text] == label_of[edited]
                shown = {"text": text, "edited": edited, "predicted": label_of[text], "predicted_edited": label_of[edited]}
            else:
                target = ids[case["expected"]]
                before, after = float(prob_of[text][target]), float(prob_of[edited][target])
                ok = after >= before - DIR_TOLERANCE
                shown = {"text": text, "edited": edited, "expected": id2label[target], "probability": before,
                         "probability_edited": after}
            passed += ok
            if not ok and len(failures) < MAX_FAILURES_SHOWN:
                failures.append(shown)
        count = len(check["cases"])
        results.append({"name": check["name"], "kind": check["kind"], "description": check["description"],
                        "n": count, "passed": passed, "pass_rate": passed / count, "failures": failures})
        total, total_passed = total + count, total_passed + passed
    return {"labels": {"negative": id2label[ids["negative"]], "positive": id2label[ids["positive"]]},
            "checks": results, "n": total, "passed": total_passed, "pass_rate": total_passed / total}
