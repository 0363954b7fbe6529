"""1 vs 2 processes on this machine: DDP training (torchrun, gloo) and Ray Data scoring, same data, one run.

    python bench/scaling.py

Trains tiny-random-llama on a generated keyword data set (2,000 texts) with one process at batch 16 and with
two processes at batch 8 each (the same global batch), and scores 4,000 texts with Ray Data on 1 and 2 actors.
Writes bench/results/scaling-<date>.json.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"neg": ["awful", "boring", "dreadful"], "pos": ["superb", "great", "delightful"]}
FILLER = "the a film story plot actor scene music ending start middle people".split()


def make_data(path: Path, n: int) -> None:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = ["neg", "pos"][i % 2]
        words = rng.choices(FILLER, k=rng.randint(20, 120)) + [rng.choice(WORDS[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(work: Path, processes: int) -> float:
    out = work / f"train-{processes}"
    args = ["train", "--data", str(work / "data.jsonl"), "--output", str(out), "--model", "tiny-random-llama",
            "--epochs", "1", "--batch-size", str(16 // processes), "--max-length", "128"]
    launcher = [sys.executable, "-m", "llmclf"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
        "127.0.0.1", "--master_port", str(free_port()), "-m", "llmclf"]
    subprocess.run(launcher + args, check=True, capture_output=True, cwd=work)
    return json.loads((out / "metrics.json").read_text())["training"]["train_seconds"]


def score(work: Path, model: Path, workers: int) -> float:
    import ray

    from llmclf.scale import predict_ray

    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        start = time.perf_counter()
        predict_ray(str(model), str(work / "score"), str(work / f"scored-{workers}"), num_workers=workers,
                    batch_size=32, max_length=128)
        return time.perf_counter() - start
    finally:
        ray.shutdown()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="llmclf-scaling-"))
    make_data(work / "data.jsonl", 2000)
    (work / "score").mkdir()
    frame = pd.read_json(work / "data.jsonl", lines=True)
    for part in range(4):
        pd.concat([frame] * 2, ignore_index=True).iloc[part * 1000:(part + 1) * 1000].to_parquet(
            work / "score" / f"part-{part}.parquet")
    one, two = train(work, 1), train(work, 2)
    examples = 1600  # the 80% training split
    s1, s2 = score(work, work / "train-1", 1), score(work, work / "train-1", 2)
    import torch
    import transformers

    result = {
        "bench": "scaling", "date": datetime.date.today().isoformat(),
        "device": f"CPU {platform.machine()}, {os.cpu_count()} cores",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "note": "baseline = 1 process; llmclf = 2 processes (torchrun DDP, gloo) or 2 Ray actors, same data",
        "rows": [
            {"metric": "DDP training throughput, tiny-random-llama, global batch 16", "unit": "examples/s",
             "baseline": round(examples / one, 2), "llmclf": round(examples / two, 2)},
            {"metric": "Ray Data scoring throughput, tiny-random-llama, 4,000 texts", "unit": "texts/s",
             "baseline": round(4000 / s1, 2), "llmclf": round(4000 / s2, 2)},
        ],
    }
    out = ROOT / "bench" / "results" / f"scaling-{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    for row in result["rows"]:
        print(f"{row['metric']:<62} 1 process {row['baseline']:>8} · 2 processes {row['llmclf']:>8} {row['unit']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
