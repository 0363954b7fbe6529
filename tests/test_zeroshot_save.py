"""A zero-shot classifier saved with `llmclf zero-shot --output DIR` and loaded back by every entry point."""

import json

import numpy as np
import pytest
import yaml
from helpers import user_error

from llmclf.cli import main
from llmclf.predict import Classifier
from llmclf.zeroshot import save_zero_shot

TEMPLATE = "Review: {text}\nSentiment:"
TEXTS = ["good film", "bad film", "a long and winding story " * 20]
TINY = dict(labels=["neg", "pos"], prompt_template=TEMPLATE, max_length=64, precision="fp32")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny-backbone zero-shot classifier saved by the command, and the same classifier built in memory."""
    out = tmp_path_factory.mktemp("zs") / "sentiment-zs"
    assert main(["zero-shot", "--model", "tiny-random-llama", "--labels", "neg,pos", "--prompt-template", TEMPLATE,
                 "--max-length", "64", "--precision", "fp32", "--output", str(out)]) == 0
    return out, Classifier.from_pretrained("tiny-random-llama", **TINY)


def test_the_directory_holds_the_recipe_and_the_measured_bias(saved):
    out, reference = saved
    assert sorted(p.name for p in out.iterdir()) == ["calibration.json", "llmclf_config.yaml"]
    run = yaml.safe_load((out / "llmclf_config.yaml").read_text())
    assert run["zero_shot"] is True and run["model"] == "tiny-random-llama"
    assert (run["label_names"], run["label_words"], run["prompt_template"]) == (["neg", "pos"], ["neg", "pos"], TEMPLATE)
    assert (run["max_length"], run["truncation"]) == (64, reference.truncation)
    bias = json.loads((out / "calibration.json").read_text())["label_bias"]
    np.testing.assert_allclose(bias, reference.label_bias, atol=1e-6)
    assert not list(out.parent.glob(".*llmclf-partial"))  # staged, then moved into place


def test_loaded_back_it_is_the_same_classifier(saved):
    out, reference = saved
    loaded = Classifier.from_pretrained(str(out), precision="fp32")
    assert (loaded.labels, loaded.prompt_template, loaded.max_length) == (["neg", "pos"], TEMPLATE, 64)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), reference.predict_proba(TEXTS), atol=1e-6)
    Classifier.from_pretrained(str(out), labels="neg,pos", precision="fp32")  # its own labels: fine


def test_the_saved_bias_is_used_not_measured_again(saved, tmp_path):
    import shutil

    out, _ = saved
    copy = tmp_path / "biased"
    shutil.copytree(out, copy)
    (copy / "calibration.json").write_text(json.dumps({"label_bias": [30.0, -30.0]}))
    assert Classifier.from_pretrained(str(copy), precision="fp32").predict(TEXTS) == ["neg"] * len(TEXTS)


def test_predict_cli_reads_the_saved_directory(saved, capsys):
    out, reference = saved
    assert main(["predict", "--model", str(out), "--precision", "fp32", *TEXTS[:2]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == reference.predict(TEXTS[:2])


def test_mistakes(saved, tiny_classifier_dir, tmp_path, capsys):
    out, _ = saved
    before = sorted(p.name for p in out.iterdir())
    cases = [
        (["--labels", "neg,pos", "--output", str(out)], r"--output .* exists; pass --overwrite"),
        (["--output", str(tmp_path / "a")], r"--labels: give the label names"),
        (["--model", str(tiny_classifier_dir), "--labels", "neg,pos", "--output", str(tmp_path / "b")],
         r"is a classifier already; give a backbone"),
        (["--model", str(out), "--labels", "neg,pos", "--output", str(tmp_path / "c")],
         r"is a classifier already; give a backbone"),
    ]
    for flags, message in cases:
        assert main(["zero-shot", "--max-length", "64", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and __import__("re").search(message, err), err
    assert sorted(p.name for p in out.iterdir()) == before
    assert not any((tmp_path / name).exists() for name in "abc")
    user_error(r"--labels spam,ham: .* is a saved zero-shot classifier with labels neg,pos; drop --labels",
               Classifier.from_pretrained, str(out), labels="spam,ham")
    user_error(r"was saved with prompt template .*; drop --prompt-template", Classifier.from_pretrained, str(out),
               prompt_template="chat")
    user_error(r"--label-words: .* label words neg,pos; drop --label-words", Classifier.from_pretrained, str(out),
               labels="neg,pos", label_words="bad,good")
    user_error(r"only a zero-shot classifier is saved this way", save_zero_shot,
               Classifier.from_pretrained(str(tiny_classifier_dir)), tmp_path / "d")


@pytest.mark.slow  # starts a server process
def test_serve_and_evaluate_load_the_saved_directory(saved, tmp_path):
    import urllib.request

    import pandas as pd

    from llmclf.testing import ServerProcess

    out, reference = saved
    with ServerProcess(str(out), precision="fp32") as server:
        request = urllib.request.Request(server.url + "/v1/predict", data=json.dumps({"texts": TEXTS}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
    got = np.array([[p["probs"]["neg"], p["probs"]["pos"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, reference.predict_proba(TEXTS), atol=1e-5)

    data = tmp_path / "test.csv"
    pd.DataFrame({"text": TEXTS, "label": reference.predict(TEXTS)}).to_csv(data, index=False)
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--precision", "fp32",
                 "--output", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == 1.0  # labelled with the classifier's own answers
