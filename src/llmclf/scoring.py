"""Scoring files of any size: CSV, JSONL or Parquet in, the same rows plus the model's decisions out, streamed
in chunks with flat memory, staged beside the output and resumable after a kill.

    llmclf predict --model runs/imdb --input reviews.parquet --output scored.parquet
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from llmclf.artifacts import publish, staging_path
from llmclf.errors import UserError
from llmclf.outputs import SINGLE_LABEL, added_columns, record_columns
from llmclf.predict import Classifier


TABLE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def table_format(path: Path, what: str) -> str:
    file_format = TABLE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(f"{what} {path}: unknown format {path.suffix or '(no extension)'!r}; use "
                        f"{', '.join(TABLE_FORMATS)}.")
    return file_format


def read_table_chunks(path: Path, chunk_rows: int):
    """Yield pandas frames of at most `chunk_rows` rows: memory stays flat whatever the file size."""
    import pandas as pd

    file_format = table_format(path, "--input")
    if file_format == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    elif file_format == "csv":
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


# A multi-label model's chosen labels: a list in JSONL and Parquet, one "a,b" cell in CSV (joined by the
# model's label_separator, "," unless its training data used another).
LIST_COLUMNS = ("labels",)


def join_lists(frame, columns: tuple[str, ...], separator: str = ","):
    """`columns` with list cells (Python lists, or NumPy arrays after a trip through Arrow) joined by `separator`."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return frame
    frame = frame.copy()
    for column in present:
        frame[column] = frame[column].map(
            lambda v: separator.join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v)
    return frame


class TableWriter:
    """Appends scored chunks to a CSV, JSONL or Parquet file."""

    def __init__(self, path: Path, file_format: str, list_columns: tuple[str, ...] = LIST_COLUMNS,
                 separator: str = ","):
        self.path, self.file_format, self._parquet, self._started = path, file_format, None, False
        self.list_columns, self.separator = list_columns, separator

    def write(self, frame) -> None:
        if self.file_format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        elif self.file_format == "csv":
            frame = join_lists(frame, self.list_columns, self.separator)
            frame.to_csv(self.path, mode="a" if self._started else "w", header=not self._started, index=False)
        else:
            with open(self.path, "a" if self._started else "w", encoding="utf-8") as f:
                text = frame.to_json(orient="records", lines=True, force_ascii=False)
                # pandas 2.2+ ends the lines with a newline, older versions do not: one either way, no blank lines
                f.write(text if not text or text.endswith("\n") else text + "\n")
        self._started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def scored_columns(classifier: Classifier) -> list[str]:
    """The columns scoring adds for this classifier (llmclf.outputs.added_columns): label, score, prob_<label>
    for single-label; labels, prob_<label> for multi-label; value (value_low, value_high) for regression; and
    needs_review with a min_confidence."""
    scale = getattr(classifier, "scale", None)
    interval = scale is not None and scale.halfwidth is not None
    with_review = getattr(classifier, "min_confidence", None) is not None
    return added_columns(_kind(classifier), _labels(classifier), with_review, interval)


# getattr and id2label: stand-ins with id2label, predict_proba and decide (the fuzz and server tests') score too.
def _kind(classifier) -> str:
    return getattr(classifier, "problem_type", SINGLE_LABEL)


def _labels(classifier) -> list[str]:
    labels = getattr(classifier, "labels", None)
    return list(labels) if labels is not None else [classifier.id2label[i] for i in range(len(classifier.id2label))]


def score_frame(classifier: Classifier, frame, text_column: str):
    """The frame with scored_columns added: for a single-label model `label`, `score`, one `prob_<label>` column
    per class (and `needs_review` when the classifier has a min_confidence)."""
    if _kind(classifier) != SINGLE_LABEL:
        records = classifier.classify(frame[text_column].tolist())
        return frame.assign(**record_columns(records, scored_columns(classifier)))
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
    source, target = Path(input_path), Path(output_path)
    check_paths(source, target, overwrite)
    output_format = table_format(target, "--output")
    partial = staging_path(target)  # kept when the run is killed: --resume continues from its chunks
    stat = source.stat()
    manifest = {"input": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "chunk_rows": chunk_rows, "text_column": text_column, "output_format": output_format}
    done = _finished_chunks(partial, manifest, resume, overwrite, target)
    created = [d for d in [target.parent, *target.parent.parents] if not d.exists()]  # removed again on failure
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "manifest.json").write_text(json.dumps(manifest))
    try:
        rows = _score_chunks(classifier, source, partial, manifest, done, progress)
        assembled = _assemble(sorted(partial.glob(f"part-*.{output_format}")), partial / f"assembled.{output_format}",
                              output_format)
    except (UserError, UnicodeDecodeError, ValueError) as exc:
        # A bad input is not resumable: nothing of this run is kept.
        shutil.rmtree(partial, ignore_errors=True)
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise _input_error(exc, source) from None
    publish(assembled, target)
    shutil.rmtree(partial, ignore_errors=True)
    return rows


def check_paths(source: Path, target: Path, overwrite: bool) -> None:
    if not source.is_file():
        raise UserError(f"--input {source}: file not found; check the path.")
    if source.resolve() == target.resolve():
        raise UserError(f"--output {target} is the --input file; write the scores to another file.")
    if target.exists() and not overwrite:
        raise UserError(f"--output {target} exists; pass --overwrite to replace it, or choose another --output.")
    table_format(target, "--output")
    table_format(source, "--input")


def _score_chunks(classifier: Classifier, source: Path, partial: Path, manifest: dict, done: int,
                  progress: bool) -> int:
    """Score the input chunk by chunk into part-NNNNNNNN files (skipping the `done` ones); returns the rows."""
    from tqdm import tqdm

    text_column, output_format = manifest["text_column"], manifest["output_format"]
    # What scoring may add with any setting: an input column of that name would be overwritten.
    reserved = set(added_columns(_kind(classifier), _labels(classifier), with_review=True, with_interval=True))
    # JSON values may change type from row to row; a Parquet column needs one type: keep them as text.
    as_text = output_format == "parquet" and table_format(source, "--input") == "jsonl"
    rows, bar = 0, None
    try:
        for index, frame in enumerate(read_table_chunks(source, manifest["chunk_rows"])):
            check_columns(frame, source, text_column, reserved)
            if bar is None and len(frame):  # drawn once the input has proved readable: errors stay one line
                bar = tqdm(total=count_rows(source), unit=" rows", disable=not progress, desc="scoring")
            if index >= done:  # chunks finished by an earlier, killed run are not scored again
                chunk = partial / f"part-{index:08d}.{output_format}"
                writer = TableWriter(chunk.with_name(chunk.name + ".tmp"), output_format,
                                     separator=getattr(classifier, "label_separator", ","))
                writer.write(score_frame(classifier, _as_text(frame) if as_text else frame, text_column))
                writer.close()
                chunk.with_name(chunk.name + ".tmp").replace(chunk)
            rows += len(frame)
            if bar is not None:
                bar.update(len(frame))
    finally:
        if bar is not None:
            bar.close()
    if rows == 0:
        raise UserError(f"--input {source}: no rows to score; give a file with at least one text.")
    return rows


def check_columns(frame, source: Path, text_column: str, reserved: set[str]) -> None:
    if text_column not in frame.columns:
        raise UserError(f"--input {source}: no text column {text_column!r}; columns found: "
                        f"{', '.join(map(str, frame.columns))}. Pass --text-column.")
    clash = sorted(reserved & set(map(str, frame.columns)))
    if clash:
        raise UserError(f"--input {source}: already has column(s) {', '.join(clash)} that scoring "
                        "adds; rename them first.")


def _as_text(frame):
    return frame.astype(object).map(lambda v: v if v is None or isinstance(v, str) else
                                    (None if v != v else json.dumps(v) if isinstance(v, (list, dict)) else str(v)))


def _input_error(exc: Exception, source: Path) -> UserError:
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return UserError(f"--input {source}: not valid UTF-8; re-save the file as UTF-8.")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return UserError(f"--input {source}: cannot read it ({first}); check the file's format.")


def _finished_chunks(partial: Path, manifest: dict, resume: bool, overwrite: bool, target: Path) -> int:
    """How many chunks an earlier run finished (0 when starting afresh)."""
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


def _assemble(chunks: list[Path], out: Path, file_format: str) -> Path:
    """Concatenate chunk files into one file of the same format, streaming."""
    if file_format == "parquet":
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
                if file_format == "csv" and i > 0:
                    part.readline()  # each chunk file carries the header; keep the first
                shutil.copyfileobj(part, f)
    return out
