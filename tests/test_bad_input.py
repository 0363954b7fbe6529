"""The CLI contract for user mistakes: exit code 2, one line on stderr, no traceback, nothing written.

Each case runs the real `python -m llmclf` in its own working directory. A process costs ~2-5 s of imports
(the train path imports the Trainer before it reads anything), so the selected cases run side by side once
per module and each test checks its own result. docs/errors.md lists every case, entry point by entry point.

A case that breaks the contract today is marked xfail(strict=True) with the bug as its reason, and `raises=`
names the part of the contract it breaks (GotTraceback, WrongExitCode, WroteSomething, NotOneLine): any other
failure still fails, and the fix turns the xfail into a failure that asks for the mark to go.
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

TWO_CLASSES = "text,label\n" + "".join(f"review number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(10))
TRAIN = ["train", "--model", "tiny-random-llama", "--output", "out"]


@dataclass
class Case:
    id: str
    argv: list[str]
    message: str
    """A regex the error line (the last on stderr, after `llmclf: error: `) must match."""
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    marks: tuple = ()
    stdin: bytes = b""

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def model_dir_with_config(path: Path) -> None:
    (path / "model").mkdir()
    (path / "model" / "config.json").write_text('{"architectures": ["LlamaForSequenceClassification"]}')
    (path / "model" / "model.safetensors").write_bytes(b"weights of another model")


def empty_model_dir(path: Path) -> None:
    (path / "model").mkdir()
    (path / "model" / "notes.txt").write_text("no config here")


def causal_lm_dir(path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, architectures=["LlamaForCausalLM"]).save_pretrained(path / "model")


def existing_model_output(path: Path) -> None:
    (path / "out").mkdir()
    (path / "out" / "config.json").write_text('{"architectures": ["LlamaForSequenceClassification"]}')
    (path / "out" / "model.safetensors").write_bytes(b"the weights of a model someone trained before")


def model_without_chat_template(path: Path) -> None:
    """A tiny causal LM whose tokenizer (SmolLM2's, chat template removed) has no chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmclf.models import default_tokenizer_dir, load_tokenizer

    tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    tokenizer.chat_template = None
    tokenizer.save_pretrained(path / "model")
    (path / "model" / "chat_template.jinja").unlink(missing_ok=True)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(path / "model")


DATA = {"d.csv": TWO_CLASSES}
LISTS = {"d.jsonl": '{"text": "so angry", "label": ["anger"]}\n{"text": "angry yet glad", "label": ["anger", "joy"]}\n'}
RATINGS = "text,label\nfine,3.5\nsuperb,4.75\n"
INT_LABELS = {"d.csv": "text,label\n" + "".join(f"review number {i},{i % 2}\n" for i in range(10))}
TRAIN_CASES = [
    Case("missing-data-file", [*TRAIN, "--data", "nope.csv"], r"--data nope\.csv: file not found"),
    Case("unknown-format", [*TRAIN, "--data", "data.xlsx"], r"--data data\.xlsx: unknown format '\.xlsx'.*\.csv",
         files={"data.xlsx": b"PK\x03\x04 not really a workbook"}),
    Case("missing-text-column", [*TRAIN, "--data", "d.csv"],
         r"no text column 'text'; columns found: review, label\. Pass --text-column",
         files={"d.csv": "review,label\ngood,pos\nbad,neg\n"}),
    Case("missing-label-column", [*TRAIN, "--data", "d.csv"],
         r"no label column 'label'; columns found: text, sentiment\. Pass --label-column",
         files={"d.csv": "text,sentiment\ngood,pos\nbad,neg\n"}),
    Case("empty-dataset", [*TRAIN, "--data", "d.csv"], r"--data d\.csv: no examples found",
         files={"d.csv": "text,label\n"}),
    Case("single-class", [*TRAIN, "--data", "d.csv"], r"single class \('pos'\)",
         files={"d.csv": "text,label\ngood,pos\nfine,pos\ngreat,pos\n"}),
    Case("unseen-validation-label", [*TRAIN, "--data", "d.csv", "--validation-data", "val.csv"],
         r"--validation-data val\.csv: row 2 has label 'meh', never seen in training \(labels: neg, pos\)",
         files={**DATA, "val.csv": "text,label\nok,pos\nso-so,meh\n"}),
    Case("unseen-test-label", [*TRAIN, "--data", "d.csv", "--test-data", "test.csv"],
         r"--test-data test\.csv: row 1 has label 'neutral', never seen in training",
         files={**DATA, "test.csv": "text,label\nso-so,neutral\n"}),
    Case("empty-text", [*TRAIN, "--data", "d.csv"], r"--data d\.csv: row 2 has empty text",
         files={"d.csv": "text,label\ngood,pos\n,neg\nbad,neg\n"}),
    Case("non-string-text", [*TRAIN, "--data", "d.jsonl"], r"--data d\.jsonl: row 2 has not a string \(int\) text",
         files={"d.jsonl": '{"text": "good", "label": "pos"}\n{"text": 42, "label": "neg"}\n'}),
    Case("invalid-utf8", [*TRAIN, "--data", "d.csv"], r"--data d\.csv: not valid UTF-8 \(byte 11\)",
         files={"d.csv": b"text,label\n\xff\xfe bad,1\n"}),
    Case("output-holds-a-model", [*TRAIN, "--data", "d.csv"], r"--output out holds a model; pass --overwrite",
         files=DATA, setup=existing_model_output),
    Case("unknown-model-alias", ["train", "--model", "smollm-135m", "--output", "out", "--data", "d.csv"],
         r"--model smollm-135m: not a known alias.*smollm2-135m, llama-3\.2-1b, tiny-random-llama", files=DATA),
    Case("max-length-0", [*TRAIN, "--data", "d.csv", "--max-length", "0"],
         r"--max-length must be an integer of at least 1, got 0", files=DATA),
    Case("batch-size-0", [*TRAIN, "--data", "d.csv", "--batch-size", "0"],
         r"--batch-size must be an integer of at least 1, got 0", files=DATA),
    Case("batch-size-abc", [*TRAIN, "--data", "d.csv", "--batch-size", "abc"],
         r"argument --batch-size: invalid int value: 'abc'", files=DATA),
    Case("unknown-flag", [*TRAIN, "--data", "d.csv", "--no-such-flag", "3"],
         r"unrecognized arguments: --no-such-flag 3", files=DATA),
    Case("config-unknown-key", [*TRAIN, "--data", "d.csv", "--config", "run.yaml"],
         r"run\.yaml: unknown setting\(s\) learning_rte; known settings: .*learning_rate",
         files={**DATA, "run.yaml": "epochs: 1\nlearning_rte: 1.0e-4\n"}),
    Case("recipe-and-config", [*TRAIN, "--data", "d.csv", "--recipe", "seed", "--config", "run.yaml"],
         r"--recipe and --config both given", files={**DATA, "run.yaml": "epochs: 1\n"}),
    Case("template-without-text", [*TRAIN, "--data", "d.csv", "--prompt-template", "Review:"],
         r"--prompt-template 'Review:': put \{text\} in it exactly once", files=DATA),
    Case("template-other-placeholder", [*TRAIN, "--data", "d.csv", "--prompt-template", "{title}: {text}"],
         r"unknown placeholder\(s\) \{title\}; the only one is \{text\}", files=DATA),
    Case("template-leaves-no-room", [*TRAIN, "--data", "d.csv", "--prompt-template", "chat", "--max-length", "8"],
         r"--max-length 8 leaves no room for text after the prompt template's \d+ tokens", files=DATA),
    Case("chat-template-missing", ["train", "--model", "model", "--output", "out", "--data", "d.csv",
                                   "--prompt-template", "chat"],
         r"--prompt-template chat: this backbone's tokenizer has no chat template", files=DATA,
         setup=model_without_chat_template),
    Case("label-words-integer-labels", [*TRAIN, "--data", "d.csv", "--head-init", "label-words"],
         r"--head-init label-words: the labels are integers \(0, 1\), which are no words; pass --label-words",
         files=INT_LABELS),
    Case("label-word-not-encodable", [*TRAIN, "--data", "d.csv", "--head-init", "label-words",
                                      "--label-words", "<|endoftext|>,good"],
         r"--label-words: the tokenizer cannot encode '<\|endoftext\|>'", files=DATA),
    Case("label-words-count", [*TRAIN, "--data", "d.csv", "--head-init", "label-words", "--label-words", "bad"],
         r"--label-words: 1 word\(s\) for 2 labels \(neg, pos\)", files=DATA),
    Case("label-words-with-random-head", [*TRAIN, "--data", "d.csv", "--head-init", "random",
                                          "--label-words", "bad,good"],
         r"--label-words sets the words of a label-word head, but --head-init is random; drop one of them", files=DATA),
    Case("compile-with-packing", [*TRAIN, "--data", "d.csv", "--torch-compile", "--packing"],
         r"--torch-compile and --packing: .*drop one of them", files=DATA),
    Case("best-metric-without-per-epoch-validation", [*TRAIN, "--data", "d.csv", "--no-eval-each-epoch",
                                                      "--best-metric", "loss"],
         r"--best-metric compares per-epoch validation scores, which --no-eval-each-epoch skips", files=DATA),
    Case("save-minutes-not-positive", [*TRAIN, "--data", "d.csv", "--save-minutes", "0"],
         r"--save-minutes must be above 0, got 0.0", files=DATA),
    Case("save-minutes-with-best-metric", [*TRAIN, "--data", "d.csv", "--save-minutes", "8", "--best-metric", "loss"],
         r"--save-minutes checkpoints mid-epoch while --best-metric compares epochs", files=DATA),
    Case("save-steps-with-best-metric", [*TRAIN, "--data", "d.csv", "--save-steps", "5", "--best-metric", "loss"],
         r"--save-steps checkpoints mid-epoch while --best-metric compares epochs", files=DATA),
    Case("class-weights-count", [*TRAIN, "--data", "d.csv", "--class-weights", "1,2,3"],
         r"--class-weights 1,2,3: 3 weight\(s\) for 2 labels \(neg, pos\); give one weight per label", files=DATA),
    Case("class-weights-negative", [*TRAIN, "--data", "d.csv", "--class-weights", "1,-2"],
         r"--class-weights 1,-2: weights must be finite and >= 0; pass balanced, none, or one weight", files=DATA),
    Case("class-weights-not-numbers", [*TRAIN, "--data", "d.csv", "--class-weights", "heavy"],
         r"--class-weights heavy: not a list of numbers; pass balanced, none", files=DATA),
    Case("threshold-recall-without-target", [*TRAIN, "--data", "d.csv", "--threshold-objective", "recall"],
         r"--threshold-objective recall and --target-recall go together", files=DATA),
    # Multi-label and regression data (issue 14).
    Case("multi-label-unseen-validation-label", [*TRAIN, "--data", "d.jsonl", "--validation-data", "v.jsonl"],
         r"--validation-data v\.jsonl: row 2 has label 'meh', never seen in training \(labels: anger, joy\)",
         files={**LISTS, "v.jsonl": '{"text": "ok", "label": ["joy"]}\n{"text": "hm", "label": ["joy", "meh"]}\n'}),
    Case("multi-label-empty-list", [*TRAIN, "--data", "d.jsonl"],
         r"--data d\.jsonl: row 3 has an empty list of labels; label it, remove it, or pass --allow-empty-labels",
         files={"d.jsonl": LISTS["d.jsonl"] + '{"text": "nothing here", "label": []}\n'}),
    Case("multi-label-lists-and-single-values", [*TRAIN, "--data", "d.jsonl"],
         r"--data d\.jsonl: the label column mixes lists and single values \(row 3 holds 'joy'\)",
         files={"d.jsonl": LISTS["d.jsonl"] + '{"text": "glad", "label": "joy"}\n'}),
    Case("label-column-numbers-and-text", [*TRAIN, "--data", "d.jsonl"],
         r"--data d\.jsonl: the label column mixes numbers and text \(row 2 holds 'high'\)",
         files={"d.jsonl": '{"text": "a", "label": 2.5}\n{"text": "b", "label": "high"}\n'
                           '{"text": "c", "label": 4.5}\n'}),
    Case("regression-nan-target", [*TRAIN, "--data", "r.csv"],
         r"--data r\.csv: row 3 has target 'nan'; regression targets must be finite numbers",
         files={"r.csv": RATINGS + "so-so,nan\n"}),
    Case("regression-inf-target", [*TRAIN, "--data", "r.csv"],
         r"--data r\.csv: row 3 has target 'inf'; regression targets must be finite numbers",
         files={"r.csv": RATINGS + "so-so,inf\n"}),
    Case("regression-text-target", [*TRAIN, "--data", "r.csv", "--problem-type", "regression"],
         r"--data r\.csv: row 3 has target 'high', not a number; regression targets must be numbers",
         files={"r.csv": RATINGS + "so-so,high\n"}),
    Case("multi-label-class-weights-count", [*TRAIN, "--data", "d.jsonl", "--class-weights", "1,2,3"],
         r"--class-weights 1,2,3: 3 weight\(s\) for 2 labels \(anger, joy\); give one weight per label", files=LISTS),
    Case("multi-label-class-weights-negative", [*TRAIN, "--data", "d.jsonl", "--class-weights", "1,-2"],
         r"--class-weights 1,-2: weights must be finite and >= 0", files=LISTS),
    Case("label-columns-missing-column", [*TRAIN, "--data", "c.csv", "--label-columns", "anger,fear"],
         r"--data c\.csv: no label column 'fear'; columns found: text, anger, joy\. Pass --label-columns",
         files={"c.csv": "text,anger,joy\nso angry,1,0\nso glad,0,1\n"}),
    Case("interval-out-of-range", [*TRAIN, "--data", "r.csv", "--interval", "1.5"],
         r"--interval must be in \(0, 1\), e\.g\. 0\.9, got 1\.5", files={"r.csv": RATINGS}),
    Case("interval-without-regression", [*TRAIN, "--data", "d.jsonl", "--interval", "0.9"],
         r"--interval gives prediction intervals for regression, but this is multi-label data", files=LISTS),
]

MODEL_CASES = []
for command, extra in (("evaluate", ["--data", "d.csv", "--output", "eval"]), ("predict", ["a fine film"])):
    MODEL_CASES += [
        Case(f"{command}-no-such-model-dir", [command, "--model", "nope", *extra],
             r"--model nope: no such model directory", files=DATA),
        Case(f"{command}-dir-without-config", [command, "--model", "model", *extra],
             r"--model model: no config\.json", files=DATA, setup=empty_model_dir),
        Case(f"{command}-causal-lm-without-head", [command, "--model", "model", *extra],
             r"--model model: no classification head \(architectures: LlamaForCausalLM\)", files=DATA,
             setup=causal_lm_dir),
    ]



class GotTraceback(AssertionError):
    pass


class WrongExitCode(AssertionError):
    pass


class WroteSomething(AssertionError):
    """Something on stdout, or a file or directory created or changed."""


class NotOneLine(AssertionError):
    """More than the one error line on stderr (progress bars, logs)."""


# Placeholders in argv, filled in by the `runs` fixture: a tiny neg/pos classifier, the same with the
# non-sentiment labels spam/ham, and a loopback port some other socket already listens on.
TINY, SPAMHAM, BUSY_PORT = "{tiny}", "{spamham}", "{busy_port}"
# Tiny multi-label (action, comedy, drama) and regression models saved as `llmclf train` saves them.
MULTI, REGRESSOR = "{multi}", "{regressor}"

IN = "in.csv"
TEXTS_IN = {IN: "text\ngood film\nbad film\n"}
SCORE = ["predict", "--model", TINY, "--input", IN, "--output", "o.csv"]
PREDICT_CASES = [
    Case("predict-unknown-alias", ["predict", "--model", "smollm-135m", "a fine film"],
         r"--model smollm-135m: no such model directory"),
    Case("predict-no-texts", ["predict", "--model", TINY], r"no texts to classify; pass them as arguments, - "),
    Case("predict-invalid-utf8-stdin", ["predict", "--model", TINY, "-"],
         r"stdin is not valid UTF-8 \(byte 5\); send UTF-8 text", stdin=b"good\n\xff\xfe bad\n"),
    Case("predict-input-without-output", ["predict", "--model", TINY, "--input", IN],
         r"--input and --output go together: --input FILE --output FILE", files=TEXTS_IN),
    Case("predict-output-without-input", ["predict", "--model", TINY, "--output", "o.csv", "a fine film"],
         r"--input and --output go together"),
    Case("predict-texts-and-input", [*SCORE, "a fine film"],
         r"give texts as arguments or --input FILE, not both", files=TEXTS_IN),
    Case("predict-bad-truncation", ["predict", "--model", TINY, "--truncation", "tail", "a fine film"],
         r"argument --truncation: invalid choice: 'tail' \(choose from .*head_tail.*\)"),
    Case("predict-batch-size-0", ["predict", "--model", TINY, "--eval-batch-size", "0", "a fine film"],
         r"argument --eval-batch-size/--batch-size: must be at least 1, got 0"),
    Case("predict-threshold-2", ["predict", "--model", TINY, "--threshold", "2", "a fine film"],
         r"argument --threshold: must be in \(0, 1\], got 2"),
    Case("predict-engine-ray-without-input", ["predict", "--model", TINY, "--engine", "ray", "a fine film"],
         r"--engine ray scores files: pass --input DIR_OR_GLOB --output DIR"),
    Case("predict-labels-differ", ["predict", "--model", TINY, "--labels", "spam,ham", "a fine film"],
         r"--labels spam,ham: .* is a fine-tuned classifier with labels neg,pos; drop --labels"),
    Case("predict-empty-labels", ["predict", "--model", "tiny-random-llama", "--labels", ",", "a fine film"],
         r"--labels: empty label list; give the label names"),
    Case("predict-template-without-text", ["predict", "--model", "tiny-random-llama", "--labels", "neg,pos",
                                           "--prompt-template", "Review:", "a fine film"],
         r"--prompt-template 'Review:': put \{text\} in it exactly once"),
    Case("predict-chat-template-missing", ["predict", "--model", "model", "--labels", "neg,pos", "--prompt-template",
                                           "chat", "a fine film"],
         r"--prompt-template chat: this backbone's tokenizer has no chat template",
         setup=model_without_chat_template),
    Case("predict-label-words-without-labels", ["predict", "--model", TINY, "--label-words", "bad,good", "x"],
         r"--label-words names the words of --labels \(zero-shot\); pass --labels too"),
    # Found once the model has loaded, some while scoring:
    Case("predict-input-not-found", [*SCORE[:4], "nope.csv", "--output", "o.csv"],
         r"--input nope\.csv: file not found"),
    Case("predict-empty-input", SCORE, r"--input in\.csv: no rows to score", files={IN: "text\n"}),
    Case("predict-zero-byte-input", SCORE, r"--input in\.csv: cannot read it \(No columns to parse from file\)",
         files={IN: ""}),
    Case("predict-missing-text-column", SCORE,
         r"--input in\.csv: no text column 'text'; columns found: review, stars\. Pass --text-column",
         files={IN: "review,stars\ngood,5\n"}),
    Case("predict-input-has-a-scoring-column", SCORE,
         r"--input in\.csv: already has column\(s\) label that scoring adds; rename them first",
         files={IN: "text,label\ngood,pos\n"}),
    Case("predict-invalid-utf8-input", SCORE, r"--input in\.csv: not valid UTF-8; re-save the file as UTF-8",
         files={IN: b"text\n\xff\xfe bad\n"}),
    Case("predict-output-is-input", [*SCORE[:-1], IN], r"--output in\.csv is the --input file",
         files=TEXTS_IN),
    Case("predict-output-exists", SCORE, r"--output o\.csv exists; pass --overwrite",
         files={**TEXTS_IN, "o.csv": "scores from an earlier run\n"}),
    Case("predict-output-unknown-format", [*SCORE[:-1], "o.xlsx"], r"--output o\.xlsx: unknown format '\.xlsx'",
         files=TEXTS_IN),
    Case("predict-failed-run-leaves-no-output-folder", [*SCORE[:-1], "new/o.csv"],
         r"--input in\.csv: no rows to score", files={IN: "text\n"}),
    Case("predict-threshold-regression", ["predict", "--model", REGRESSOR, "--threshold", "0.5", "a fine film"],
         r"--threshold is for classifiers; this is a regression model \(it outputs a value\): drop --threshold"),
    Case("predict-min-confidence-regression", ["predict", "--model", REGRESSOR, "--min-confidence", "0.8", "x"],
         r"--min-confidence is for classifiers; this is a regression model \(it outputs a value\)"),
]

EVALUATE = ["evaluate", "--model", TINY, "--data", "d.csv"]
EVALUATE_CASES = [
    Case("evaluate-missing-data-file", [*EVALUATE[:-1], "nope.csv"], r"--data nope\.csv: file not found"),
    Case("evaluate-output-not-empty", [*EVALUATE, "--output", "eval"],
         r"--output eval is not empty; pass --overwrite", files={**DATA, "eval/notes.txt": "mine"}),
    Case("evaluate-output-is-a-file", [*EVALUATE, "--output", "eval.txt"], r"--output eval\.txt",
         files={**DATA, "eval.txt": "mine"}),
    Case("evaluate-label-unknown-to-model", EVALUATE,
         r"--data d\.csv: row 2 has label 'meh', never seen in training \(labels: neg, pos\)",
         files={"d.csv": "text,label\ngood,pos\nso-so,meh\n"}),
    Case("evaluate-multi-label-unknown-label", ["evaluate", "--model", MULTI, "--data", "d.csv"],
         r"--data d\.csv: row 2 has label 'meh', never seen in training \(labels: action, comedy, drama\)",
         files={"d.csv": 'text,label\ngood,"action,comedy"\nso-so,"drama,meh"\n'}),
    Case("evaluate-regression-text-target", ["evaluate", "--model", REGRESSOR, "--data", "d.csv"],
         r"--data d\.csv: row 2 has target 'high', not a number; regression targets must be numbers",
         files={"d.csv": "text,label\ngood,3.5\nso-so,high\n"}),
]

SERVE = ["serve", "--model", TINY]
SERVE_CASES = [
    Case("serve-labels-differ", [*SERVE, "--port", "0", "--labels", "spam,ham"],
         r"--labels spam,ham: .* is a fine-tuned classifier with labels neg,pos; drop --labels"),
    Case("serve-port-out-of-range", [*SERVE, "--port", "70000"], r"--port must be between 0 and 65535, got 70000"),
    Case("serve-port-not-a-number", [*SERVE, "--port", "abc"], r"argument --port: invalid int value: 'abc'"),
    Case("serve-max-batch-size-0", [*SERVE, "--max-batch-size", "0"], r"--max-batch-size must be at least 1, got 0"),
    Case("serve-max-wait-ms-negative", [*SERVE, "--max-wait-ms", "-1"],
         r"--max-wait-ms must be between 0 and 10000, got -1"),
    Case("serve-request-larger-than-queue", [*SERVE, "--max-texts-per-request", "2000"],
         r"--max-texts-per-request 2000 exceeds --max-queue 1024"),
    Case("serve-threshold-2", [*SERVE, "--threshold", "2"], r"--threshold must be in \(0, 1\], got 2"),
    Case("serve-port-in-use", [*SERVE, "--port", BUSY_PORT],
         r"--host 127\.0\.0\.1 --port \d+: cannot listen there \(Address already in use\); choose another --port"),
    Case("serve-host-not-on-this-machine", [*SERVE, "--host", "192.0.2.1", "--port", "8123"],  # RFC 5737 TEST-NET-1
         r"--host 192\.0\.2\.1 --port 8123: cannot listen there \(Cannot assign requested address\)"),
    Case("serve-no-such-model-dir", ["serve", "--model", "nope", "--port", "0"], r"--model nope: no such model directory"),
    Case("serve-threshold-regression", ["serve", "--model", REGRESSOR, "--port", "0", "--threshold", "0.5"],
         r"--threshold is for classifiers; this is a regression model"),
]

DEMO_CASES = [
    Case("demo-output-holds-a-model", ["demo", "--output", "out"], r"--output out holds a model; pass --overwrite",
         setup=existing_model_output),
    Case("demo-output-not-empty", ["demo", "--output", "out"], r"--output out is not empty; pass --overwrite",
         files={"out/notes.txt": "mine"}),
    Case("demo-unknown-flag", ["demo", "--epochs", "1"], r"unrecognized arguments: --epochs 1"),
]

CHECK_CASES = [
    Case("check-no-such-model-dir", ["check", "--model", "nope"], r"--model nope: no such model directory"),
    Case("check-output-exists", ["check", "--model", TINY, "--output", "checks.json"],
         r"--output checks\.json exists; pass --overwrite", files={"checks.json": "{}"}),
    Case("check-threshold-2", ["check", "--model", TINY, "--threshold", "2"],
         r"argument --threshold: must be in \(0, 1\], got 2"),
    Case("check-not-a-sentiment-model", ["check", "--model", SPAMHAM],
         r"behaviour checks are for sentiment models; labels spam, ham do not look like negative/positive\. "
         r"Name them with --negative-label and --positive-label"),
    Case("check-label-not-in-model", ["check", "--model", SPAMHAM, "--negative-label", "spam", "--positive-label",
                                      "good"],
         r"behaviour checks need --negative-label and --positive-label among the model's labels \(spam, ham\); "
         r"got 'spam' and 'good'"),
]

GENERAL_CASES = [
    Case("no-command", [], r"the following arguments are required: command"),
    Case("unknown-command", ["classify", "x"], r"argument command: invalid choice: 'classify'"),
]

CASES = TRAIN_CASES + MODEL_CASES + PREDICT_CASES + EVALUATE_CASES + SERVE_CASES + DEMO_CASES + CHECK_CASES + \
    GENERAL_CASES


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (hidden ones included) with a hash of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# The checkout these tests belong to. A relative PYTHONPATH (`PYTHONPATH=src`) would resolve against each case's
# temporary working directory and the child would import whichever llmclf is installed instead of this code.
SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(argv: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LLMCLF_VERBOSE"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    try:
        result = subprocess.run([sys.executable, "-m", "llmclf", *argv], capture_output=True, input=stdin,
                                cwd=cwd, env=env, timeout=120)
    except subprocess.TimeoutExpired as exc:  # a mistake that was accepted, e.g. a server that started
        result = subprocess.CompletedProcess(exc.cmd, None, exc.stdout or b"", exc.stderr or b"")
    result.stdout, result.stderr = (out.decode(errors="replace") for out in (result.stdout, result.stderr))
    return result


def spam_ham_model(tiny: Path, path: Path) -> Path:
    """The tiny classifier with labels that are not sentiment."""
    import json

    shutil.copytree(tiny, path)
    config = json.loads((path / "config.json").read_text())
    config |= {"id2label": {"0": "spam", "1": "ham"}, "label2id": {"spam": 0, "ham": 1}}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """Runs every selected case once, side by side: case id -> (result, before, after)."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    selected.add("output-holds-a-model")  # test_existing_model_is_refused_with_its_files_untouched reads it
    cases = [case for case in CASES if case.id in selected]
    filled = {}
    if any(TINY in arg or SPAMHAM in arg for case in cases for arg in case.argv):
        tiny = request.getfixturevalue("tiny_classifier_dir")
        filled = {TINY: str(tiny), SPAMHAM: str(spam_ham_model(tiny, tmp_path_factory.mktemp("models") / "spamham"))}
    if any(MULTI in arg or REGRESSOR in arg for case in cases for arg in case.argv):
        from typed_models import multi_label_dir, regression_dir

        root = tmp_path_factory.mktemp("typed-models")
        filled |= {MULTI: str(multi_label_dir(root)), REGRESSOR: str(regression_dir(root))}
    busy = socket.socket()  # listening, so that binding its port fails as it would for another server
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    filled[BUSY_PORT] = str(busy.getsockname()[1])
    prepared = {}
    for case in cases:
        cwd = tmp_path_factory.mktemp(case.id)
        for name, content in case.files.items():
            (cwd / name).parent.mkdir(parents=True, exist_ok=True)
            (cwd / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        if case.setup:
            case.setup(cwd)
        argv = [filled.get(arg, arg) for arg in case.argv]
        prepared[case.id] = (cwd, argv, snapshot(cwd))
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            futures = {case.id: pool.submit(run_cli, prepared[case.id][1], prepared[case.id][0], case.stdin)
                       for case in cases}
    finally:
        busy.close()
    return {cid: (futures[cid].result(), before, snapshot(cwd)) for cid, (cwd, _, before) in prepared.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_user_mistake_is_one_line_exit_2_and_writes_nothing(case, runs):
    result, before, after = runs[case.id]
    if "Traceback" in result.stderr:
        raise GotTraceback(result.stderr[-3000:])
    if result.returncode != 2:
        raise WrongExitCode(f"exit code {result.returncode}:\n{result.stderr[-3000:]}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("llmclf: error: "), result.stderr
    assert re.search(case.message, lines[-1]), lines[-1]
    if result.stdout != "":
        raise WroteSomething(f"stdout: {result.stdout!r}")
    # No output, staging or temporary directory appeared, and files that were there are untouched.
    if after != before:
        raise WroteSomething(f"files before: {before}\nafter: {after}")
    if len(lines) != 1:
        raise NotOneLine(result.stderr[-3000:])


def test_every_case_id_is_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def test_docs_list_every_case_and_only_those():
    """docs/errors.md has one table row per case; its last column is the case id."""
    docs = Path(__file__).parents[1] / "docs" / "errors.md"
    rows = [line.strip().strip("|").split("|") for line in docs.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| Mistake")]
    documented = [cells[-1].strip() for cells in rows]
    assert sorted(documented) == sorted(c.id for c in CASES)


@pytest.mark.slow
def test_existing_model_is_refused_with_its_files_untouched(runs):
    """The same run as the output-holds-a-model case: spelled out because losing a model is the costly mistake."""
    result, before, after = runs["output-holds-a-model"]
    assert result.returncode == 2
    assert {"out", "out/config.json", "out/model.safetensors"} <= set(after)
    assert after["out/model.safetensors"] == hashlib.sha256(b"the weights of a model someone trained before").hexdigest()
    assert not any(name.startswith(".out.") for name in after)
