"""The `llmclf` command: a table from subcommand to function.

    llmclf train --data reviews.csv --model tiny-random-llama --output runs/tiny
    llmclf evaluate --model runs/tiny --data test.csv --output runs/tiny-eval
    llmclf predict --model runs/tiny "Great value for money."
    llmclf check --model runs/tiny

A user mistake (UserError) is printed as one line on stderr with exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from llmclf import commands
from llmclf.config import TrainArgs, field_docs, flag, recipe_names
from llmclf.errors import UserError
from llmclf.artifacts import DEFAULT_CLASSIFIER
from llmclf.precision import PRECISION_CHOICES
from llmclf.windows import DEFAULT_TRUNCATION, TRUNCATION_CHOICES


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus an error on two lines; we promise one line and exit code 2."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


class DeprecatedAlias(argparse.Action):
    """Stores the value; when given by its `deprecated` spelling, says so on stderr (one line, not an error)."""

    def __init__(self, option_strings, dest, deprecated: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = deprecated

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.deprecated:
            print(f"llmclf: note: {self.deprecated} is deprecated here; use {self.option_strings[0]}.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainArgs field, same name, the field's docstring as help; unset flags stay None."""
    docs = field_docs()
    for f in fields(TrainArgs):
        annotation = str(f.type)
        if annotation in ("bool", "bool | None"):
            # --lora / --no-lora: a flag can also switch off what a recipe or config file switched on
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None,
                                help=docs.get(f.name))
        else:
            python_type = {"int": int, "float": float}.get(annotation.split(" ")[0], str)
            parser.add_argument(flag(f.name), type=python_type, default=None, help=docs.get(f.name),
                                metavar=f.name.upper())


def add_inference_flags(parser: argparse.ArgumentParser, model_default: str | None = DEFAULT_CLASSIFIER,
                        batch_size: bool = True,
                        model_help: str = "a directory written by llmclf train, or a shipped model") -> None:
    """The flags of every command that loads a trained classifier (read back by commands.classifier_options)."""
    if model_default is None:
        parser.add_argument("--model", required=True, help=model_help)
    else:
        parser.add_argument("--model", default=model_default, help=f"{model_help} (default: {model_default})")
    if batch_size:
        # The same name as training's batch for texts scored at a time (TrainArgs.eval_batch_size); --batch-size
        # is training's batch in `train`, so here it stays only as an old spelling.
        parser.add_argument("--eval-batch-size", "--batch-size", dest="eval_batch_size", type=positive_int, default=16,
                            action=DeprecatedAlias, deprecated="--batch-size",
                            help="texts per forward pass (--batch-size: deprecated spelling)")
    parser.add_argument("--max-length", type=positive_int, default=None, help="default: the model's training max_length")
    parser.add_argument("--truncation", choices=TRUNCATION_CHOICES, default=None,
                        help="texts longer than max_length: keep the head, head and tail, or average the "
                        "probabilities of overlapping windows (default: the mode the model was trained with, else "
                        f"{DEFAULT_TRUNCATION}, the most accurate on IMDb)")
    parser.add_argument("--labels", default=None,
                        help="zero-shot: label names (comma-separated) for --model naming a backbone (e.g. "
                        "smollm2-135m): no training, a label-word head with contextual calibration")
    parser.add_argument("--label-words", default=None,
                        help="zero-shot: one word per label, in --labels order (default: the label names)")
    parser.add_argument("--prompt-template", default=None,
                        help='zero-shot: e.g. "Review: {text}\nSentiment:" or chat (default: chat when the backbone '
                        "has a chat template); a trained model always uses its own")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="auto: bf16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), else fp32")
    # Two opt-ins for loading a model: never implied.
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run model code shipped with a checkpoint (only for code you trust)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load pickle (.bin) weights when there are no safetensors (they can run code)")


def probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def add_train_command(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier", description="Fine-tune a classifier. Settings: "
                       "defaults, then --recipe or --config, then the flags below.")
    p.add_argument("--recipe", help=f"a named recipe: {', '.join(recipe_names())} (default: default)")
    p.add_argument("--config", help="a YAML file of settings (the keys are the flag names with underscores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    add_train_flags(p)
    p.set_defaults(func=commands.cmd_train)


def add_evaluate_command(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained classifier on labelled data")
    add_inference_flags(p, model_default=None)
    p.add_argument("--data", required=True, help="labelled data: a file, folder or hub dataset name[:split]")
    p.add_argument("--output", help="directory for metrics.json and plots")
    # Multi-label and regression models default to the columns and label settings they were trained with.
    p.add_argument("--text-column", default=None, help="default: text (typed models: as trained)")
    p.add_argument("--label-column", default=None, help="default: label (typed models: as trained)")
    p.add_argument("--label-columns", default=None, help="multi-label: the 0/1 column of each label, in the model's "
                   "label order (default: as trained)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.set_defaults(func=commands.cmd_evaluate)


THRESHOLD_HELP = ("binary models: the second label exactly when its probability reaches this (default: the "
                  "threshold saved with the model, else the most probable label); multi-label models: every label "
                  "whose probability reaches this (default: the per-label thresholds saved with the model, else 0.5)")


def add_predict_command(sub) -> None:
    p = sub.add_parser("predict", help="label texts or a file with a trained classifier")
    p.add_argument("texts", nargs="*", help="texts to classify, or - to read one per line from stdin")
    add_inference_flags(p)
    p.add_argument("--input", help="a CSV, JSONL or Parquet file to score (streamed)")
    p.add_argument("--output", help="where the scored file goes: every input column plus label, score, prob_<label> "
                   "(multi-label models: labels, prob_<label>; regression models: value[, value_low, value_high])")
    p.add_argument("--text-column", default="text", help="the column holding the text in --input")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--threshold", type=probability, default=None, help=THRESHOLD_HELP)
    p.add_argument("--min-confidence", type=probability, default=None,
                   help="mark results whose top probability is below this needs_review (the label is kept): a "
                   "needs_review/ok column before the text, a needs_review column in --output; multi-label "
                   "models: when some label's decision is less sure than this, max(p, 1-p)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="CPU only: dynamic int8 linear layers (the head and each MLP's down_proj stay float). "
                   "For CPUs without native bf16 (with it, the bf16 default is faster). Shipped model, 300 "
                   "reviews: 1.31x fp32's speed, same accuracy, probabilities moved by up to 0.27 "
                   "(bench/results/predict_cpu-amx-2026-12-02.json): check on your model first")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted --input/--output run without rescoring its finished rows")
    p.add_argument("--chunk-rows", type=positive_int, default=1024,
                   help="rows read, scored and saved at a time: memory stays flat whatever the file size")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: score files on a Ray cluster (--input DIR_OR_GLOB, --output DIR)")
    p.add_argument("--num-workers", type=positive_int, default=2, help="Ray actors, one model each")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.set_defaults(func=commands.cmd_predict)


def add_zero_shot_command(sub) -> None:
    p = sub.add_parser("zero-shot", help="save a zero-shot classifier (a backbone and label names, no training)",
                       description="Build a zero-shot classifier (a label-word head with contextual calibration over "
                       "a backbone) and save it as a directory that predict, evaluate, check and serve load as --model.")
    add_inference_flags(p, model_default="smollm2-135m", batch_size=False,
                        model_help="the backbone: an alias, a hub id, a .gguf file or a causal LM directory")
    p.add_argument("--output", required=True, help="the directory to write (a few hundred bytes: settings and bias)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.set_defaults(func=commands.cmd_zero_shot)


def add_check_command(sub) -> None:
    p = sub.add_parser("check", help="run the behaviour checks (negation, sarcasm, typos...) on a sentiment model",
                       description="CheckList-style behaviour checks for a sentiment classifier: pass rate per check; "
                       "--output saves every failure as JSON.")
    add_inference_flags(p)
    p.add_argument("--output", help="write the results (pass rates and failures) to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--negative-label", default=None,
                   help="the model's negative label, when its names are not neg/negative/bad and pos/positive/good")
    p.add_argument("--positive-label", default=None, help="the model's positive label (with --negative-label)")
    p.add_argument("--threshold", type=probability, default=None, help="override the model's saved threshold")
    p.set_defaults(func=commands.cmd_check)


def add_demo_command(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline offline on a bundled sample, in minutes on a CPU")
    p.add_argument("--output", default="runs/demo", help="where the demo model and report go")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.set_defaults(func=commands.cmd_demo)


def add_serve_command(sub) -> None:
    from llmclf.serve import ServeArgs  # stdlib only at import; FastAPI is imported when the app is built

    p = sub.add_parser("serve", help="serve a classifier over HTTP, with a web page to try it",
                       description="Serve a classifier over HTTP: POST /classify (vLLM's API), POST /v1/predict, "
                       "GET /health, GET /v1/model, the page at /, API docs at /docs.")
    add_inference_flags(p, batch_size=False)  # serve batches by --max-batch-size
    for f in fields(ServeArgs):
        python_type = {int: int, int | None: int, float: float}.get(f.type, str)
        p.add_argument(flag(f.name), type=python_type, default=f.default, help=f.metadata["help"],
                       metavar=f.name.upper())
    p.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    p.add_argument("--min-confidence", type=float, default=None,
                   help="flag predictions whose top probability is below this with needs_review (multi-label "
                   "models: some label's max(p, 1-p) below it)")
    p.set_defaults(func=commands.cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="llmclf", description="Decoder LLMs as text classifiers: train, evaluate, predict.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_command(sub)
    add_evaluate_command(sub)
    add_predict_command(sub)
    add_zero_shot_command(sub)
    add_check_command(sub)
    add_demo_command(sub)
    add_serve_command(sub)
    return parser


def quiet_libraries() -> None:
    """Keep the terminal for progress bars and our own lines; library warnings go unless asked for."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not os.environ.get("LLMCLF_VERBOSE"):
        import warnings

        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported


def main(argv: list[str] | None = None) -> int:
    try:
        ns = build_parser().parse_args(argv)
        quiet_libraries()
        return ns.func(ns)
    except UserError as exc:
        print(f"llmclf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmclf: interrupted (train and predict --input runs continue with --resume)", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
            print("llmclf: error: out of GPU memory; pass a smaller --batch-size (--eval-batch-size when scoring) or --max-length.", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
