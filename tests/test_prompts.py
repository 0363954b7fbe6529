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
