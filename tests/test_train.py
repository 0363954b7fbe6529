"""Training internals: per-epoch history, output-directory rules, and resuming a killed run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llmclf.cli import main
from llmclf.errors import UserError
from llmclf.report import fmt_duration
from llmclf.artifacts import staging_path
from llmclf.train import check_output
from llmclf.trainer import TRAIN_TIME_FILE, history_rows

TINY = ["--model", "tiny-random-llama", "--epochs", "3", "--learning-rate", "3e-3", "--batch-size", "8"]


def test_history_rows_merge_train_and_eval_logs_per_epoch():
    log = [{"loss": 0.9, "learning_rate": 1e-4, "epoch": 1.0}, {"eval_loss": 0.7, "eval_accuracy": 0.6, "epoch": 1.0,
           "eval_runtime": 1.0}, {"loss": 0.5, "epoch": 2.0}, {"eval_loss": 0.4, "eval_accuracy": 0.8, "epoch": 2.0},
           {"train_runtime": 3.0, "train_loss": 0.7, "epoch": 2.0}]
    assert history_rows(log) == [
        {"epoch": 1.0, "train_loss": 0.9, "learning_rate": 1e-4, "eval_loss": 0.7, "eval_accuracy": 0.6},
        {"epoch": 2.0, "train_loss": 0.5, "eval_loss": 0.4, "eval_accuracy": 0.8},
    ]


def test_history_rows_keep_the_training_loss_of_a_run_without_per_epoch_validation():
    log = [{"loss": 0.9, "learning_rate": 1e-4, "epoch": 1.0}, {"loss": 0.5, "epoch": 2.0},
           {"train_runtime": 3.0, "train_loss": 0.7, "epoch": 2.0}]
    assert history_rows(log) == [{"epoch": 1.0, "train_loss": 0.9, "learning_rate": 1e-4},
                                 {"epoch": 2.0, "train_loss": 0.5}]


def test_a_run_without_per_epoch_validation_still_scores_validation_once_and_logs_its_loss(tmp_path, news_jsonl):
    """--no-eval-each-epoch: Trainer never evaluates, the finishing step still scores the validation split (metrics,
    card, confusion matrix); the history holds the training loss per epoch and the card says validation was not
    run per epoch; no accuracy curve (nothing to draw)."""
    out = tmp_path / "no-eval"
    assert main(["train", "--data", str(news_jsonl), "--output", str(out), *TINY, "--epochs", "2",
                 "--no-eval-each-epoch"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert 0 <= results["validation"]["accuracy"] <= 1 and results["training"]["eval_each_epoch"] is False
    history = [json.loads(row) for row in (out / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    assert all("train_loss" in row and not any(k.startswith("eval_") for k in row) for row in history)
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"loss.png", "confusion_matrix.png", "roc.png"} <= plots and "accuracy.png" not in plots
    card = (out / "README.md").read_text()
    assert "no per-epoch validation" in card and "per-epoch validation included" not in card


def test_check_output_rules(tmp_path):
    out = tmp_path / "model"
    check_output(out, overwrite=False, resume=False)  # new directory: fine
    out.mkdir()
    check_output(out, overwrite=False, resume=False)  # empty directory: fine
    (out / "config.json").write_text("{}")
    with pytest.raises(UserError, match="holds a model; pass --overwrite"):
        check_output(out, overwrite=False, resume=False)
    check_output(out, overwrite=True, resume=False)
    with pytest.raises(UserError, match="no unfinished run"):
        check_output(out, overwrite=False, resume=True)
    (staging_path(out) / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(UserError, match="pass --resume"):
        check_output(out, overwrite=False, resume=False)
    check_output(out, overwrite=False, resume=True)


def kill_at_first_checkpoint(command: list[str], checkpoints):
    """Start a training run and SIGKILL it as soon as its first checkpoint is complete (its training time, the
    last file written, included); the checkpoints folder."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # a slow or busy machine imports transformers slowly
    while time.time() < deadline and not list(checkpoints.glob(f"checkpoint-*/{TRAIN_TIME_FILE}")):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return checkpoints


@pytest.mark.slow
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tmp_path, news_jsonl):
    """Kill a run with SIGKILL once its first epoch checkpoint exists; --resume finishes it, and the final
    metrics equal those of an uninterrupted run with the same seed (tolerance 1e-4 on the loss)."""
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "llmclf", "train", "--data", str(news_jsonl), "--output", str(killed), *TINY]
    checkpoints = kill_at_first_checkpoint(command, staging_path(killed) / "checkpoints")
    assert not killed.exists(), "a killed run must not leave a directory that looks complete"
    [kept] = list(checkpoints.glob("checkpoint-*"))
    [before] = json.loads((kept / TRAIN_TIME_FILE).read_text())["segments"]
    assert before["steps"] == int(kept.name.split("-")[1]) and before["seconds"] > 0

    assert main(["train", "--data", str(news_jsonl), "--output", str(killed), *TINY, "--resume"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--data", str(news_jsonl), "--output", str(straight), *TINY]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())["validation"]
    expected = json.loads((straight / "metrics.json").read_text())["validation"]
    assert resumed["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert resumed["accuracy"] == expected["accuracy"]
    history = (killed / "history.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in history] == [1.0, 2.0, 3.0]
    assert not staging_path(killed).exists()
    # its training time adds the killed process's, up to the checkpoint kept, to the resumed one's; the card says so
    training = json.loads((killed / "metrics.json").read_text())["training"]
    assert training["resumed"] is True and training["train_segments"][0] == before
    [_, after] = training["train_segments"]
    assert after["steps"] == training["steps"] == 3 * 16 and after["seconds"] > 0
    assert training["train_seconds"] == pytest.approx(before["seconds"] + after["seconds"], abs=0.02)
    assert f"2 processes, each resumed from the last one's checkpoint: {fmt_duration(before['seconds'])} to step " \
           f"{before['steps']}" in (killed / "README.md").read_text()
    assert json.loads((straight / "metrics.json").read_text())["training"]["resumed"] is False


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
def test_resuming_a_run_killed_in_its_finishing_step_takes_no_further_step(tmp_path, news_jsonl):
    """--epochs 0.5 (8 of an epoch's 16 steps) ends mid-epoch; its one checkpoint is the final one. Killed after
    it, --resume only runs the finishing step: no ninth step (which transformers would take, at learning rate
    0), the uninterrupted run's metrics, and the killed process's time as the whole training time."""
    args = [*TINY, "--epochs", "0.5"]
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "llmclf", "train", "--data", str(news_jsonl), "--output", str(killed), *args]
    checkpoints = kill_at_first_checkpoint(command, staging_path(killed) / "checkpoints")
    [kept] = list(checkpoints.glob("checkpoint-*"))
    assert kept.name == "checkpoint-8" and not killed.exists()
    [before] = json.loads((kept / TRAIN_TIME_FILE).read_text())["segments"]

    assert main(["train", "--data", str(news_jsonl), "--output", str(killed), *args, "--resume"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--data", str(news_jsonl), "--output", str(straight), *args]) == 0
    resumed, expected = (json.loads((run / "metrics.json").read_text()) for run in (killed, straight))
    assert resumed["validation"]["loss"] == pytest.approx(expected["validation"]["loss"], abs=1e-4)
    assert resumed["validation"]["accuracy"] == expected["validation"]["accuracy"]
    training = resumed["training"]
    assert training["steps"] == expected["training"]["steps"] == 8
    assert training["train_segments"] == [before] and training["train_loss"] is None
    assert [json.loads(row)["epoch"] for row in (killed / "history.jsonl").read_text().splitlines()] == [0.5]


@pytest.mark.slow  # trains in a subprocess, kills it, resumes
@pytest.mark.parametrize("every", [["--save-steps", "5"], ["--save-minutes", "0.0001"]], ids=["steps", "minutes"])
def test_resume_from_a_mid_epoch_checkpoint_after_sigkill(tmp_path, news_jsonl, every):
    """--save-steps 5 (or --save-minutes, here a checkpoint after every step) checkpoints inside the first epoch
    (16 steps); a run killed once that checkpoint exists resumes from it (not from the start) and ends with the
    uninterrupted run's loss and accuracy."""
    args = [*TINY, *every]
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "llmclf", "train", "--data", str(news_jsonl), "--output", str(killed), *args]
    checkpoints = kill_at_first_checkpoint(command, staging_path(killed) / "checkpoints")
    saved = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert saved and saved[-1] % 16 != 0, f"expected a mid-epoch checkpoint, found steps {saved}"
    state = json.loads((checkpoints / f"checkpoint-{saved[-1]}" / "trainer_state.json").read_text())
    assert 0 < state["epoch"] < 3 and state["global_step"] == saved[-1]

    assert main(["train", "--data", str(news_jsonl), "--output", str(killed), *args, "--resume"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--data", str(news_jsonl), "--output", str(straight), *args]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())["validation"]
    expected = json.loads((straight / "metrics.json").read_text())["validation"]
    assert resumed["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert resumed["accuracy"] == expected["accuracy"]
    assert [json.loads(row)["epoch"] for row in (killed / "history.jsonl").read_text().splitlines()] == [1.0, 2.0, 3.0]


def test_save_minutes_asks_for_a_checkpoint_at_the_first_step_end_past_the_time_since_the_last():
    from transformers import TrainerControl, TrainerState

    from llmclf.trainer import save_every_minutes_callback

    now = [100.0]
    callback = save_every_minutes_callback(8, clock=lambda: now[0])
    state, control = TrainerState(), TrainerControl()
    now[0] += 8 * 60 - 1
    assert not callback.on_step_end(None, state, control).should_save
    now[0] += 1
    assert callback.on_step_end(None, state, control).should_save
    control.should_save = False
    callback.on_save(None, state, control)  # Trainer saved (for this or another reason): the clock restarts
    now[0] += 8 * 60 - 1
    assert not callback.on_step_end(None, state, control).should_save


def test_padding_to_a_multiple_gives_the_same_logits_and_loss():
    """Rounding batch lengths up to a multiple of 64 (few distinct shapes) changes no number."""
    import torch
    from transformers import DataCollatorWithPadding

    from llmclf.models import load_backbone

    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    model.eval()
    rows = [dict(tokenizer(t), labels=i % 2) for i, t in enumerate(["short", "a bit longer text", "tiny"])]
    exact = DataCollatorWithPadding(tokenizer)(rows)
    rounded = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=64)(rows)
    assert rounded["input_ids"].shape[1] == 64 and exact["input_ids"].shape[1] < 64
    with torch.no_grad():
        a, b = model(**exact), model(**rounded)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.allclose(a.loss, b.loss, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--group-by-length"], ["--group-by-length", "--packing"]])
def test_reports_pair_each_prediction_with_its_own_text_when_batches_are_grouped_by_length(tmp_path, sentiment_csv,
                                                                                          flags):
    """transformers 5 length-groups prediction batches too under group_by_length; the validation metrics in
    metrics.json must still be those of Trainer's own order-free evaluation."""
    out = tmp_path / "grouped"
    assert main(["train", "--data", str(sentiment_csv), "--text-column", "review", "--model", "tiny-random-llama",
                 "--epochs", "2", "--batch-size", "4", "--eval-batch-size", "4", "--learning-rate", "1e-3",
                 "--output", str(out), *flags]) == 0
    validation = json.loads((out / "metrics.json").read_text())["validation"]
    last_epoch = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()][-1]
    assert validation["roc_auc"] == pytest.approx(last_epoch["eval_roc_auc"], abs=1e-6)


@pytest.mark.slow
def test_bf16_lora_run_finishes_where_auto_precision_means_fp32(tmp_path, sentiment_csv):
    """--bf16 stores a LoRA run's backbone in bf16; the post-training checks run it as trained (with autocast)
    even though `auto` precision means fp32 here (the tests set LLMCLF_PRECISION=fp32)."""
    out = tmp_path / "bf16"
    assert main(["train", "--data", str(sentiment_csv), "--text-column", "review", "--model", "tiny-random-llama",
                 "--lora", "--bf16", "--output", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["training"]["bf16"] is True
