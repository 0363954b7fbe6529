"""The CLI contract for user mistakes: exit code 2, one line on stderr, no traceback, nothing written.

Each case runs the real `python -m llmclf` in its own working directory. A process costs ~2-5 s of imports
(the train path imports the Trainer before it reads anything), so the selected cases run side by side once
per module and each test checks its own result.
"""

import hashlib
import os
import re
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
    """A regex the one stderr line must match (after the `llmclf: error: ` prefix)."""
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    marks: tuple = ()

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


DATA = {"d.csv": TWO_CLASSES}
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

CASES = TRAIN_CASES + MODEL_CASES


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (hidden ones included) with a hash of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LLMCLF_VERBOSE"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "llmclf", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """Runs every selected case once, side by side: case id -> (result, before, after)."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    selected.add("output-holds-a-model")  # test_existing_model_is_refused_with_its_files_untouched reads it
    prepared = {}
    for case in CASES:
        if case.id not in selected:
            continue
        cwd = tmp_path_factory.mktemp(case.id)
        for name, content in case.files.items():
            (cwd / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        if case.setup:
            case.setup(cwd)
        prepared[case.id] = (cwd, snapshot(cwd))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {case.id: pool.submit(run_cli, case.argv, prepared[case.id][0]) for case in CASES
                   if case.id in prepared}
    return {cid: (futures[cid].result(), before, snapshot(cwd)) for cid, (cwd, before) in prepared.items()}


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_user_mistake_is_one_line_exit_2_and_writes_nothing(case, runs):
    result, before, after = runs[case.id]
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    assert lines[0].startswith("llmclf: error: ")
    assert re.search(case.message, lines[0]), lines[0]
    assert result.stdout == ""
    # No output, staging or temporary directory appeared, and files that were there are untouched.
    assert after == before


def test_every_case_id_is_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def test_existing_model_is_refused_with_its_files_untouched(runs):
    """The same run as the output-holds-a-model case: spelled out because losing a model is the costly mistake."""
    result, before, after = runs["output-holds-a-model"]
    assert result.returncode == 2
    assert {"out", "out/config.json", "out/model.safetensors"} <= set(after)
    assert after["out/model.safetensors"] == hashlib.sha256(b"the weights of a model someone trained before").hexdigest()
    assert not any(name.startswith(".out.") for name in after)
