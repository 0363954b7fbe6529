"""The GPU speed benchmarks (issue 4) run end to end in --smoke mode on the CPU, so they do not rot between the
sessions that have a GPU, and write results in the agreed shape."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", ["train_speed.py", "predict_speed.py"])
def test_speed_benchmark_smoke_run_writes_rows(tmp_path, script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    assert {"device", "date", "versions", "rows"} <= set(result) and result["smoke"] is True
    for row in result["rows"]:
        assert {"metric", "unit", "baseline", "llmclf"} <= set(row)
        assert all(isinstance(row[k], (int, float)) for k in ("baseline", "llmclf"))
    if script == "train_speed.py":
        assert result["packed_vs_padded_loss_difference"] < 1e-4
    else:
        largest = next(r for r in result["rows"] if r["metric"].startswith("largest probability difference"))
        assert largest["llmclf"] < 1e-4  # fp32 here: the two paths compute the same probabilities


@pytest.mark.slow  # three subprocesses that each import transformers and build a model: ~30 s
@pytest.mark.parametrize("script", ["train_cpu.py"])
def test_cpu_training_benchmark_smoke_run_writes_a_row_per_variant(tmp_path, script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("train_cpu-smoke-*.json")
    result = json.loads(path.read_text())
    assert {"device", "date", "versions", "settings", "rows", "cpu"} <= set(result) and result["smoke"] is True
    assert {"cpu_model", "cores", "bf16_flags"} <= set(result["cpu"])
    assert [row["id"] for row in result["rows"]] == ["recipe", "full", "packed"]
    for row in result["rows"]:
        assert "error" not in row, row.get("error")
        for key in ("useful_tokens_per_s", "steps_per_s", "peak_rss_mb", "final_loss", "speedup_vs_recipe"):
            assert isinstance(row[key], (int, float)) and row[key] == row[key], (row["variant"], key)  # not NaN
        assert row["useful_tokens_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["timed_steps"] == 2
    recipe, full, packed = result["rows"]
    assert recipe["speedup_vs_recipe"] == 1.0
    # the same first batch from the same weights: packing computes the recipe's loss (both bf16)
    assert abs(packed["first_loss"] - recipe["first_loss"]) < 2e-2
