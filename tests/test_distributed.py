"""Multi-process training with real processes: torchrun, 2 CPU ranks (gloo), DDP and FSDP, on the tiny model.

Two ranks with batch 8 each see the same 16 examples per step as one process with batch 16, and DDP averages
their gradients, so the runs must agree up to floating-point summation order (stated tolerance: 1e-5 on the
validation loss and on every predicted probability).
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmclf.cli import main
from llmclf.predict import Classifier

pytestmark = pytest.mark.slow  # torchrun processes and training runs

COMMON = ["--model", "tiny-random-llama", "--epochs", "2", "--learning-rate", "3e-3", "--seed", "7"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher() -> list[str]:
    """torchrun for 2 local ranks on a free port, up to the program to run."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port())]


def torchrun(*argv, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher(), "-m", "llmclf", *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def rank_answers(script: Path, timeout: int) -> list[str]:
    """Run `script` on 2 gloo ranks; what rank 0 and rank 1 wrote to rank0.txt and rank1.txt beside it. Each rank
    writes its own file: two processes printing to one pipe can interleave within a line."""
    done = subprocess.run([*launcher(), str(script)], capture_output=True, text=True, cwd=script.parent,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [(script.parent / f"rank{rank}.txt").read_text() for rank in (0, 1)]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, news_jsonl):
    out = tmp_path_factory.mktemp("single") / "model"
    assert main(["train", "--data", str(news_jsonl), "--output", str(out), "--batch-size", "16", *COMMON]) == 0
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_match_one_process(tmp_path, news_jsonl, single_run, mode):
    out = tmp_path / mode
    done = torchrun("train", "--data", news_jsonl, "--output", out, "--batch-size", "8", *COMMON,
                    *(["--fsdp"] if mode == "fsdp" else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation:") == 1, "only rank 0 reports"
    assert sorted(p.name for p in tmp_path.iterdir()) == [mode], "only rank 0 writes, and only --output"
    results = json.loads((out / "metrics.json").read_text())
    expected = json.loads((single_run / "metrics.json").read_text())
    assert results["training"]["world_size"] == 2
    first, second = results["training"]["rank_param_checksums"]
    assert first == pytest.approx(second, rel=1e-9), "the model is the same whichever rank you ask"
    assert results["validation"]["n"] == expected["validation"]["n"] == 32, "metrics over the whole validation set"
    assert results["validation"]["loss"] == pytest.approx(expected["validation"]["loss"], abs=1e-5)
    # the mean loss of the step's 16 texts, as one process reports it (not times the world size)
    assert results["training"]["train_loss"] == pytest.approx(expected["training"]["train_loss"], rel=1e-3)
    texts = pd.read_json(news_jsonl, lines=True)["text"].tolist()
    ours = Classifier.from_pretrained(str(out)).predict_proba(texts)
    theirs = Classifier.from_pretrained(str(single_run)).predict_proba(texts)
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_compiled_ranks_match_one_eager_process(tmp_path, news_jsonl, single_run, mode):
    """--torch-compile under torchrun: each rank compiles its own wrapped model, and the run ends where the eager
    one-process run ends, up to the compiled kernels' float error (tests/test_trainer.py's compile tolerances);
    the saved model is a plain one."""
    out = tmp_path / mode
    done = torchrun("train", "--data", news_jsonl, "--output", out, "--batch-size", "8", *COMMON, "--torch-compile",
                    *(["--fsdp"] if mode == "fsdp" else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "metrics.json").read_text())
    expected = json.loads((single_run / "metrics.json").read_text())
    assert results["training"]["world_size"] == 2
    first, second = results["training"]["rank_param_checksums"]
    assert first == pytest.approx(second, rel=1e-9), "the model is the same whichever rank you ask"
    assert first == pytest.approx(expected["training"]["rank_param_checksums"][0], rel=1e-4)
    assert results["training"]["train_loss"] == pytest.approx(expected["training"]["train_loss"], rel=1e-3)
    texts = pd.read_json(news_jsonl, lines=True)["text"].tolist()
    classifier = Classifier.from_pretrained(str(out))
    assert not any("_orig_mod" in name for name, _ in classifier.model.named_parameters())
    theirs = Classifier.from_pretrained(str(single_run)).predict_proba(texts)
    assert np.abs(classifier.predict_proba(texts) - theirs).max() < 1e-3


# --- multi-label and regression ------------------------------------------------------------------------------

TYPED = {  # problem type -> text column, the validation loss metrics.json reports, how Classifier answers
    "multi-label": ("text", "loss", lambda classifier, texts: classifier.predict_proba(texts)),  # sigmoid per label
    "regression": ("review", "mse", lambda classifier, texts: classifier.predict_values(texts)),  # target's scale
}
FLAGS = {"multi-label": ["--class-weights", "balanced"],
         "regression": ["--text-column", "review", "--label-column", "rating", "--interval", "0.9"]}


@pytest.fixture(scope="module")
def typed_data(tmp_path_factory):
    """100 rows each: 80 to train on (5 steps of 16 an epoch, 8 per rank) and 20 to validate on."""
    from test_multilabel import emotion_rows
    from test_regression import rating_rows

    root = tmp_path_factory.mktemp("typed")
    paths = {"multi-label": root / "emotions.jsonl", "regression": root / "ratings.jsonl"}
    pd.DataFrame(emotion_rows(100)).to_json(paths["multi-label"], orient="records", lines=True)
    pd.DataFrame(rating_rows(100)).to_json(paths["regression"], orient="records", lines=True)
    return paths


@pytest.fixture(scope="module")
def typed_single_runs(tmp_path_factory, typed_data):
    """problem type -> the one-process run, trained the first time a test asks for it: batches of 8 with two
    accumulated per step, the very batches of 8 the two ranks take (rank 0 the first of each pair).

    Not one batch of 16, as for single-label above: a regression output is no probability squashed by a sigmoid or
    softmax, and the summation order of one batch of 16 against two means of 8 moved predicted ratings by up to
    2.1e-5 (the median by 1.8e-7), over the stated 1e-5; with accumulation the one-process run is the same
    arithmetic, (g1 + g2) / 2, and agreed with DDP to the last bit."""
    runs = {}

    def run(problem_type):
        if problem_type not in runs:
            out = tmp_path_factory.mktemp("single-" + problem_type) / "model"
            assert main(["train", "--data", str(typed_data[problem_type]), "--output", str(out), "--batch-size", "8",
                         "--gradient-accumulation-steps", "2", *FLAGS[problem_type], *COMMON]) == 0
            runs[problem_type] = out
        return runs[problem_type]

    return run


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
@pytest.mark.parametrize("problem_type", list(TYPED))
def test_two_ranks_match_one_process_for_multi_label_and_regression(tmp_path, typed_data, typed_single_runs,
                                                                     problem_type, mode):
    """As for single-label: DDP averages the two ranks' mean BCE / MSE gradients, as one process averages two
    accumulated batches; rank 0 alone fits the thresholds (multi-label) or the scale and interval (regression),
    scores the whole validation set and writes."""
    column, loss, answer = TYPED[problem_type]
    out = tmp_path / mode
    done = torchrun("train", "--data", typed_data[problem_type], "--output", out, "--batch-size", "8",
                    *FLAGS[problem_type], *COMMON, *(["--fsdp"] if mode == "fsdp" else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation:") == 1, "only rank 0 reports"
    assert sorted(p.name for p in tmp_path.iterdir()) == [mode], "only rank 0 writes, and only --output"
    results = json.loads((out / "metrics.json").read_text())
    expected = json.loads((typed_single_runs(problem_type) / "metrics.json").read_text())
    assert results["training"]["world_size"] == 2 and expected["training"]["world_size"] == 1
    first, second = results["training"]["rank_param_checksums"]
    assert first == pytest.approx(second, rel=1e-9), "the model is the same whichever rank you ask"
    assert results["validation"]["n"] == expected["validation"]["n"] == 20, "metrics over the whole validation set"
    assert results["validation"][loss] == pytest.approx(expected["validation"][loss], abs=1e-5)
    texts = pd.read_json(typed_data[problem_type], lines=True)[column].tolist()
    ours = answer(Classifier.from_pretrained(str(out)), texts)
    theirs = answer(Classifier.from_pretrained(str(typed_single_runs(problem_type))), texts)
    assert ours.shape == theirs.shape == ((100, 3) if problem_type == "multi-label" else (100,))
    assert np.abs(ours - theirs).max() < 1e-5
    saved, reference = (json.loads((run / "config.json").read_text())["llmclf"]
                        for run in (out, typed_single_runs(problem_type)))
    if problem_type == "multi-label":  # thresholds are midpoints between validation probabilities
        assert saved["thresholds"] == pytest.approx(reference["thresholds"], abs=1e-5)
    else:
        assert (saved["target_mean"], saved["target_std"]) == (reference["target_mean"], reference["target_std"])
        assert saved["interval"]["halfwidth"] == pytest.approx(reference["interval"]["halfwidth"], abs=1e-5)


def test_a_checkpoint_that_one_rank_asks_for_is_taken_by_both(tmp_path):
    """Two real gloo ranks whose clocks disagree (rank 0 is due for a timed checkpoint, rank 1 is not): both
    decide to save."""
    script = tmp_path / "due.py"
    script.write_text("import pathlib, torch.distributed as dist\n"
                      "from llmclf.trainer import due_on_any_rank\n"
                      "dist.init_process_group('gloo')\n"
                      "rank = dist.get_rank()\n"
                      "pathlib.Path(f'rank{rank}.txt').write_text(str(due_on_any_rank(rank == 0)))\n"
                      "dist.destroy_process_group()\n")
    assert rank_answers(script, timeout=120) == ["True", "True"]


def test_timed_checkpoints_under_fsdp_finish(tmp_path, news_jsonl):
    """--save-minutes under FSDP, a checkpoint after every step here (saving gathers the shards from both
    ranks): the run finishes."""
    out = tmp_path / "fsdp"
    done = torchrun("train", "--data", news_jsonl, "--output", out, "--batch-size", "8", *COMMON, "--fsdp",
                    "--save-minutes", "0.0001", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["training"]["world_size"] == 2


def test_each_rank_leaves_the_process_group_when_train_returns(tmp_path, news_jsonl):
    """`llmclf train` destroys the process group on every rank before returning: left to interpreter shutdown,
    gloo's threads can abort a rank that had finished (SIGABRT, "terminate called without an active exception")."""
    script = tmp_path / "leave.py"
    argv = ["train", "--data", str(news_jsonl), "--output", str(tmp_path / "ddp"), "--batch-size", "8", *COMMON]
    script.write_text("import os, pathlib, torch.distributed as dist\n"
                      "from llmclf.cli import main\n"
                      f"code = main({argv!r})\n"
                      "pathlib.Path(f'rank{os.environ[\"RANK\"]}.txt').write_text(f'{code} {dist.is_initialized()}')\n")
    assert rank_answers(script, timeout=300) == ["0 False", "0 False"]
