"""What each `llmclf` subcommand does with its parsed flags: one cmd_* function per subcommand (cli.py builds
the parser and maps each subcommand here). Heavy imports stay inside the functions, so `--help` and a flag typo
answer at once."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from llmclf.config import TrainArgs
from llmclf.errors import UserError


def leave_process_group() -> None:
    """Under torchrun, destroy this rank's process group before the interpreter exits. Left to interpreter
    shutdown, gloo's worker threads can outlive it and abort the rank ("terminate called without an active
    exception", SIGABRT), failing a run that had finished: 8 of 20 bare gloo runs did, 0 of 20 with this."""
    if "torch" not in sys.modules:  # failed before training began: no process group, and no torch import to wait on
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cmd_train(ns: argparse.Namespace) -> int:
    from llmclf.artifacts import read_metrics
    from llmclf.config import resolve_train_args
    from llmclf.metrics import summary_line
    from llmclf.train import train

    overrides = {f.name: getattr(ns, f.name) for f in fields(TrainArgs)}
    if ns.bf16 is not None:
        print(f"llmclf: note: --{'' if ns.bf16 else 'no-'}bf16 is deprecated; use --precision "
              f"{'bf16' if ns.bf16 else 'fp32'}.", file=sys.stderr)
    recipe = ns.recipe if ns.recipe or ns.config else "default"
    args = resolve_train_args(recipe=recipe, config=ns.config, overrides=overrides)
    try:
        output = train(args, overwrite=ns.overwrite, resume=ns.resume)
    finally:
        leave_process_group()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    results = read_metrics(output)
    print(f"validation: {summary_line(results['validation'])}")
    if "test" in results:
        print(f"test:       {summary_line(results['test'])}")
    print(f"model, metrics, plots and model card in {output}/")
    return 0


def cmd_evaluate(ns: argparse.Namespace) -> int:
    from llmclf.evaluate import evaluate
    from llmclf.metrics import summary_line

    metrics = evaluate(ns.model, ns.data, ns.output, text_column=ns.text_column, label_column=ns.label_column,
                       overwrite=ns.overwrite, options=classifier_options(ns), label_columns=ns.label_columns)
    print(summary_line(metrics))
    if ns.output:
        print(f"metrics.json, plots, errors.jsonl and report.html in {ns.output}/")
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    from llmclf.predict import Classifier
    from llmclf.scoring import score_file

    if ns.input and ns.texts:
        raise UserError("give texts as arguments or --input FILE, not both.")
    if bool(ns.input) != bool(ns.output):
        raise UserError("--input and --output go together: --input FILE --output FILE.")
    texts = ns.texts
    if texts == ["-"]:
        try:
            texts = [line.rstrip("\n") for line in sys.stdin.buffer.read().decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise UserError(f"stdin is not valid UTF-8 (byte {exc.start}); send UTF-8 text.") from None
    if not texts and not ns.input:
        raise UserError("no texts to classify; pass them as arguments, - to read one per line from stdin, "
                        "or --input FILE --output FILE.")
    if ns.engine == "ray":
        from llmclf.scale import predict_ray

        if not ns.input:
            raise UserError("--engine ray scores files: pass --input DIR_OR_GLOB --output DIR.")
        rows = predict_ray(ns.model, ns.input, ns.output, text_column=ns.text_column, num_workers=ns.num_workers,
                           address=ns.ray_address, overwrite=ns.overwrite, threshold=ns.threshold,
                           min_confidence=ns.min_confidence, **classifier_options(ns))
        print(f"scored {rows} rows into {ns.output}/", file=sys.stderr)
        return 0
    classifier = Classifier.from_pretrained(ns.model, threshold=ns.threshold, min_confidence=ns.min_confidence,
                                            quantize=ns.quantize, **classifier_options(ns))
    if ns.input:
        rows = score_file(classifier, ns.input, ns.output, text_column=ns.text_column, overwrite=ns.overwrite,
                          resume=ns.resume, chunk_rows=ns.chunk_rows)
        print(f"scored {rows} rows into {ns.output}", file=sys.stderr)
        return 0
    for text, record in zip(texts, classifier.classify(texts)):
        print(f"{answer_line(record, ns.min_confidence is not None)}\t{text}")
    return 0


def cmd_zero_shot(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from llmclf.predict import Classifier
    from llmclf.zeroshot import is_classifier, save_zero_shot, saved_zero_shot

    if not ns.labels:
        raise UserError("--labels: give the label names separated by commas, e.g. --labels negative,positive.")
    if saved_zero_shot(ns.model) is not None or is_classifier(ns.model):
        raise UserError(f"--model {ns.model} is a classifier already; give a backbone (an alias such as "
                        "smollm2-135m, a hub id, a .gguf file or a causal LM directory).")
    if Path(ns.output).expanduser().exists() and not ns.overwrite:  # before the backbone loads
        raise UserError(f"--output {ns.output} exists; pass --overwrite to replace it, or choose another --output.")
    classifier = Classifier.from_pretrained(ns.model, **classifier_options(ns))
    output = save_zero_shot(classifier, ns.output, overwrite=ns.overwrite)
    bias = ", ".join(f"{name} {value:+.3f}" for name, value in zip(classifier.labels, classifier.label_bias))
    print(f"saved a zero-shot classifier over {ns.model} to {output} (contextual calibration bias: {bias})\n"
          f"use it: llmclf predict --model {output} \"some text\"", file=sys.stderr)
    return 0


def answer_line(record: dict, with_review: bool) -> str:
    """The tab-separated answer printed before a text: label and score (single-label); the chosen labels,
    comma-separated and empty when none, and the top probability (multi-label); value [low high] (regression)."""
    if "value" in record:
        bounds = [record[k] for k in ("value_low", "value_high") if k in record]
        return "\t".join(f"{v:.4f}" for v in [record["value"], *bounds])
    answer = ",".join(record["labels"]) if "labels" in record else record["label"]
    review = ("\tneeds_review" if record["needs_review"] else "\tok") if with_review else ""
    return f"{answer}\t{record['score']:.4f}{review}"


def cmd_check(ns: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from llmclf.artifacts import write_text
    from llmclf.behaviour import run_checks
    from llmclf.predict import Classifier

    if ns.output and Path(ns.output).exists() and not ns.overwrite:
        raise UserError(f"--output {ns.output} exists; pass --overwrite to replace it, or choose another --output.")
    classifier = Classifier.from_pretrained(ns.model, threshold=ns.threshold, **classifier_options(ns))
    if classifier.problem_type != "single_label_classification":
        raise UserError(f"llmclf check runs sentiment checks on single-label classifiers; --model {ns.model} is "
                        f"{classifier.problem_type}: test it with `llmclf evaluate` instead.")
    report = run_checks(classifier, negative=ns.negative_label, positive=ns.positive_label)
    for check in report["checks"] + [{"name": "all", "kind": "", **report}]:
        print(f"{check['name']:<18} {check['kind']:<4} {check['passed']:>3}/{check['n']:<3} {check['pass_rate']:7.1%}")
    if ns.output:
        write_text(Path(ns.output), json.dumps(report, indent=2))
        print(f"cases and failures in {ns.output}", file=sys.stderr)
    return 0


def cmd_demo(ns: argparse.Namespace) -> int:
    from llmclf.demo import run_demo

    run_demo(ns.output, overwrite=ns.overwrite)
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from llmclf.serve import ServeArgs, run_server

    args = ServeArgs(**{f.name: getattr(ns, f.name) for f in fields(ServeArgs)})
    run_server(ns.model, args, threshold=ns.threshold, min_confidence=ns.min_confidence, **classifier_options(ns))
    return 0


def classifier_options(ns: argparse.Namespace) -> dict:
    """Classifier.from_pretrained keyword arguments from add_inference_flags' flags."""
    options = {"device": ns.device, "truncation": ns.truncation, "precision": ns.precision,
               "trust_remote_code": ns.trust_remote_code, "allow_pickle": ns.allow_pickle}
    if getattr(ns, "eval_batch_size", None):
        options["batch_size"] = ns.eval_batch_size
    if ns.max_length:  # else the model's own, read from its run config
        options["max_length"] = ns.max_length
    for name in ("labels", "label_words", "prompt_template"):  # zero-shot settings, passed only when given
        if getattr(ns, name, None) is not None:
            options[name] = getattr(ns, name)
    if "label_words" in options and "labels" not in options:
        raise UserError("--label-words names the words of --labels (zero-shot); pass --labels too.")
    return options
