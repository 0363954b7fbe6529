"""How long `llmclf check` (the behaviour checks that also run after every training) takes: run_checks on the
tiny random model the tests use and on the shipped sentiment model, model load excluded.

    python bench/behaviour_time.py --repeats 3

The tests check what keeps it cheap (tests/test_behaviour.py: one batched call over the distinct texts); how
fast lives here. `limit_s` is the bound the tests used to assert on wall-clock time. Prints a table and writes
bench/results/behaviour_time-<date>.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, write_result

LIMITS_S = {"tiny-random-llama": 30.0}


def tiny_classifier_dir(root: Path) -> Path:
    """The untrained tiny classifier, saved as tests/conftest.py saves it (max_length 64)."""
    import yaml

    from llmclf.models import load_backbone, save_classifier

    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    save_classifier(model, tokenizer, root)
    (root / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 64}))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny-random-llama,imdb-sentiment")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from llmclf.behaviour import build_cases, run_checks
    from llmclf.artifacts import shipped_model_available
    from llmclf.predict import Classifier

    texts = len({t for check in build_cases() for case in check["cases"] for t in (case["text"], case.get("edited"))
                 if t is not None})
    rows = []
    print(f"{'model':<20} {'precision':<9} {'texts':>5} {'seconds':>8} {'texts/s':>8} {'limit_s':>8}")
    with tempfile.TemporaryDirectory(prefix="llmclf-behaviour-time-") as tmp:
        for name in args.models.split(","):
            if name == "imdb-sentiment" and not shipped_model_available(name):
                print(f"{name}: not bundled in this build, skipped")
                continue
            source = str(tiny_classifier_dir(Path(tmp))) if name == "tiny-random-llama" else name
            classifier = Classifier.from_pretrained(source)
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run_checks(classifier)
                runs.append(time.perf_counter() - start)
            seconds = statistics.median(runs)
            row = {"model": name, "precision": "bf16" if classifier.bf16 else "fp32", "texts": texts,
                   "seconds": round(seconds, 4), "texts_per_s": round(texts / seconds, 1),
                   "all_s": [round(s, 4) for s in runs], "limit_s": LIMITS_S.get(name)}
            rows.append(row)
            limit = "" if row["limit_s"] is None else f"{row['limit_s']:.1f}"
            print(f"{name:<20} {row['precision']:<9} {texts:>5} {seconds:>8.3f} {row['texts_per_s']:>8.1f} "
                  f"{limit:>8}", flush=True)
    write_result("behaviour_time", {"bench": "behaviour_time", **machine(), "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
