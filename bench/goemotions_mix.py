"""Training data for the experiment "do short real texts teach the behaviour checks' one-liners (sarcasm)?":
the first IMDB_ROWS reviews of the IMDb 80% training split (as `llmclf train` splits, seed 42) mixed with
GOEMOTIONS_ROWS Reddit comments from GoEmotions, labelled by the GoEmotions paper's sentiment grouping of its
emotions (a comment is kept only when all its labels are in one group: no neutral, ambiguous or mixed ones),
balanced, drawn with seed 42; plus the IMDb 20% held-out split in `llmclf train`'s order, for
`--validation-data`, so that the first N scored are the reviews the split run scores.

    python bench/goemotions_mix.py --out /tmp/mix           # then, as in recipe_runs-avx512bf16-goemotions:
    python bench/recipe_runs.py --tag avx512bf16-goemotions --data /tmp/mix/mix.parquet \\
        --run "plain+goemotions=3360=--validation-data /tmp/mix/imdb_val.parquet"
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, imdb_split

GOEMOTIONS = ROOT.parent / "shared" / "data" / "goemotions" / "train.parquet"
# Demszky et al. 2020, sentiment_mapping.json (its "ambiguous" group and neutral are left out)
POSITIVE = set("amusement excitement joy love desire optimism caring pride admiration gratitude relief "
               "approval".split())
NEGATIVE = set("fear nervousness remorse embarrassment disappointment sadness grief disgust anger annoyance "
               "disapproval".split())


def sentiment(labels) -> int | None:
    names = set(labels)
    return 1 if names <= POSITIVE else 0 if names <= NEGATIVE else None


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for mix.parquet and imdb_val.parquet")
    parser.add_argument("--imdb-rows", type=int, default=2240)
    parser.add_argument("--goemotions-rows", type=int, default=1120, help="half negative, half positive")
    args = parser.parse_args()
    train, validation = imdb_split()
    comments = pd.read_parquet(GOEMOTIONS)
    comments = comments.assign(label=comments["labels"].map(sentiment)).dropna(subset=["label"])
    half = args.goemotions_rows // 2
    picked = pd.concat([comments[comments["label"] == value].sample(half, random_state=42) for value in (0, 1)])
    reviews = pd.DataFrame({"text": train.texts[:args.imdb_rows], "label": train.labels[:args.imdb_rows]})
    mix = pd.concat([reviews, picked[["text", "label"]].astype({"label": int})]).sample(frac=1, random_state=42)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mix.reset_index(drop=True).to_parquet(out / "mix.parquet")
    pd.DataFrame({"text": validation.texts, "label": validation.labels}).to_parquet(out / "imdb_val.parquet")
    print(f"{out / 'mix.parquet'}: {len(mix)} rows ({args.imdb_rows} IMDb, {2 * half} GoEmotions); "
          f"{out / 'imdb_val.parquet'}: {len(validation)} rows")


if __name__ == "__main__":
    main()
