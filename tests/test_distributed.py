"""Multi-process training with real processes: torchrun, 2 CPU ranks (gloo), DDP and FSDP, on the tiny model.

Two ranks with batch 8 each see the same 16 examples per step as one process with batch 16, and DDP averages
their gradients, so the runs must agree up to floating-point summation order (stated tolerance: 1e-5 on the
validation loss and on every predicted probability).
"""

import json
import socket
import subprocess
import sys

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


def torchrun(*argv, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()),
               "-m", "llmclf", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


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
    texts = pd.read_json(news_jsonl, lines=True)["text"].tolist()
    ours = Classifier.from_pretrained(str(out)).predict_proba(texts)
    theirs = Classifier.from_pretrained(str(single_run)).predict_proba(texts)
    assert np.abs(ours - theirs).max() < 1e-5
