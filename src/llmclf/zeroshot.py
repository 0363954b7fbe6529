"""Label-word heads and zero-shot classification.

    llmclf predict --model smollm2-135m --labels negative,positive "A dull, lifeless film."
    llmclf zero-shot --model smollm2-135m --labels negative,positive --output models/sentiment-zs
    llmclf train --data reviews.csv --prompt-template chat --head-init label-words --output runs/reviews

A label-word head starts each row of the classification head as the backbone's output-embedding row of its
label's word (a word of several tokens takes the mean of its rows). A decoder's `*ForSequenceClassification`
head reads the same final hidden state as its language-model head, so with a prompt template the untrained
classifier's logits *are* the language model's next-token logits restricted to the label words: it ranks the
labels as the language model ranks those words. Training then starts from there instead of from noise.

Which token a word is. The word is encoded as it would follow the template: with a leading space (" positive",
one token in SmolLM2's vocabulary) unless the template ends in whitespace, as `chat` does (the assistant's turn
starts on a fresh line, so "positive" without a space).

Zero-shot. Without training, a language model prefers some label words whatever the text (a word's prior
frequency, the template's pull). Contextual calibration (Zhao et al. 2021, "Calibrate Before Use") measures
that pull on content-free inputs ("N/A", "", "[MASK]") through the same template and removes it: with p_cf the
mean probabilities on those inputs, each label's logit gets the bias -log p_cf (centred), which `Classifier`
adds before temperature and threshold (saved as `label_bias` in the model config's "llmclf" record).

Saved. `llmclf zero-shot --output DIR` (save_zero_shot) writes the classifier's recipe and its measured bias, a
few hundred bytes; `--model DIR` then loads it in predict, evaluate, check and serve as a trained model loads.
"""

from __future__ import annotations

import json

import numpy as np

from llmclf.errors import UserError
from llmclf.metrics import softmax

CONTENT_FREE = ("N/A", "", "[MASK]")


def parse_labels(labels, what: str = "--labels") -> list[str]:
    """A comma-separated string or a list -> label names; an empty list or a repeated name is a UserError.

    >>> parse_labels("negative, positive")
    ['negative', 'positive']
    """
    names = [part.strip() for part in labels.split(",")] if isinstance(labels, str) else [str(x).strip() for x in labels]
    names = [n for n in names if n]
    if not names:
        raise UserError(f"{what}: empty label list; give the label names separated by commas, e.g. "
                        f"{what} negative,positive.")
    if len(set(names)) != len(names):
        raise UserError(f"{what} {','.join(names)}: a label is repeated; give each label once.")
    return names


def is_classifier(path: str) -> bool:
    """Whether `path` is a trained classifier (a shipped model, a LoRA adapter, a *ForSequenceClassification
    directory) rather than a backbone to build a zero-shot classifier from."""
    from llmclf.artifacts import SHIPPED_MODELS, model_dir

    if path in SHIPPED_MODELS:
        return True
    directory = model_dir(path)
    if (directory / "adapter_config.json").is_file():
        return True
    config = directory / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return True  # let the loader report the broken file
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def check_labels(path: str, have: list[str], labels, run: dict, prompt_template: str | None,
                 zero_shot: bool = False) -> None:
    """A fine-tuned classifier (or a saved zero-shot one) keeps its own labels and template: asking for others
    is a UserError. `have`: its labels, in id order."""
    what, made = ("a saved zero-shot classifier", "saved") if zero_shot else ("a fine-tuned classifier", "trained")
    if labels is not None:
        wanted = parse_labels(labels)
        if wanted != list(have):
            raise UserError(f"--labels {','.join(wanted)}: {path} is {what} with labels "
                            f"{','.join(have)}; drop --labels, or pass a backbone (e.g. --model smollm2-135m) "
                            "for zero-shot labels.")
    if prompt_template is not None and prompt_template != run.get("prompt_template"):
        raise UserError(f"--prompt-template: {path} was {made} with prompt template "
                        f"{run.get('prompt_template')!r}, which it always uses; drop --prompt-template.")


def word_ids(tokenizer, words: list[str], tail: str) -> list[list[int]]:
    """The token ids of each label word as it follows a template ending in `tail` (see the module docstring)."""
    space = "" if not tail or tail[-1].isspace() else " "
    unknown = getattr(tokenizer, "unk_token_id", None)
    out = []
    for word in words:
        ids = list(tokenizer(space + word.strip(), add_special_tokens=False)["input_ids"]) if word.strip() else []
        if not ids or (unknown is not None and unknown in ids):
            raise UserError(f"--label-words: the tokenizer cannot encode {word!r} (it gives "
                            f"{'no tokens' if not ids else 'its unknown token'}); give another word for that label.")
        out.append(ids)
    return out


def output_embedding(model, backbone: str | None = None, trust_remote_code: bool = False):
    """The language-model head's weight (vocab, hidden) of `model`'s backbone. Tied embeddings (SmolLM2,
    Llama 3.2) are the input embeddings; an untied head is read from the causal LM checkpoint."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "tie_word_embeddings", False) or backbone in (None, "tiny-random-llama"):
        return base.get_input_embeddings().weight  # tiny-random-llama has no language-model head: its own rows
    from transformers import AutoModelForCausalLM

    from llmclf.models import resolve_backbone

    lm = AutoModelForCausalLM.from_pretrained(resolve_backbone(backbone), dtype=torch.float32,
                                              trust_remote_code=trust_remote_code, use_safetensors=True)
    return lm.get_output_embeddings().weight


def init_label_word_head(model, tokenizer, words: list[str], tail: str, backbone: str | None = None,
                         trust_remote_code: bool = False) -> list[list[int]]:
    """Set each head row to the output-embedding row of its label word (mean over a word's tokens), in place,
    before LoRA is added. Returns the token ids of each word."""
    import torch

    from llmclf.heads import head_module

    ids = word_ids(tokenizer, words, tail)
    try:
        head = head_module(model)
    except ValueError:
        head = None
    if not isinstance(head, torch.nn.Linear) or head.out_features != len(words):
        raise UserError("--head-init label-words needs a backbone whose classification head is one linear layer "
                        "(Llama, SmolLM2, Qwen...); use --head-init random.")
    rows = output_embedding(model, backbone, trust_remote_code)
    with torch.no_grad():
        head.weight.copy_(torch.stack([rows[i].float().mean(dim=0) for i in ids]).to(head.weight.dtype))
        if head.bias is not None:
            head.bias.zero_()
    return ids


def contextual_bias(classifier, inputs=CONTENT_FREE) -> np.ndarray:
    """-log of the mean label probabilities on content-free inputs, centred: the per-label logit bias that
    makes those inputs come out uniform (Zhao et al. 2021)."""
    saved, classifier.label_bias = classifier.label_bias, None
    try:
        logits, _ = classifier.window_logits(list(inputs))
    finally:
        classifier.label_bias = saved
    bias = -np.log(softmax(logits.astype(np.float64)).mean(axis=0))
    return (bias - bias.mean()).astype(np.float32)


def zero_shot_classifier(cls, backbone: str, labels, label_words=None, trust_remote_code: bool = False,
                         allow_pickle: bool = False, calibrate: bool = True, **options):
    """An untrained classifier over `backbone` (alias, hub id, .gguf, directory of a causal LM) ranking
    `labels` as the language model ranks their words after the prompt template; `options` go to `cls`.

    >>> clf = Classifier.from_pretrained("smollm2-135m", labels=["negative", "positive"])   # doctest: +SKIP
    >>> clf.predict("A dull, lifeless film.")                                               # doctest: +SKIP
    'negative'
    """
    import torch

    from llmclf.models import load_backbone, quiet_progress
    from llmclf.prompts import CHAT, PromptEncoding, check_template, plain_question

    names = parse_labels(labels)
    words = parse_labels(label_words, "--label-words") if label_words is not None else names
    if len(words) != len(names):
        raise UserError(f"--label-words: {len(words)} word(s) for {len(names)} labels; give one word per label, "
                        "in the order of --labels.")
    template = options.pop("prompt_template", None)
    check_template(template)
    id2label = dict(enumerate(names))
    with quiet_progress():
        model, tokenizer = load_backbone(backbone, id2label, trust_remote_code=trust_remote_code,
                                         allow_pickle=allow_pickle)
    if template is None:
        template = CHAT if getattr(tokenizer, "chat_template", None) else plain_question(names)
    prompt = PromptEncoding.build(tokenizer, template, names)
    init_label_word_head(model, tokenizer, words, prompt.tail, backbone, trust_remote_code)
    options.setdefault("max_length", 512)
    classifier = cls(model, tokenizer, prompt_template=template, **options)
    if classifier.bf16:
        classifier.model.to(torch.bfloat16)
    if calibrate:
        classifier.label_bias = contextual_bias(classifier)
        classifier.model.config.llmclf = {**(getattr(classifier.model.config, "llmclf", None) or {}),
                                          "label_bias": classifier.label_bias.tolist()}
    classifier.zero_shot = {"model": backbone_reference(backbone), "label_words": words}
    return classifier


def backbone_reference(backbone: str) -> str:
    """How a saved zero-shot classifier names its backbone: an alias or hub id as given, a local path made
    absolute (so the directory loads from anywhere)."""
    from pathlib import Path

    path = Path(backbone).expanduser()
    return str(path.resolve()) if path.exists() else backbone


# ---------------------------------------------------------------------------------------------------------
# A zero-shot classifier saved as a directory: its recipe and its calibration, not its weights.

ZERO_SHOT_KEY = "zero_shot"  # true in the llmclf_config.yaml of a directory written by save_zero_shot


def save_zero_shot(classifier, output, overwrite: bool = False):
    """Write `classifier` (from zero_shot_classifier) to the directory `output`, which every entry point then
    loads as it loads a trained model (`--model DIR`, `Classifier.from_pretrained(DIR)`): llmclf_config.yaml
    holds the backbone, labels, label words, prompt template, max_length and truncation, calibration.json the
    contextual-calibration bias measured now. No weights: the head is rebuilt from the backbone's rows of the
    label words at load time, exactly, so the directory is a few hundred bytes and loads the backbone by name
    (as a LoRA adapter does). Written in a staging directory and moved into place: nothing half-written."""
    from pathlib import Path

    from llmclf.artifacts import staged, write_calibration, write_run_config

    spec = getattr(classifier, "zero_shot", None)
    if spec is None:
        raise UserError("only a zero-shot classifier is saved this way (a backbone with labels, e.g. --model "
                        "smollm2-135m --labels negative,positive); a trained model's directory already holds it.")
    target = Path(output).expanduser()
    if target.exists() and not overwrite:
        raise UserError(f"--output {output} exists; pass --overwrite to replace it, or choose another --output.")
    settings = {ZERO_SHOT_KEY: True, "model": spec["model"], "label_names": classifier.labels,
                "label_words": spec["label_words"], "prompt_template": classifier.prompt_template,
                "max_length": classifier.max_length, "truncation": classifier.truncation, "head_init": "label-words"}
    with staged(target) as stage:
        write_run_config(stage, settings)
        if classifier.label_bias is not None:
            write_calibration(stage, {"label_bias": [float(x) for x in classifier.label_bias]})
    return target


def saved_zero_shot(path) -> dict | None:
    """The settings of a directory written by save_zero_shot, else None."""
    from llmclf.artifacts import SHIPPED_MODELS, model_dir, read_run_config

    if str(path) in SHIPPED_MODELS or not model_dir(path).is_dir():
        return None
    run = read_run_config(path)
    return run if isinstance(run, dict) and run.get(ZERO_SHOT_KEY) else None


def load_zero_shot(cls, path, run: dict, labels=None, label_words=None, **options):
    """The classifier a save_zero_shot directory describes, with the bias it saved (not measured again)."""
    from llmclf.artifacts import read_calibration

    check_labels(str(path), run["label_names"], labels, run, options.pop("prompt_template", None), zero_shot=True)
    if label_words is not None and parse_labels(label_words, "--label-words") != run["label_words"]:
        raise UserError(f"--label-words: {path} is a saved zero-shot classifier with label words "
                        f"{','.join(run['label_words'])}; drop --label-words.")
    options.setdefault("max_length", run.get("max_length", 512))
    if options.get("truncation") is None:
        options["truncation"] = run.get("truncation")
    bias = read_calibration(path).get("label_bias")
    return zero_shot_classifier(cls, run["model"], run["label_names"], label_words=run["label_words"],
                                prompt_template=run["prompt_template"], calibrate=False, label_bias=bias, **options)


def auto_head_init(args, model, tokenizer, tail: str) -> str:
    """What `--head-init auto` means for this run. label-words where bench/sample_efficiency.py measured it ahead
    of a random head (single-label IMDb and AG News, 0-512 examples, with and without a template); random for
    multi-label and regression (a sigmoid or a value read from a language model's large word logits starts
    saturated), for integer labels, for words the tokenizer cannot encode, and for backbones with untied
    output embeddings (their rows would mean loading the causal LM a second time)."""
    if getattr(args, "problem_type", "single-label") not in ("single-label", "auto") or args.label_words is not None:
        return "label-words" if args.label_words is not None else "random"
    if all(name.lstrip("-").isdigit() for name in args.label_names):
        return "random"
    import torch

    from llmclf.heads import head_module

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (getattr(base.config, "tie_word_embeddings", False) or args.model == "tiny-random-llama"):
        return "random"
    try:
        head = head_module(model)
        word_ids(tokenizer, args.label_names, tail)
    except (UserError, ValueError):
        return "random"
    return "label-words" if isinstance(head, torch.nn.Linear) else "random"


def prepare_head(args, model, tokenizer):
    """For `llmclf train` (args: TrainArgs), before anything is written: the run's prompt encoding (a UserError
    for a template that does not fit this backbone or max_length), and for head_init label-words the head set
    from the label words' output-embedding rows (before LoRA is added)."""
    from llmclf.prompts import PromptEncoding

    prompt = PromptEncoding.build(tokenizer, args.prompt_template, args.label_names)
    prompt.room(args.max_length)
    if args.head_init == "auto":
        args.head_init = auto_head_init(args, model, tokenizer, prompt.tail)
    if args.head_init == "label-words":
        words = args.label_words
        if words is None and all(name.lstrip("-").isdigit() for name in args.label_names):
            raise UserError("--head-init label-words: the labels are integers "
                            f"({', '.join(args.label_names)}), which are no words; pass --label-words (one word "
                            "per label, e.g. negative,positive) or --label-names.")
        words = parse_labels(words if words is not None else args.label_names, "--label-words")
        if len(words) != len(args.label_names):
            raise UserError(f"--label-words: {len(words)} word(s) for {len(args.label_names)} labels "
                            f"({', '.join(args.label_names)}); give one word per label, in that order.")
        init_label_word_head(model, tokenizer, words, prompt.tail, args.model, args.trust_remote_code)
    return prompt
