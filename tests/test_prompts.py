"""Prompt templates: parsing, and windows that keep the template whole in every truncation mode."""

import numpy as np
import pytest
from helpers import user_error

from llmclf.data import LabelledTexts
from llmclf.prompts import CHAT, PromptEncoding, split_template
from llmclf.predict import TRUNCATION_CHOICES, Classifier, windows
from llmclf.train import TokenizedTexts

TEMPLATE = "Review: {text}\\nSentiment:"


@pytest.fixture(scope="module")
def tiny():
    from llmclf.models import load_backbone

    return load_backbone("tiny-random-llama", {0: "negative", 1: "positive"})


def test_split_template_reads_newlines_and_escaped_braces():
    assert split_template(TEMPLATE) == ("Review: ", "\nSentiment:")
    assert split_template("{{json}} {text} }}") == ("{json} ", " }")
    assert split_template("{text}") == ("", "")


@pytest.mark.parametrize("template, message", [
    ("Review:", r"put \{text\} in it exactly once"),
    ("{text} and {text}", r"put \{text\} in it exactly once"),
    ("{title}: {text}", r"unknown placeholder\(s\) \{title\}"),
    ("{text:>10}", r"exactly once \(plain, no format spec\)"),
    ("{text", r"write literal braces as \{\{ and \}\}"),
])
def test_bad_templates_are_one_line_user_errors(template, message):
    user_error(message, split_template, template)


def test_windows_keep_prefix_and_suffix_in_every_mode():
    ids, prefix, suffix = list(range(100, 130)), [1, 2], [7, 8, 9]
    for mode in TRUNCATION_CHOICES:
        for window in windows(ids, 12, mode, prefix, suffix=suffix):
            assert window[:2] == prefix and window[-3:] == suffix and len(window) == 12
    assert windows(ids[:3], 12, "chunks", prefix, suffix=suffix) == [prefix + ids[:3] + suffix]
    user_error(r"--max-length 5 leaves no room", windows, ids, 5, "head", prefix, suffix=suffix)


@pytest.mark.parametrize("template", [TEMPLATE, CHAT])
@pytest.mark.parametrize("mode", TRUNCATION_CHOICES)
def test_template_tail_survives_every_truncation_mode_on_a_5_mb_text(tiny, template, mode):
    model, tokenizer = tiny
    classifier = Classifier(model, tokenizer, max_length=64, truncation=mode, prompt_template=template,
                            device="cpu", precision="fp32")
    prompt = classifier.prompt
    text = "a very long review that goes on and on; " * 125_000
    assert len(text) == 5_000_000
    encoded = classifier._encode(text)
    assert len(encoded) == (32 if mode == "chunks" else 1)
    for window in encoded:
        assert len(window) == 64
        assert window[: len(prompt.prefix)] == prompt.prefix and window[-len(prompt.suffix):] == prompt.suffix
    # The pooled token (the last one that is not padding) is the template's last token.
    assert prompt.suffix[-1] != tokenizer.pad_token_id


def test_pooled_logits_are_those_at_the_templates_last_token(tiny):
    import torch

    model, tokenizer = tiny
    classifier = Classifier(model, tokenizer, max_length=32, truncation="head_tail", prompt_template=TEMPLATE,
                            device="cpu", precision="fp32")
    texts = ["short", "a much longer text " * 20]
    logits, _ = classifier.window_logits(texts)
    for text, row in zip(texts, logits):
        ids = torch.tensor([classifier._encode(text)[0]])
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state[0, -1]
            expected = model.score(hidden).numpy()
        assert tokenizer.decode(ids[0, -len(classifier.prompt.suffix):]) == "\nSentiment:"
        np.testing.assert_allclose(row, expected, atol=1e-5)


def test_template_changes_the_prediction_and_the_text_ids_are_prose_like(tiny):
    model, tokenizer = tiny
    plain = Classifier(model, tokenizer, max_length=64, device="cpu", precision="fp32")
    templated = Classifier(model, tokenizer, max_length=64, prompt_template=TEMPLATE, device="cpu", precision="fp32")
    assert not np.allclose(plain.predict_proba(["great film"]), templated.predict_proba(["great film"]))
    # "Review: great" keeps " great" one token, as in running text.
    assert templated._encode("great")[0] == (templated.prompt.prefix + tokenizer(" great", add_special_tokens=False)
                                             ["input_ids"] + templated.prompt.suffix)


@pytest.mark.parametrize("mode", TRUNCATION_CHOICES)
def test_training_rows_are_the_classifiers_windows(tiny, mode):
    model, tokenizer = tiny
    classifier = Classifier(model, tokenizer, max_length=24, truncation=mode, prompt_template=TEMPLATE,
                            device="cpu", precision="fp32")
    texts = ["good", "word " * 100, ""]
    rows = TokenizedTexts(LabelledTexts(texts, [0, 1, 0], "x"), tokenizer, 24, mode, classifier.prompt).rows
    for text, row in zip(texts, rows):
        # chunks trains on each text's first window (the head), head_tail on its head_tail window
        assert row["input_ids"] == classifier._encode(text)[0]


def test_chat_needs_a_chat_template(tiny):
    _, tokenizer = tiny
    encoding = PromptEncoding.build(tokenizer, CHAT, ["negative", "positive"])
    assert tokenizer.decode(encoding.suffix).endswith("<|im_start|>assistant\n")
    assert "Classify the text as one of: negative, positive." in tokenizer.decode(encoding.prefix)
    saved = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        user_error(r"--prompt-template chat: this backbone's tokenizer has no chat template", PromptEncoding.build,
                   tokenizer, CHAT, ["a", "b"])
    finally:
        tokenizer.chat_template = saved


# --- a template saved with a trained model, applied by every entry point -------------------------------------

@pytest.fixture(scope="module")
def templated_run(tmp_path_factory):
    """A tiny model trained with a template (max_length 24: the longest validation texts run as chunks)."""
    import pandas as pd
    from conftest import SENTIMENT, keyword_rows

    from llmclf.cli import main

    root = tmp_path_factory.mktemp("templated")
    rows = keyword_rows({"negative": SENTIMENT["neg"], "positive": SENTIMENT["pos"]}, 120, seed=3)
    for row in rows[100:106]:
        row["text"] = " ".join([row["text"]] * 6)
    pd.DataFrame(rows[:90]).to_csv(root / "train.csv", index=False)
    pd.DataFrame(rows[90:]).to_csv(root / "valid.csv", index=False)
    out = root / "model"
    assert main(["train", "--data", str(root / "train.csv"), "--validation-data", str(root / "valid.csv"),
                 "--model", "tiny-random-llama", "--epochs", "2", "--learning-rate", "3e-3", "--max-length", "24",
                 "--prompt-template", TEMPLATE, "--head-init", "label-words", "--output", str(out)]) == 0
    valid = pd.read_csv(root / "valid.csv")
    return out, valid["text"].tolist(), valid["label"].tolist(), root


def without_template(classifier):
    classifier.prompt = PromptEncoding.build(classifier.tokenizer)
    classifier.prompt_template = None
    return classifier


def reference_loss(classifier, texts, labels, model_dir):
    from llmclf.analysis import model_logits
    from llmclf.calibration import nll

    logits, calibration = model_logits(classifier, texts, str(model_dir))
    ids = [classifier.labels.index(label) for label in labels]
    return nll(logits, ids, calibration.temperature)


@pytest.mark.slow  # trains a model, and starts a server for one case
@pytest.mark.parametrize("entry", ["train", "evaluate", "predict", "serve", "Classifier"])
def test_saved_template_is_applied_by_every_entry_point(templated_run, entry):
    import json

    import pandas as pd

    out, texts, labels, root = templated_run
    assert "prompt_template: 'Review: {text}\\nSentiment:'" in (out / "llmclf_config.yaml").read_text()
    classifier = Classifier.from_pretrained(str(out))
    assert classifier.prompt_template == TEMPLATE and classifier.truncation == "chunks" and classifier.max_length == 24
    plain = without_template(Classifier.from_pretrained(str(out)))
    if entry in ("train", "evaluate"):
        metrics = json.loads((out / "metrics.json").read_text())["validation"]
        if entry == "evaluate":
            from llmclf.evaluate import evaluate

            got = evaluate(str(out), str(root / "valid.csv"))
            for key in ("accuracy", "roc_auc", "loss", "ece"):
                assert got[key] == pytest.approx(metrics[key], abs=1e-6), key
            metrics = got
        assert metrics["loss"] == pytest.approx(reference_loss(classifier, texts, labels, out), abs=1e-6)
        assert abs(metrics["loss"] - reference_loss(plain, texts, labels, out)) > 1e-3
        return
    want, unwanted = classifier.predict_proba(texts), plain.predict_proba(texts)
    assert np.abs(want - unwanted).max() > 1e-3
    if entry == "predict":
        from llmclf.cli import main

        pd.DataFrame({"text": texts}).to_csv(root / "texts.csv", index=False)
        assert main(["predict", "--model", str(out), "--input", str(root / "texts.csv"), "--output",
                     str(root / "scored.csv"), "--overwrite"]) == 0
        scored = pd.read_csv(root / "scored.csv")
        got = scored[[f"prob_{name}" for name in classifier.labels]].to_numpy()
    elif entry == "serve":
        import urllib.request

        from llmclf.testing import ServerProcess

        with ServerProcess(out) as server:
            request = urllib.request.Request(server.url + "/v1/predict", data=json.dumps({"texts": texts}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        got = np.array([[p["probs"][name] for name in classifier.labels] for p in body["predictions"]])
    else:
        prefix, suffix = classifier.prompt.prefix, classifier.prompt.suffix
        assert classifier.tokenizer.decode(prefix) == "Review:" and classifier.tokenizer.decode(suffix) == "\nSentiment:"
        assert all(w[: len(prefix)] == prefix and w[-len(suffix):] == suffix for t in texts for w in classifier._encode(t))
        assert any(len(classifier._encode(t)) > 1 for t in texts)  # chunks, as saved
        got = want
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow  # trains a model
def test_model_card_shows_the_template(templated_run):
    out = templated_run[0]
    card = (out / "README.md").read_text()
    assert "Classifier.from_pretrained" in card and "applies the saved prompt template" in card


def test_saved_truncation_is_the_default_and_a_flag_overrides_it(tiny_classifier_dir, tmp_path):
    import shutil

    import yaml

    from llmclf.cli import build_parser
    from llmclf.commands import classifier_options

    model = tmp_path / "model"
    shutil.copytree(tiny_classifier_dir, model)
    (model / "llmclf_config.yaml").write_text(yaml.safe_dump({"model": "tiny-random-llama", "max_length": 64,
                                                             "truncation": "head_tail"}))
    assert Classifier.from_pretrained(str(model)).truncation == "head_tail"
    assert Classifier.from_pretrained(str(model), truncation="head").truncation == "head"
    assert Classifier.from_pretrained(str(tiny_classifier_dir)).truncation == "chunks"  # saved before the setting
    ns = build_parser().parse_args(["predict", "--model", str(model), "x"])
    assert Classifier.from_pretrained(str(model), **classifier_options(ns)).truncation == "head_tail"
