"""Zero-shot accuracy of a backbone (no training): a label-word head after a prompt template, with and without
contextual calibration, on IMDb validation reviews and AG News rows.

    python bench/zero_shot.py --n 200

IMDb: the first N reviews of the held-out 20% (80/20 split, seed 42, as `llmclf train` splits), labels
negative/positive. AG News: N rows of ../shared/data/ag_news/sample.parquet drawn with seed 42, labels
World/Sports/Business/Sci/Tech, scored with those names and with the words world/sports/business/technology.
Each text's window logits are computed once; the two columns differ only in the label bias added to them.
Prints a table and writes bench/results/zero_shot-<date>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import ROOT, imdb_validation, machine, write_result

AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news" / "sample.parquet"
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
RUNS = [  # (data set, template, label words or None for the label names)
    ("imdb", "chat", None),
    ("imdb", "Review: {text}\\nSentiment:", None),
    ("ag_news", "chat", None),
    ("ag_news", "chat", ["world", "sports", "business", "technology"]),
]


def ag_news(n: int) -> tuple[list[str], list[int]]:
    import pandas as pd

    rows = pd.read_parquet(AG_NEWS).sample(n=n, random_state=42)
    return rows["text"].tolist(), rows["label"].astype(int).tolist()


def mean_probs(logits: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """As Classifier.predict_proba: each text's windows' softmax probabilities averaged."""
    from llmclf.metrics import softmax

    probs = np.zeros((n, logits.shape[1]))
    np.add.at(probs, owner, softmax(logits.astype(np.float64)))
    return probs / np.bincount(owner, minlength=n)[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()

    from sklearn.metrics import f1_score

    from llmclf.predict import Classifier

    data = {"imdb": (*imdb_validation(args.n), ["negative", "positive"]), "ag_news": (*ag_news(args.n), AG_LABELS)}
    rows = []
    print(f"{'data':<8} {'template':<28} {'label words':<36} {'raw':>6} {'calibrated':>10} {'texts/s':>8}")
    for name, template, words in RUNS:
        texts, labels, names = data[name]
        labels = np.asarray(labels)
        classifier = Classifier.from_pretrained(args.model, labels=names, label_words=words, prompt_template=template,
                                                max_length=args.max_length)
        bias, classifier.label_bias = classifier.label_bias, None
        start = time.perf_counter()
        logits, owner = classifier.window_logits(texts)
        seconds = time.perf_counter() - start
        row = {"data": name, "template": template, "labels": names, "label_words": words or names,
               "label_bias": [round(float(b), 4) for b in bias], "texts_per_s": round(len(texts) / seconds, 2)}
        for key, shift in (("raw", 0.0), ("calibrated", bias)):
            predicted = mean_probs(logits + shift, owner, len(texts)).argmax(axis=1)
            row[key] = {"accuracy": round(float((predicted == labels).mean()), 4),
                        "f1_macro": round(float(f1_score(labels, predicted, average="macro")), 4),
                        "predicted_counts": np.bincount(predicted, minlength=len(names)).tolist()}
        rows.append(row)
        print(f"{name:<8} {template.replace(chr(10), ' '):<28} {','.join(words or names):<36} "
              f"{row['raw']['accuracy']:>6.3f} {row['calibrated']['accuracy']:>10.3f} {row['texts_per_s']:>8.2f}",
              flush=True)
    write_result("zero_shot", {
        "bench": "zero_shot", **machine(), "model": args.model, "texts_per_data_set": args.n,
        "max_length": args.max_length, "truncation": "chunks", "precision": "bf16" if classifier.bf16 else "fp32",
        "calibration": "contextual (Zhao et al. 2021): label bias -log mean p on 'N/A', '', '[MASK]'",
        "data": {"imdb": "train.parquet, validation split 80/20 seed 42, first N",
                 "ag_news": "sample.parquet, N rows drawn with seed 42"},
        "rows": rows,
    })


if __name__ == "__main__":
    main()
