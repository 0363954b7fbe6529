"""Typed training config: defaults in code, then a recipe or YAML file, then CLI overrides.

One name per setting: the dataclass field is the YAML key, the CLI flag (``--learning-rate``), the log key
and the model-card entry. Unknown keys are errors that name the key.

>>> args = resolve_train_args(recipe="seed", overrides={"epochs": 1})
>>> args.learning_rate, args.epochs, args.warmup_ratio
(3e-05, 1.0, 0.4)
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llmclf.errors import UserError
from llmclf.precision import PRECISION_CHOICES
from llmclf.problem_types import check_problem_options, parse_class_weights
from llmclf.windows import TRUNCATION_CHOICES

PADDING_CHOICES = ("longest", "max_length")
REPORT_TO_CHOICES = ("none", "tensorboard", "mlflow")
# Kept here, where settings are checked, so `llmclf --help` does not import numpy and scikit-learn with them;
# llmclf.calibration and llmclf.zeroshot use the same tuples.
THRESHOLD_OBJECTIVES = ("accuracy", "f1", "precision", "recall")
HEAD_INIT_CHOICES = ("auto", "random", "label-words")
BEST_METRIC_CHOICES = ("accuracy", "f1_macro", "f1_weighted", "roc_auc", "loss",  # single-label
                       "f1_micro", "subset_accuracy", "hamming_loss",  # multi-label (also f1_macro, f1_weighted, roc_auc)
                       "mae", "rmse", "r2", "pearson", "spearman")  # regression
# --best-metric values where a smaller number is better (Trainer's greater_is_better=False).
LOWER_IS_BETTER = ("loss", "hamming_loss", "mae", "rmse")
PROBLEM_TYPE_CHOICES = ("auto", "single-label", "multi-label", "regression")
LOSS_CHOICES = ("mse", "huber")


@dataclass
class TrainArgs:
    # --- data ---
    data: str | None = None
    """Training data: a file (CSV, TSV, JSONL, Parquet), an aclImdb-style folder, or a hub dataset `name[:split]`."""
    validation_data: str | None = None
    """Validation data; without it `validation_fraction` of the training data is held out."""
    test_data: str | None = None
    """Optional test data, evaluated once at the end."""
    text_column: str = "text"
    """Column holding the text."""
    label_column: str = "label"
    """Column holding the label (integers or strings)."""
    label_names: list[str] | None = None
    """Names for integer labels 0..K-1, in order (e.g. neg,pos); saved runs record the names used."""
    problem_type: str = "auto"
    """`single-label`, `multi-label` (a list of labels per text), `regression` (a number per text), or `auto`:
    multi-label for a column of lists (or of CSV cells such as "anger,disgust" / "[anger, disgust]", or with
    label_columns), regression for numbers that are not all integers, else single-label. Saved runs record the
    type found."""
    label_columns: list[str] | None = None
    """Multi-label from one 0/1 column per label (e.g. anger,joy,fear): the column names are the label names."""
    label_separator: str = ","
    """Multi-label: the separator between labels in a text cell (CSV), e.g. "anger,disgust"."""
    allow_empty_labels: bool = False
    """Multi-label: accept texts with an empty list of labels (none applies); refused otherwise, as a likely
    mistake."""
    validation_fraction: float = 0.2
    """Share of the training data held out for validation when no validation data is given (the card's 80/20)."""
    max_train_samples: int | None = None
    """Use only the first N training examples after the split (for quick runs)."""
    max_eval_samples: int | None = None
    """Use only the first N validation examples (for quick runs)."""
    # --- model ---
    model: str = "smollm2-135m"
    """Backbone: an alias, a hub id, a local Hugging Face directory or a .gguf file."""
    max_length: int = 512
    """Texts are truncated to this many tokens (the prompt template's included)."""
    truncation: str = "chunks"
    """How the model runs on texts longer than max_length, saved with it: `chunks` (overlapping windows,
    probabilities averaged), `head` or `head_tail`. metrics.json is computed that way; training reads one window
    per text (head_tail for head_tail, else the head)."""
    prompt_template: str | None = None
    """Words around each text, e.g. "Review: {text}\nSentiment:" ({text} once; {{ }} for literal braces), or
    `chat` (a question naming the labels in the backbone's chat template). Saved with the model; truncation cuts
    the text, never the template."""
    head_init: str = "auto"
    """`label-words`: each head row starts as the backbone's output-embedding row of its label's word, so the
    untrained classifier ranks labels as the language model ranks those words (best with a template); `random`;
    `auto` (the default): label-words for single-label runs whose labels are words the tokenizer encodes, on a
    backbone with tied embeddings, else random. The run config records the one used."""
    label_words: list[str] | None = None
    """For a label-word head: one word per label, in label order (default: the label names)."""
    padding: str = "longest"
    """`longest` pads each batch to its longest text; `max_length` pads every text to max_length (the card)."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub checkpoint (never implied: only for code you trust)."""
    allow_pickle: bool = False
    """Load pickle (.bin) weights when a checkpoint has no safetensors (pickle can run code: trusted files only)."""
    pad_to_multiple_of: int | None = 64
    """With padding=longest, round each batch's length up to a multiple of this: a handful of distinct shapes
    instead of one per batch (GPU kernels are chosen per shape); None pads to the exact longest text."""
    packing: bool = False
    """Pack each training batch's texts end to end into rows of at most max_length tokens (no padding inside a
    row), each text pooled at its own last token: compute follows the real tokens. Same logits and loss as
    padded batches (tested); see llmclf/packing.py."""
    torch_compile: bool = False
    """Compile the model with torch.compile (inductor) for training and its evaluation: it fuses the elementwise
    work between matmuls, after minutes of compiling, so it pays off on long runs only. With the shipped recipe
    on 2-core CPUs (bench/train_cpu.py, dynamic shapes): 1.63x with AMX after 229 s of compiling (a whole 150-step
    run: 790 s against 853 s eager, bench/recipe_runs.py), 1.27x in float32 on an AVX2-only CPU after 570 s; but
    0.85x on an AVX512-BF16 CPU without AMX (padded to max_length, at 256 tokens). Off by default."""
    group_by_length: bool = False
    """Draw training batches from texts of similar length (less padding; order is still shuffled by seed)."""
    lora: bool = False
    """Train LoRA adapters (and the classification head) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path."""
    lora_layers: int | None = None
    """Put LoRA only on the top N decoder layers (None: every layer). Backpropagation then stops at the lowest
    adapted layer, so a step costs about a forward pass plus N/L of a backward pass."""
    save_adapter: bool = False
    """For a LoRA run, save the adapter and head alone instead of a merged model."""
    # --- optimisation ---
    epochs: float = 1.0
    """Passes over the training data."""
    batch_size: int = 8
    """Training examples per step (per device)."""
    eval_batch_size: int = 16
    """Examples per evaluation step."""
    gradient_accumulation_steps: int = 1
    """Steps whose gradients are summed before an optimizer update."""
    learning_rate: float = 5e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of the optimizer steps spent warming the learning rate up linearly."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warm-up (a transformers scheduler name)."""
    precision: str = "auto"
    """Training precision: `bf16` (mixed precision; a LoRA run also keeps the frozen backbone in bfloat16),
    `fp32`, or `auto`: bf16 on CUDA and on CPUs with native bfloat16 matrix units (AMX / AVX512-BF16), where it
    is 2-4x faster than float32, unless the environment sets LLMCLF_PRECISION; the same choice as inference's
    --precision (llmclf/precision.py)."""
    bf16: bool | None = None
    """Deprecated: use precision (`--bf16` is `--precision bf16`, `--no-bf16` is `--precision fp32`)."""
    class_weights: str | None = None
    """Weighted cross-entropy for imbalanced classes: `none` (None, unweighted), `balanced` (n_samples /
    (num_labels * count of the class) on the training part, as scikit-learn's compute_class_weight), or one
    weight per label in label-id order, e.g. `1,9` (each >= 0, at least one > 0). The resolved weights are in
    metrics.json's training block and the card."""
    loss: str | None = None
    """Regression: `mse` (the default) or `huber` (less swayed by outlying targets; on standardised targets,
    delta 1)."""
    interval: float | None = None
    """Regression: split-conformal prediction intervals at this coverage level, e.g. 0.9: the half-width is
    fitted on validation residuals and saved with the model."""
    seed: int = 42
    """Seed for the split, the head's initialisation and data order."""
    # --- selection and logging ---
    best_metric: str | None = None
    """Keep the epoch with the best value of this validation metric; None keeps the last epoch (the card)."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of best_metric (requires best_metric)."""
    report_to: str = "none"
    """Also log to `tensorboard` or `mlflow`."""
    fsdp: bool = False
    """Shard weights, gradients and optimizer state across processes (FSDP) when launched with torchrun or
    accelerate launch, for models that do not fit one device; without it, several processes run DDP."""
    save_steps: int | None = None
    """Also checkpoint every N optimizer steps (None: at each epoch's end only), so a killed long run resumes
    with --resume losing at most N steps; validation still runs per epoch (unless --no-eval-each-epoch)."""
    save_minutes: float | None = None
    """Also checkpoint once this many minutes of training have passed since the last checkpoint (or the start),
    so a killed run resumes losing at most that much work whatever the machine's speed: a fixed save_steps is
    7 minutes of the shipped recipe on one 2-core CPU and 12 on another. With save_steps, whichever comes first."""
    eval_each_epoch: bool = True
    """Score the validation split after each epoch (the card's training history, the loss and accuracy curves).
    Off, only the finishing step scores it, as `predict` runs the model (metrics.json, the card, the plots but
    the accuracy curve): for one-epoch runs that evaluation repeats that scoring (25 minutes of the shipped
    model's run on 2 cores). The training loss is still logged per epoch."""
    keep_checkpoints: bool = False
    """Keep the per-epoch checkpoints in the output directory after a successful run."""
    # --- calibration and decisions ---
    threshold_objective: str = "accuracy"
    """Binary models: tune the decision threshold on validation data for `accuracy`, `f1` (of the second label),
    `precision` (reach target_precision with the most recall) or `recall` (reach target_recall with the most
    precision)."""
    target_precision: float | None = None
    """With threshold_objective `precision`: the precision of the second label to reach, in (0, 1]."""
    target_recall: float | None = None
    """With threshold_objective `recall`: the recall of the second label to reach, in (0, 1]."""
    output: str = "runs/llmclf-model"
    """Output directory."""

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "lora_r"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{flag(name)} must be an integer of at least 1, got {value!r}.")
        for name in ("max_train_samples", "max_eval_samples", "early_stopping_patience", "pad_to_multiple_of",
                     "lora_layers", "save_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{flag(name)} must be an integer of at least 1, got {value!r}.")
        if not self.epochs > 0:
            raise UserError(f"--epochs must be above 0, got {self.epochs!r}.")
        if not self.learning_rate > 0:
            raise UserError(f"--learning-rate must be above 0, got {self.learning_rate!r}.")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio!r}.")
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"--validation-fraction must be in (0, 1), got {self.validation_fraction!r}.")
        self._fold_deprecated_bf16()
        if self.precision not in PRECISION_CHOICES:
            raise UserError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}.")
        if self.padding not in PADDING_CHOICES:
            raise UserError(f"--padding must be one of {', '.join(PADDING_CHOICES)}, got {self.padding!r}.")
        if self.report_to not in REPORT_TO_CHOICES:
            raise UserError(f"--report-to must be one of {', '.join(REPORT_TO_CHOICES)}, got {self.report_to!r}.")
        if self.best_metric is not None and self.best_metric not in BEST_METRIC_CHOICES:
            raise UserError(
                f"--best-metric must be one of {', '.join(BEST_METRIC_CHOICES)}, got {self.best_metric!r}."
            )
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise UserError(f"--threshold-objective must be one of {', '.join(THRESHOLD_OBJECTIVES)}, got "
                            f"{self.threshold_objective!r}.")
        if self.target_precision is not None and not 0 < self.target_precision <= 1:
            raise UserError(f"--target-precision must be in (0, 1], got {self.target_precision!r}.")
        if (self.threshold_objective == "precision") != (self.target_precision is not None):
            raise UserError("--threshold-objective precision and --target-precision go together; pass both "
                            "(e.g. --threshold-objective precision --target-precision 0.95), or neither.")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise UserError(f"--target-recall must be in (0, 1], got {self.target_recall!r}.")
        if (self.threshold_objective == "recall") != (self.target_recall is not None):
            raise UserError("--threshold-objective recall and --target-recall go together; pass both "
                            "(e.g. --threshold-objective recall --target-recall 0.9), or neither.")
        parse_class_weights(self.class_weights)
        self._check_problem_type()
        if self.truncation not in TRUNCATION_CHOICES:
            raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {self.truncation!r}.")
        if self.head_init not in HEAD_INIT_CHOICES:
            raise UserError(f"--head-init must be one of {', '.join(HEAD_INIT_CHOICES)}, got {self.head_init!r}.")
        from llmclf.prompts import check_template

        check_template(self.prompt_template)
        if self.label_words is not None and self.head_init == "random":
            raise UserError("--label-words sets the words of a label-word head, but --head-init is random; drop "
                            "one of them.")
        if self.save_steps is not None and self.best_metric is not None:
            raise UserError("--save-steps checkpoints mid-epoch while --best-metric compares epochs; pass one of them.")
        if self.save_minutes is not None and not self.save_minutes > 0:
            raise UserError(f"--save-minutes must be above 0, got {self.save_minutes!r}.")
        if self.save_minutes is not None and self.best_metric is not None:
            raise UserError("--save-minutes checkpoints mid-epoch while --best-metric compares epochs; pass one of "
                            "them.")
        if self.torch_compile and self.packing:
            raise UserError("--torch-compile and --packing: packed batches pool through a hook per batch, which the "
                            "compiled graph would not see; drop one of them.")
        if self.best_metric is not None and not self.eval_each_epoch:
            raise UserError("--best-metric compares per-epoch validation scores, which --no-eval-each-epoch skips; "
                            "drop one of them.")
        if self.early_stopping_patience is not None and self.best_metric is None:
            raise UserError("--early-stopping-patience needs --best-metric to know what to watch; pass both.")

    def _check_problem_type(self) -> None:
        if self.problem_type not in PROBLEM_TYPE_CHOICES:
            raise UserError(f"--problem-type must be one of {', '.join(PROBLEM_TYPE_CHOICES)}, got "
                            f"{self.problem_type!r}.")
        if self.loss is not None and self.loss not in LOSS_CHOICES:
            raise UserError(f"--loss must be one of {', '.join(LOSS_CHOICES)}, got {self.loss!r}.")
        if self.interval is not None and not 0 < self.interval < 1:
            raise UserError(f"--interval must be in (0, 1), e.g. 0.9, got {self.interval!r}.")
        if not self.label_separator:
            raise UserError("--label-separator must not be empty; pass e.g. --label-separator ';'.")
        if self.label_columns is not None and self.problem_type in ("single-label", "regression"):
            raise UserError(f"--label-columns gives multi-label data, but --problem-type is {self.problem_type}; "
                            "drop one of them.")
        check_problem_options(self, self.problem_type)

    def _fold_deprecated_bf16(self) -> None:
        """The old `bf16` setting (saved configs and recipes still carry it) becomes `precision`, so one name
        is saved and read; a bf16 that contradicts an explicit precision is an error."""
        if self.bf16 is None:
            return
        wanted = "bf16" if self.bf16 else "fp32"
        if self.precision not in ("auto", wanted):
            raise UserError(f"--bf16/--no-bf16 (deprecated) contradicts --precision {self.precision}; pass "
                            "--precision alone.")
        warnings.warn("the bf16 setting is deprecated; use precision (bf16, fp32 or auto)", DeprecationWarning,
                      stacklevel=3)
        self.precision, self.bf16 = wanted, None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flag(name: str) -> str:
    """The CLI flag of a config field: ``flag("max_length") == "--max-length"``."""
    return "--" + name.replace("_", "-")


def field_docs() -> dict[str, str]:
    """Field name -> the docstring under it in TrainArgs (shown as the CLI help)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainArgs))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = after.value.value
    return docs


def recipe_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("llmclf.configs").iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    path = resources.files("llmclf.configs") / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"--recipe {name}: no such recipe; known recipes: {', '.join(recipe_names())}.")
    return Path(str(path))


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: file not found; pass the path of a YAML config file.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file.") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected a mapping of settings at the top level; fix the file.")
    known = {f.name for f in fields(TrainArgs)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}.")
    return values


def resolve_train_args(
    recipe: str | None = None, config: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainArgs:
    """Defaults, then `recipe` (a name in configs/) or `config` (a YAML file), then `overrides`."""
    if recipe is not None and config is not None:
        raise UserError("--recipe and --config both given; pass one of them.")
    values: dict[str, Any] = {}
    if recipe is not None:
        values.update(read_yaml_config(recipe_path(recipe)))
    if config is not None:
        values.update(read_yaml_config(config))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in fields(TrainArgs)})
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)}; known settings: "
                        f"{', '.join(sorted(f.name for f in fields(TrainArgs)))}.")
    return TrainArgs(**{name: _check_type(name, value) for name, value in values.items()})


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(name: str, value: Any) -> Any:
    """YAML gives ints where floats are meant (``epochs: 10``); strings for numbers are user mistakes."""
    annotation = {f.name: f.type for f in fields(TrainArgs)}[name]
    if value is None:
        if "None" not in annotation:
            raise UserError(f"{flag(name)} needs a value ({annotation}), got none.")
        return None
    if annotation.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation.startswith("float") and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        return float(value)  # PyYAML reads `3e-5` (no dot) as a string; it is what people write
    if annotation.startswith("list"):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise UserError(f"{flag(name)} must be a list of names, got {value!r}.")
        return [str(v) for v in value]
    expected = {"float": float, "int": int, "bool": bool, "str": str}[annotation.split(" ")[0]]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(f"{flag(name)} must be of type {annotation}, got {value!r}.")
    return value
