"""Nothing lost: a killed `predict --input` run resumes without rescoring; pickle and remote code are opt-in;
a CUDA out-of-memory error becomes one clear line."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import llmclf.scoring as scoring_module
from llmclf.cli import main
from llmclf.models import load_backbone, load_classifier


@pytest.mark.slow
def test_killed_predict_run_resumes_without_rescoring(tiny_classifier_dir, tmp_path, monkeypatch):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    frame = pd.DataFrame({"id": range(1200), "text": [f"text number {i} " + "w " * (i % 40) for i in range(1200)]})
    frame.to_csv(source, index=False)
    command = [sys.executable, "-m", "llmclf", "predict", "--model", str(tiny_classifier_dir), "--input", str(source),
               "--output", str(target), "--chunk-rows", "50"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / ".out.csv.llmclf-partial"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("part-*.csv"))) < 3:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not target.exists(), "a killed run leaves no output that looks complete"
    finished = len(list(partial.glob("part-*.csv")))
    assert 3 <= finished < 24

    scored_rows = []
    original = scoring_module.score_frame
    monkeypatch.setattr(scoring_module, "score_frame", lambda c, f, t: scored_rows.append(len(f)) or original(c, f, t))
    assert main(command[3:] + ["--resume"]) == 0
    assert sum(scored_rows) == 1200 - 50 * finished, "finished chunks are not scored again"
    resumed = pd.read_csv(target)
    fresh = tmp_path / "fresh.csv"
    assert main(command[3:7] + [str(source), "--output", str(fresh)]) == 0
    pd.testing.assert_frame_equal(resumed, pd.read_csv(fresh))
    assert resumed["id"].tolist() == list(range(1200)) and not partial.exists()


def test_resume_refuses_another_input(tiny_classifier_dir, tmp_path, capsys):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": ["a", "b"]}).to_csv(source, index=False)
    partial = tmp_path / ".out.csv.llmclf-partial"
    partial.mkdir()
    (partial / "manifest.json").write_text('{"input": "elsewhere"}')
    base = ["predict", "--model", str(tiny_classifier_dir), "--input", str(source), "--output", str(target)]
    assert main(base) == 2 and "pass --resume" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 2 and "another input" in capsys.readouterr().err
    assert main(base + ["--overwrite"]) == 0 and len(pd.read_csv(target)) == 2


def test_pickle_weights_load_only_when_allowed(tmp_path, capsys):
    model, tokenizer = load_backbone("tiny-random-llama", {0: "neg", 1: "pos"})
    model.config.architectures = ["LlamaForSequenceClassification"]
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert main(["predict", "--model", str(tmp_path), "great"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-pickle" in err
    loaded, _ = load_classifier(str(tmp_path), allow_pickle=True)
    assert torch.equal(loaded.score.weight, model.score.weight)


def test_cuda_out_of_memory_is_one_clear_line(tiny_classifier_dir, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(scoring_module.Classifier, "predict_proba", boom)
    assert main(["predict", "--model", str(tiny_classifier_dir), "some text"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "llmclf: error: out of GPU memory; pass a smaller --batch-size (--eval-batch-size when scoring) or --max-length."
