"""Throughput and p50/p99 latency of `llmclf serve` over loopback, with dynamic batching on and off.

    python bench/serve_load.py --make-model tiny-random-llama
    python bench/serve_load.py --make-model smollm2-135m --requests 128 --rounds 2
    python bench/serve_load.py --model runs/imdb --concurrency 1 8 32

Three server processes, one per mode: batching on (--max-batch-size 32 --max-wait-ms 5 by default); on with no
wait (--max-wait-ms 0: a batch is whatever queued while the model was busy); and off (--max-batch-size 1: one
text per forward pass). At each concurrency C, C clients send one-text requests to POST /classify back to back
(a closed loop), --requests per mode in --rounds turns that alternate between the modes, so that background
load on a shared machine falls on every mode alike. A short warm-up comes first and is not counted. Throughput
is the median over rounds; p50/p99 are over all requests of all rounds. Texts are the bundled demo reviews.
The clients run in this process, on the same cores as the server; the JSON records the machine, versions and
load average next to the numbers. `--make-model` builds a classifier with an untrained head (throughput does
not depend on the head's weights).
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from importlib import metadata, resources
from pathlib import Path

import httpx

from llmclf.testing import ServerProcess


def demo_texts() -> list[str]:
    path = Path(str(resources.files("llmclf") / "data" / "demo_reviews.jsonl"))
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_model(backbone: str, max_length: int, out: Path) -> Path:
    import yaml

    from llmclf.models import load_backbone, save_classifier

    model, tokenizer = load_backbone(backbone, {0: "neg", 1: "pos"})
    save_classifier(model, tokenizer, out)
    (out / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": backbone, "max_length": max_length}))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]  # nearest rank


async def load(url: str, texts: list[str], concurrency: int, requests: int, time_limit: float) -> dict:
    """`concurrency` clients in a closed loop until `requests` answers or `time_limit` seconds."""
    latencies, errors, sent = [], 0, 0
    deadline = time.perf_counter() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        async def client():
            nonlocal errors, sent
            while sent < requests and time.perf_counter() < deadline:
                text = texts[sent % len(texts)]
                sent += 1
                start = time.perf_counter()
                try:
                    response = await http.post("/classify", json={"input": text})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "errors": errors, "seconds": elapsed}


def summary(mode: str, concurrency: int, rounds: list[dict], before: dict, after: dict) -> dict:
    """Throughput: the median over rounds; latency percentiles: over every request of every round."""
    latencies = [x for r in rounds for x in r["latencies"]]
    batches = after["batches"] - before["batches"]
    sizes = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    rates = [len(r["latencies"]) / r["seconds"] for r in rounds]
    ms = lambda seconds: round(1000 * seconds, 2)  # noqa: E731
    return {"mode": mode, "concurrency": concurrency, "requests": len(latencies) + sum(r["errors"] for r in rounds),
            "errors": sum(r["errors"] for r in rounds), "throughput_rps": round(statistics.median(rates), 2),
            "throughput_rps_rounds": [round(x, 2) for x in rates],
            "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
            "mean_ms": ms(statistics.fmean(latencies)), "batches": batches,
            "mean_batch_size": round((after["texts"] - before["texts"]) / batches, 2) if batches else 0,
            "max_batch_size": max((k for k, v in sizes.items() if v > 0), default=0)}


def run_model(model: Path, modes: dict, args, texts: list[str]) -> list[dict]:
    """One server per mode, all up at once; the modes take turns, round after round, at each concurrency, so a
    burst of background load on a shared machine falls on all of them rather than on one."""
    servers = {}
    try:
        for mode, settings in modes.items():
            servers[mode] = ServerProcess(model, device=args.device, **settings).start()
        rows = []
        for concurrency in args.concurrency:
            per_round = max(args.requests // args.rounds, 2 * concurrency)
            rounds, before = {mode: [] for mode in modes}, {}
            for mode, server in servers.items():
                asyncio.run(load(server.url, texts, concurrency, args.warmup * concurrency, args.time_limit))
                before[mode] = httpx.get(server.url + "/v1/stats").json()
            for _ in range(args.rounds):
                for mode, server in servers.items():
                    rounds[mode].append(asyncio.run(load(server.url, texts, concurrency, per_round,
                                                         args.time_limit / args.rounds)))
            for mode, server in servers.items():
                row = summary(mode, concurrency, rounds[mode], before[mode], httpx.get(server.url + "/v1/stats").json())
                rows.append(row)
                print(f"{mode:>12} c={concurrency:<3} {row['throughput_rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  "
                      f"p99 {row['p99_ms']:8.1f} ms  batch mean {row['mean_batch_size']:5.2f} max "
                      f"{row['max_batch_size']:3d}  errors {row['errors']}", flush=True)
        return rows
    finally:
        for server in servers.values():
            server.stop()


def server_precision(device: str) -> str:
    """What `llmclf serve --precision auto` (its default, used here) resolves to on this machine."""
    from llmclf.precision import resolve_precision

    return resolve_precision("auto", device.split(":")[0])


def machine(device: str | None) -> dict:
    import torch

    from llmclf.precision import cpu_model_name

    on_gpu = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    packages = ("llmclf", "torch", "transformers", "fastapi", "uvicorn", "httpx")
    return {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu: {cpu_model_name()}",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": {p: metadata.version(p) for p in packages}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", nargs="+", help="classifier directories (llmclf train --output)")
    source.add_argument("--make-model", nargs="+", choices=["tiny-random-llama", "smollm2-135m"],
                        help="build classifiers with an untrained head from these backbones in a temporary directory")
    parser.add_argument("--max-length", type=int, default=128, help="max_length of a --make-model classifier")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=512, help="requests per concurrency level and mode, over all "
                        "rounds (at least 2 per client per round)")
    parser.add_argument("--rounds", type=int, default=4, help="the modes take turns this many times per level")
    parser.add_argument("--warmup", type=int, default=4, help="warm-up requests per client, not counted")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds at most per concurrency level")
    parser.add_argument("--max-batch-size", type=int, default=32, help="batching on: --max-batch-size")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batching on: --max-wait-ms")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", help="JSON result (default: bench/results/serve_load-<date>.json)")
    args = parser.parse_args(argv)

    texts = demo_texts()
    modes = {"batching on": {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms},
             "on, no wait": {"max_batch_size": args.max_batch_size, "max_wait_ms": 0},
             "batching off": {"max_batch_size": 1, "max_wait_ms": 0}}
    runs = []
    for name in args.make_model or args.model:
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
            if args.make_model:
                model = make_model(name, args.max_length, Path(tmp) / name)
                described = f"{name} classifier with an untrained head (throughput only), max_length {args.max_length}"
            else:
                model, described = Path(name), name
            print(f"{described}:", flush=True)
            rows = run_model(model, modes, args, texts)
        runs.append({"model": described, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "precision": server_precision(args.device),
                     "command": " ".join(["python bench/serve_load.py", *(sys.argv[1:] if argv is None else argv)]),
                     "requests_per_level": args.requests, "rounds": args.rounds, "warmup_per_client": args.warmup,
                     "time_limit_per_level_s": args.time_limit, "modes": modes,
                     "load_average_before": [round(x, 2) for x in load_before],
                     "load_average_after": [round(x, 2) for x in os.getloadavg()], "results": rows})

    # One file per day: runs of other models already in it (e.g. with other --requests) are kept.
    output = Path(args.output or Path(__file__).parent / "results" / f"serve_load-{date.today():%Y-%m-%d}.json")
    kept = json.loads(output.read_text())["runs"] if output.is_file() else []
    kept = [run for run in kept if run["model"] not in {r["model"] for r in runs}]
    result = {
        "benchmark": "serve_load", "machine": machine(args.device),
        "setup": {"transport": "HTTP/1.1 over loopback (127.0.0.1), keep-alive", "endpoint": "POST /classify",
                  "texts": f"bundled demo reviews ({len(texts)}, one per request, "
                           f"{statistics.fmean(map(len, texts)):.0f} characters on average)",
                  "clients": "closed loop, httpx.AsyncClient in the benchmark process, on the same cores as the server",
                  "latency": "per request, client side: send to full answer"},
        "runs": kept + runs,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
