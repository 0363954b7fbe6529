"""Label-word heads and zero-shot classification: the head equals the language model on the label words, and
contextual calibration; the slow tests run the real SmolLM2 backbone."""

import numpy as np
import pytest
from helpers import user_error

from llmclf.cli import main
from llmclf.predict import Classifier
from llmclf.zeroshot import contextual_bias, parse_labels, word_ids

TEMPLATE = "Review: {text}\\nSentiment:"
OBVIOUS = {
    "This movie was wonderful, I loved every minute of it.": "positive",
    "A terrible, boring film. I hated it.": "negative",
    "Absolutely brilliant acting and a beautiful story.": "positive",
    "The worst movie I have ever seen, a waste of time.": "negative",
}


def test_parse_labels():
    assert parse_labels("negative, positive") == ["negative", "positive"]
    assert parse_labels(["a", "b"]) == ["a", "b"]
    user_error(r"--labels: empty label list", parse_labels, " , ")
    user_error(r"--labels: empty label list", parse_labels, [])
    user_error(r"a label is repeated", parse_labels, "a,a")


def test_label_words_follow_the_template_with_a_space_unless_it_ends_in_whitespace():
    from llmclf.models import default_tokenizer_dir, load_tokenizer

    tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    space, fresh = tokenizer(" positive")["input_ids"], tokenizer("positive")["input_ids"]
    assert word_ids(tokenizer, ["positive"], "\nSentiment:") == [space]
    assert word_ids(tokenizer, ["positive"], "<|im_start|>assistant\n") == [fresh]
    assert len(word_ids(tokenizer, ["Sci/Tech"], ":")[0]) > 1  # several tokens: the head row is their mean
    user_error(r"cannot encode '<\|endoftext\|>'", word_ids, tokenizer, ["<|endoftext|>"], ":")


def test_tiny_label_word_head_is_the_embedding_rows_of_the_words():
    import torch

    classifier = Classifier.from_pretrained("tiny-random-llama", labels=["negative", "positive"],
                                            prompt_template=TEMPLATE, max_length=64, precision="fp32")
    model, tokenizer = classifier.model, classifier.tokenizer
    rows = model.get_input_embeddings().weight  # tiny-random-llama has no LM head: its own rows stand in
    ids = word_ids(tokenizer, ["negative", "positive"], "\nSentiment:")
    torch.testing.assert_close(model.score.weight, torch.stack([rows[i].mean(0) for i in ids]))
    # The bias makes the content-free inputs uniform.
    probs = classifier.predict_proba(["N/A", "", "[MASK]"]).mean(axis=0)
    np.testing.assert_allclose(probs, [0.5, 0.5], atol=0.02)
    assert np.allclose(contextual_bias(classifier), classifier.label_bias)


def test_labels_of_a_fine_tuned_model(tiny_classifier_dir):
    Classifier.from_pretrained(str(tiny_classifier_dir), labels=["neg", "pos"])  # its own labels: fine
    user_error(r"--labels spam,ham: .* is a fine-tuned classifier with labels neg,pos", Classifier.from_pretrained,
               str(tiny_classifier_dir), labels="spam,ham")
    user_error(r"was trained with prompt template None", Classifier.from_pretrained, str(tiny_classifier_dir),
               prompt_template=TEMPLATE)


def test_zero_shot_predict_cli_on_the_tiny_backbone(capsys):
    assert main(["predict", "--model", "tiny-random-llama", "--labels", "neg,pos", "--max-length", "64",
                 "good film", "bad film"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] in ("neg", "pos") for line in lines] == [True, True]


# --- the real backbone -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_lm():
    import torch
    from transformers import AutoModelForCausalLM

    from llmclf.models import resolve_backbone

    return AutoModelForCausalLM.from_pretrained(resolve_backbone("smollm2-135m"), dtype=torch.float32).eval()


@pytest.mark.slow
@pytest.mark.parametrize("template", [TEMPLATE, "chat"])
def test_label_word_head_at_step_0_is_the_language_model_on_the_label_words(smollm2_lm, template):
    import torch

    from llmclf.zeroshot import zero_shot_classifier

    labels = ["negative", "positive"]
    classifier = zero_shot_classifier(Classifier, "smollm2-135m", labels, calibrate=False, prompt_template=template,
                                      max_length=64, truncation="head_tail", precision="fp32")
    texts = list(OBVIOUS)[:2] + ["word " * 200]  # the last one is cut to a window: the template's tail stays
    logits, owner = classifier.window_logits(texts)
    ids = word_ids(classifier.tokenizer, labels, classifier.prompt.tail)
    assert all(len(i) == 1 for i in ids)
    windows = [w for text in texts for w in classifier._encode(text)]
    assert len(windows) == len(owner)
    with torch.no_grad():
        for window, row in zip(windows, logits):
            lm = smollm2_lm(input_ids=torch.tensor([window])).logits[0, -1]
            np.testing.assert_allclose(row, lm[[i[0] for i in ids]].numpy(), atol=1e-4)


@pytest.mark.slow
def test_zero_shot_with_contextual_calibration_labels_obvious_reviews():
    classifier = Classifier.from_pretrained("smollm2-135m", labels=["negative", "positive"], precision="fp32")
    assert classifier.prompt_template == "chat"
    assert classifier.label_bias is not None and np.abs(classifier.label_bias).max() > 1e-3
    assert classifier.predict(list(OBVIOUS)) == list(OBVIOUS.values())
    probs = classifier.predict_proba(["N/A", "", "[MASK]"]).mean(axis=0)
    np.testing.assert_allclose(probs, [0.5, 0.5], atol=0.05)


@pytest.mark.slow  # starts a server process
def test_zero_shot_serve_on_the_tiny_backbone():
    import json
    import urllib.request

    from llmclf.testing import ServerProcess

    reference = Classifier.from_pretrained("tiny-random-llama", labels=["neg", "pos"], max_length=64, precision="fp32")
    with ServerProcess("tiny-random-llama", labels="neg,pos", max_length=64) as server:
        request = urllib.request.Request(server.url + "/v1/predict", data=json.dumps({"texts": ["good", "bad"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
    assert body["labels"] == ["neg", "pos"]
    got = np.array([[p["probs"]["neg"], p["probs"]["pos"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, reference.predict_proba(["good", "bad"]), atol=1e-5)


@pytest.mark.parametrize("labels, problem_type, words, expected", [
    (["negative", "positive"], "single-label", None, "label-words"),   # word labels: the measured winner
    (["0", "1"], "single-label", None, "random"),                       # integers are no words
    (["0", "1"], "single-label", ["bad", "good"], "label-words"),       # unless words are given
    (["anger", "joy"], "multi-label", None, "random"),                  # sigmoids would start saturated
])
def test_head_init_auto_resolves_per_run_and_is_recorded(labels, problem_type, words, expected):
    import torch

    from llmclf.config import TrainArgs
    from llmclf.models import load_backbone
    from llmclf.zeroshot import prepare_head

    args = TrainArgs(model="tiny-random-llama", label_names=labels, label_words=words, problem_type=problem_type,
                     prompt_template=TEMPLATE, max_length=64)
    assert args.head_init == "auto"
    model, tokenizer = load_backbone("tiny-random-llama", dict(enumerate(labels)))
    before = model.score.weight.detach().clone()
    prepare_head(args, model, tokenizer)
    assert args.head_init == expected  # what llmclf_config.yaml records
    changed = not torch.equal(before, model.score.weight)
    assert changed == (expected == "label-words")
