"""Peak memory of `llmclf predict --input BIG --output ...` as the input grows: streamed scoring keeps it flat.

    python bench/stream_memory.py --sizes-mb 100 1000

Writes CSV files of about the given sizes (10 KB reviews), scores each with a tiny random classifier (the model
is not what is measured: max_length 8 keeps the run short) in a fresh process under /usr/bin/time, and records
the peak resident memory. Writes bench/results/stream_memory-<date>.json; the smallest file is the baseline.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEW = ("This film starts slowly, but the second half is gripping, the acting is strong and the music fits every "
          "scene. ") * 90  # about 10 KB a row: a long review


def write_csv(path: Path, megabytes: int) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,text\n")
        while f.tell() < megabytes * 1_000_000:
            f.write("".join(f"{rows + i},{REVIEW}{rows + i}\n" for i in range(1_000)))
            rows += 1_000
    return rows


def make_model(directory: Path) -> Path:
    import yaml

    from llmclf.models import load_backbone, save_classifier

    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    save_classifier(model, tokenizer, directory)
    (directory / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 8}))
    return directory


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return kb / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmclf-stream-"))
    model = make_model(work / "model")
    rows = []
    for size in args.sizes_mb:
        source = work / f"in-{size}.csv"
        count = write_csv(source, size)
        rss, seconds = peak_rss_mb([sys.executable, "-m", "llmclf", "predict", "--model", str(model), "--input",
                                    str(source), "--output", str(work / f"out-{size}.csv"), "--eval-batch-size", "256"])
        rows.append({"input_mb": round(source.stat().st_size / 1e6), "rows": count, "peak_rss_mb": round(rss),
                     "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)
        source.unlink()
        (work / f"out-{size}.csv").unlink()
    import torch

    result = {
        "bench": "stream_memory", "date": datetime.date.today().isoformat(),
        "device": f"CPU {platform.machine()}, {os.cpu_count()} cores", "versions": {"torch": torch.__version__},
        "model": "tiny-random-llama, max_length 8, batch 256 (I/O and memory are measured, not the model)",
        "runs": rows,
        "rows": [{"metric": f"peak RSS scoring a {r['input_mb']} MB CSV", "unit": "MB", "baseline": rows[0]["peak_rss_mb"],
                  "llmclf": r["peak_rss_mb"]} for r in rows],
    }
    out = ROOT / "bench" / "results" / f"stream_memory-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
