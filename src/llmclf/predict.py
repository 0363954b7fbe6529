"""The one inference path: a trained classifier that labels texts.

>>> clf = Classifier.from_pretrained("runs/imdb")        # doctest: +SKIP
>>> clf.predict("A quiet, moving film.")                 # doctest: +SKIP
'pos'
>>> clf.predict_proba(["Dull.", "Superb!"]).shape        # doctest: +SKIP
(2, 2)
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from llmclf.errors import UserError
from llmclf.metrics import softmax
from llmclf.models import PRECISION_CHOICES, SHIPPED_MODELS, auto_bf16, load_classifier, read_run_config, shipped_model_dir

TRUNCATION_CHOICES = ("head", "head_tail", "chunks")
# The most accurate mode on IMDb validation reviews at both 256 and 512 tokens (bench/truncation.py, README).
DEFAULT_TRUNCATION = "chunks"
# A token spans at most a few dozen characters, so cutting a huge text to this many characters per token of
# max_length first keeps every token that head/head_tail truncation could keep, without tokenizing megabytes.
CHARS_PER_TOKEN_BOUND = 64


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute goes to padding.

    >>> length_batches([5, 1, 9, 3], 2)
    [[2, 0], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def windows(ids: list[int], max_length: int, truncation: str, prefix: list[int] = (),
            max_chunks: int = 32, suffix: list[int] = ()) -> list[list[int]]:
    """The token windows a text is classified from; `prefix` (special tokens, a prompt template's start) and
    `suffix` (the template's end) are kept whole in each window: only the text's ids are cut.

    `chunks` cuts overlapping windows; past `max_chunks` of them (a text of ~12k tokens at max_length 512),
    `max_chunks` windows spread evenly from start to end stand for the whole, so one huge text cannot stall
    a batch or a server.

    >>> windows(list(range(10)), 4, "head")
    [[0, 1, 2, 3]]
    >>> windows(list(range(10)), 4, "head_tail")
    [[0, 7, 8, 9]]
    >>> windows(list(range(10)), 4, "chunks")
    [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    room = max_length - len(prefix) - len(suffix)
    if room < 1:
        raise UserError(f"--max-length {max_length} leaves no room for text after {len(prefix) + len(suffix)} "
                        "special or prompt-template token(s); raise --max-length or shorten the template.")
    prefix, suffix = list(prefix), list(suffix)
    if len(ids) <= room:
        return [prefix + ids + suffix]
    if truncation == "head":
        return [prefix + ids[:room] + suffix]
    if truncation == "head_tail":  # the start sets the topic, the end often holds the verdict
        head = room // 4
        return [prefix + ids[:head] + ids[len(ids) - (room - head):] + suffix]
    if truncation == "chunks":
        step = max(1, room - room // 4)  # windows overlap by a quarter
        starts = list(range(0, len(ids) - room, step)) + [len(ids) - room]
        if len(starts) > max_chunks:
            starts = [starts[round(i * (len(starts) - 1) / (max_chunks - 1))] for i in range(max_chunks)]
        return [prefix + ids[s : s + room] + suffix for s in starts]
    raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {truncation!r}.")


def quantize_int8(model, device):
    """Dynamic int8 quantization of the linear layers (weights int8, activations quantized per batch); the
    classification head stays in float. Opt-in only: bench/predict_cpu.py measured it 1.8x faster on SmolLM2-135M
    but with accuracy falling from 0.75 to 0.48 (per-tensor activation scales suit its activations badly)."""
    import torch

    if device.type != "cpu":
        raise UserError("--quantize int8 is for CPU inference; on CUDA llmclf runs bf16.")
    head = {name for name, module in model.named_modules() if name.split(".")[-1] in ("score", "classifier")}
    linears = {name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name not in head}
    return torch.ao.quantization.quantize_dynamic(model, linears, dtype=torch.qint8)


class Classifier:
    """A sequence classifier with its tokenizer; texts in, label names or probabilities out."""

    def __init__(self, model, tokenizer, max_length: int = 512, batch_size: int = 16, device: str | None = None,
                 truncation: str | None = DEFAULT_TRUNCATION, temperature: float | None = None, threshold: float | None = None,
                 min_confidence: float | None = None, quantize: str | None = None, precision: str = "auto",
                 prompt_template: str | None = None, label_bias: list[float] | None = None):
        import torch

        from llmclf.prompts import PromptEncoding

        truncation = truncation or DEFAULT_TRUNCATION
        if truncation not in TRUNCATION_CHOICES:
            raise UserError(f"--truncation must be one of {', '.join(TRUNCATION_CHOICES)}, got {truncation!r}.")
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available")
        except RuntimeError as exc:
            raise UserError(f"--device {device}: {exc}; use --device cpu.") from None
        self.model = model.to(self.device).eval()
        if precision not in PRECISION_CHOICES:
            raise UserError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}.")
        if quantize == "int8":
            if precision == "bf16":
                raise UserError("--quantize int8 runs float activations; drop --precision bf16 (or --quantize).")
            self.model = quantize_int8(self.model, self.device)
        elif quantize is not None:
            raise UserError(f"--quantize must be int8 or left out, got {quantize!r}.")
        # bf16 where the hardware has native bf16 matmuls (CUDA, AMX/AVX512-BF16 CPUs): bench/predict_cpu.py
        # measured the accuracy it costs next to the speed it gives.
        self.bf16 = quantize is None and (precision == "bf16" or (precision == "auto" and auto_bf16(self.device.type)))
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.truncation = truncation
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}
        # Calibration saved with the model (config.json "llmclf": {"temperature", "threshold"}) unless overridden.
        saved = getattr(model.config, "llmclf", None) or {}
        self.temperature = float(temperature if temperature is not None else saved.get("temperature", 1.0))
        # Zero-shot models: contextual calibration's per-label logit bias (llmclf.zeroshot), added before T.
        bias = label_bias if label_bias is not None else saved.get("label_bias")
        self.label_bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        self.threshold = threshold if threshold is not None else saved.get("threshold")
        if self.threshold is not None and len(self.id2label) != 2:
            raise UserError("--threshold applies to binary classifiers only; this model has "
                            f"{len(self.id2label)} labels.")
        self.min_confidence = min_confidence
        # Special tokens the tokenizer adds (Llama 3: BOS; SmolLM2: none) and the prompt template's start and
        # end, kept whole in every window (llmclf.prompts).
        self.prompt_template = prompt_template
        self.prompt = PromptEncoding.build(tokenizer, prompt_template, self.labels)
        self.prompt.room(max_length)
        self._prefix = self.prompt.prefix
        self._filler = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]

    @classmethod
    def from_pretrained(cls, path: str, trust_remote_code: bool = False, allow_pickle: bool = False,
                        **kwargs) -> "Classifier":
        """Load a directory written by `llmclf train` (merged model or LoRA adapter), or a shipped model; it
        runs with the max_length, truncation and prompt template it was trained with unless told otherwise.

        With `labels` (and optionally `label_words`, `prompt_template`), `path` may also name a plain causal LM
        (an alias, hub id, .gguf file or directory): a zero-shot classifier, see llmclf.zeroshot."""
        from llmclf.zeroshot import check_labels, is_classifier, zero_shot_classifier

        labels, label_words = kwargs.pop("labels", None), kwargs.pop("label_words", None)
        if labels is not None and not is_classifier(path):
            return zero_shot_classifier(cls, path, labels, label_words=label_words, trust_remote_code=trust_remote_code,
                                        allow_pickle=allow_pickle, **kwargs)
        model, tokenizer = load_classifier(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        run = read_run_config(path)
        check_labels(path, model, labels, run, kwargs.get("prompt_template"))
        kwargs.setdefault("max_length", run.get("max_length", 512))  # as trained
        if kwargs.get("truncation") is None:
            kwargs["truncation"] = run.get("truncation") or DEFAULT_TRUNCATION
        kwargs["prompt_template"] = run.get("prompt_template")
        # A LoRA adapter directory has no config.json of its own: its calibration lies beside it.
        saved = (shipped_model_dir(path) if path in SHIPPED_MODELS else Path(path).expanduser()) / "calibration.json"
        if saved.is_file() and not getattr(model.config, "llmclf", None):
            model.config.llmclf = json.loads(saved.read_text(encoding="utf-8"))
        classifier = cls(model, tokenizer, **kwargs)
        if classifier.bf16:  # weights this loader owns: stored in bf16, half the memory and no per-call casts
            import torch

            classifier.model.to(torch.bfloat16)
        return classifier

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def _encode(self, text: str) -> list[list[int]]:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        if self.truncation != "chunks":
            cut = self.max_length * CHARS_PER_TOKEN_BOUND
            if len(text) > 2 * cut:
                text = text[:cut] + text[-cut:] if self.truncation == "head_tail" else text[:cut]
        ids = self.prompt.text_ids(self.tokenizer, text)
        if not ids and self.prompt_template is None:
            ids = self._filler  # an empty text alone: one token to pool
        return windows(ids, self.max_length, self.truncation, self.prompt.prefix, suffix=self.prompt.suffix)

    def window_logits(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Logits of every window, shape (n_windows, num_labels), and the index of the text each came from."""
        import torch

        encoded, owner = [], []
        for i, text in enumerate(texts):
            for window in self._encode(text):
                encoded.append(window)
                owner.append(i)
        out = np.zeros((len(encoded), len(self.id2label)), dtype=np.float32)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            for batch in length_batches([len(ids) for ids in encoded], self.batch_size):
                padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                padded = {k: v.to(self.device) for k, v in padded.items()}
                out[batch] = self.model(**padded).logits.float().cpu().numpy()
        if self.label_bias is not None:
            out += self.label_bias
        return out, np.asarray(owner, dtype=np.int64)

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """Probabilities in id2label order: shape (n, num_labels), or (num_labels,) for a single string.

        With truncation="chunks", the windows' probabilities are averaged per text.
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        logits, owner = self.window_logits(batch)
        window_probs = softmax(logits / self.temperature)
        probs = np.zeros((len(batch), len(self.id2label)))
        np.add.at(probs, owner, window_probs)
        probs /= np.bincount(owner, minlength=len(batch))[:, None]
        return probs[0] if single else probs

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Label ids from probabilities (n, k): argmax, or for a binary model with a threshold, the second
        label (id 1) exactly when its probability reaches the threshold."""
        if self.threshold is not None:
            return (probs[:, 1] >= self.threshold).astype(np.int64)
        return probs.argmax(axis=1)

    def predict(self, texts: str | list[str]) -> str | list[str]:
        """Label names: one for a single string, a list for a list."""
        single = isinstance(texts, str)
        probs = np.atleast_2d(self.predict_proba(texts))
        labels = [self.id2label[int(i)] for i in self.decide(probs)]
        return labels[0] if single else labels

    def classify(self, texts: list[str]) -> list[dict]:
        """One record per text: label, score (its probability), probs by label name, needs_review.

        `needs_review` is True when the top probability is below min_confidence (the label is kept).
        """
        probs = np.atleast_2d(self.predict_proba(list(texts)))
        records = []
        for row, best in zip(probs, self.decide(probs)):
            score = float(row[best])
            records.append({
                "label": self.id2label[int(best)], "score": score,
                "probs": {self.id2label[i]: float(p) for i, p in enumerate(row)},
                "needs_review": self.min_confidence is not None and float(row.max()) < self.min_confidence,
            })
        return records


TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def table_format(path: Path, what: str) -> str:
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"{what} {path}: unknown format {path.suffix or '(no extension)'!r}; use "
                        f"{', '.join(TABLE_FORMATS)}.")
    return kind


def read_table_chunks(path: Path, chunk_rows: int):
    """Yield pandas frames of at most `chunk_rows` rows: memory stays flat whatever the file size."""
    import pandas as pd

    kind = table_format(path, "--input")
    if kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif kind == "csv":
        # Every column kept as the text it was (ids with leading zeros survive), empty cells as "".
        yield from pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False, encoding="utf-8")
    else:
        yield from pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, encoding="utf-8")


def count_rows(path: Path) -> int | None:
    """Rows in the file when cheap to know (Parquet metadata), for the progress bar's total."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


class TableWriter:
    """Appends scored chunks to a CSV, JSONL or Parquet file."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind, self._parquet, self._started = path, kind, None, False

    def write(self, frame) -> None:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        elif self.kind == "csv":
            frame.to_csv(self.path, mode="a" if self._started else "w", header=not self._started, index=False)
        else:
            with open(self.path, "a" if self._started else "w", encoding="utf-8") as f:
                f.write(frame.to_json(orient="records", lines=True, force_ascii=False))
                if not frame.empty:
                    f.write("\n")
        self._started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def score_frame(classifier: Classifier, frame, text_column: str):
    """The frame with `label`, `score`, one `prob_<label>` column per class (and `needs_review` when the
    classifier has a min_confidence) added."""
    probs = np.atleast_2d(classifier.predict_proba(frame[text_column].tolist()))
    best = classifier.decide(probs)
    frame = frame.copy()
    frame["label"] = [classifier.id2label[int(i)] for i in best]
    frame["score"] = probs[np.arange(len(best)), best]
    for i, name in classifier.id2label.items():
        frame[f"prob_{name}"] = probs[:, i]
    if classifier.min_confidence is not None:
        frame["needs_review"] = probs.max(axis=1) < classifier.min_confidence
    return frame


def score_file(classifier: Classifier, input_path: str, output_path: str, text_column: str = "text",
               overwrite: bool = False, chunk_rows: int = 1024, progress: bool = True, resume: bool = False) -> int:
    """Score every row of a CSV/JSONL/Parquet file into another; returns the number of rows.

    Streams in chunks of `chunk_rows`, each written as its own file in a staging directory beside the output
    (`.NAME.llmclf-partial/`); the output appears, whole, only at the end. A killed run leaves its finished
    chunks there, and `resume=True` continues after them without rescoring.
    """
    import json

    from tqdm import tqdm

    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise UserError(f"--input {source}: file not found; check the path.")
    if source.resolve() == target.resolve():
        raise UserError(f"--output {target} is the --input file; write the scores to another file.")
    if target.exists() and not overwrite:
        raise UserError(f"--output {target} exists; pass --overwrite to replace it, or choose another --output.")
    kind = table_format(target, "--output")
    table_format(source, "--input")
    partial = target.with_name(f".{target.name}.llmclf-partial")
    stat = source.stat()
    manifest = {"input": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "chunk_rows": chunk_rows, "text_column": text_column, "output_format": kind}
    done = _finished_chunks(partial, manifest, resume, overwrite, target)
    created = [d for d in [target.parent, *target.parent.parents] if not d.exists()]  # removed again on failure
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "manifest.json").write_text(json.dumps(manifest))
    reserved = {"label", "score", "needs_review"} | {f"prob_{name}" for name in classifier.id2label.values()}
    # JSON values may change type from row to row; a Parquet column needs one type: keep them as text.
    as_text = kind == "parquet" and table_format(source, "--input") == "jsonl"
    rows, bar = 0, None
    try:
        for index, frame in enumerate(read_table_chunks(source, chunk_rows)):
            if text_column not in frame.columns:
                raise UserError(f"--input {source}: no text column {text_column!r}; columns found: "
                                f"{', '.join(map(str, frame.columns))}. Pass --text-column.")
            clash = sorted(reserved & set(map(str, frame.columns)))
            if clash:
                raise UserError(f"--input {source}: already has column(s) {', '.join(clash)} that scoring "
                                "adds; rename them first.")
            if bar is None and len(frame):  # drawn once the input has proved readable: errors stay one line
                bar = tqdm(total=count_rows(source), unit=" rows", disable=not progress, desc="scoring")
            if index >= done:  # chunks finished by an earlier, killed run are not scored again
                if as_text:
                    frame = frame.astype(object).map(lambda v: v if v is None or isinstance(v, str) else
                                                     (None if v != v else json.dumps(v) if isinstance(v, (list, dict))
                                                      else str(v)))
                chunk = partial / f"part-{index:08d}.{kind}"
                writer = TableWriter(chunk.with_name(chunk.name + ".tmp"), kind)
                writer.write(score_frame(classifier, frame, text_column))
                writer.close()
                chunk.with_name(chunk.name + ".tmp").replace(chunk)
            rows += len(frame)
            if bar is not None:
                bar.update(len(frame))
        if rows == 0:
            raise UserError(f"--input {source}: no rows to score; give a file with at least one text.")
        assembled = _assemble(sorted(partial.glob(f"part-*.{kind}")), partial / f"assembled.{kind}", kind)
    except (UserError, UnicodeDecodeError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(exc, UserError):
            raise
        if isinstance(exc, UnicodeDecodeError):
            raise UserError(f"--input {source}: not valid UTF-8; re-save the file as UTF-8.") from None
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--input {source}: cannot read it ({first}); check the file's format.") from None
    finally:
        if bar is not None:
            bar.close()
    assembled.replace(target)
    shutil.rmtree(partial, ignore_errors=True)
    return rows


def _finished_chunks(partial: Path, manifest: dict, resume: bool, overwrite: bool, target: Path) -> int:
    """How many chunks an earlier run finished (0 when starting afresh)."""
    import json

    if not partial.exists():
        if resume:
            raise UserError(f"--resume: no unfinished scoring run for --output {target}; run without --resume.")
        return 0
    if not resume:
        if not overwrite:
            raise UserError(f"--output {target}: an unfinished scoring run is in {partial}; pass --resume to "
                            "continue it or --overwrite to start over.")
        shutil.rmtree(partial)
        return 0
    try:
        before = json.loads((partial / "manifest.json").read_text())
    except (OSError, ValueError):
        before = None
    if before != manifest:
        raise UserError(f"--resume: the unfinished run in {partial} scored another input or used other settings; "
                        "pass --overwrite to start over.")
    chunks = sorted(partial.glob(f"part-*.{manifest['output_format']}"))
    # Chunks are numbered in input order and renamed into place only when complete: count the unbroken run.
    done = 0
    while done < len(chunks) and chunks[done].name == f"part-{done:08d}.{manifest['output_format']}":
        done += 1
    return done


def _assemble(chunks: list[Path], out: Path, kind: str) -> Path:
    """Concatenate chunk files into one file of the same format, streaming."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        import pyarrow as pa

        # A column that was all null in one chunk has type null there: widen to one schema for all chunks.
        schema = pa.unify_schemas([pq.read_schema(c) for c in chunks], promote_options="permissive")
        with pq.ParquetWriter(out, schema) as writer:
            for chunk in chunks:
                writer.write_table(pq.read_table(chunk).cast(schema))
        return out
    with open(out, "wb") as f:
        for i, chunk in enumerate(chunks):
            with open(chunk, "rb") as part:
                if kind == "csv" and i > 0:
                    part.readline()  # each chunk file carries the header; keep the first
                shutil.copyfileobj(part, f)
    return out
