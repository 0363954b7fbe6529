"""Distributed batch scoring on Ray Data: one Classifier per actor, files in, files out, order kept.

    llmclf predict --engine ray --model runs/imdb --input 'reviews/*.parquet' --output scored/

Training on several GPUs or machines needs no code here: `llmclf train` runs unchanged under `torchrun` and
`accelerate launch` (see docs/scaling.md).
"""

from __future__ import annotations

import glob
from pathlib import Path

from llmclf.artifacts import read_run_config, staged
from llmclf.errors import UserError

INPUT_SUFFIXES = (".parquet", ".csv")


def expand_inputs(pattern: str) -> list[Path]:
    """A directory (its .parquet/.csv files), a glob, or one file -> a sorted list of files of one format."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
    else:
        files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise UserError(f"--input {pattern}: no .parquet or .csv files found; give a directory, a glob or a file.")
    kinds = {p.suffix.lower() for p in files}
    if len(kinds) > 1 or not kinds <= set(INPUT_SUFFIXES):
        raise UserError(f"--input {pattern}: found {', '.join(sorted(kinds))} files; give Parquet or CSV files "
                        "of one format.")
    return files


class _Scorer:
    """A Ray actor's callable: loads the model once, then scores pandas batches."""

    def __init__(self, model: str, text_column: str, options: dict):
        from llmclf.predict import Classifier

        self.classifier = Classifier.from_pretrained(model, **options)
        self.text_column = text_column

    def __call__(self, batch):
        from llmclf.scoring import score_frame

        return score_frame(self.classifier, batch, self.text_column)


def _read(ray, files: list[Path]):
    """A Ray dataset with a `__source` column naming each row's input file (dropped before writing)."""
    paths = [str(f) for f in files]
    if files[0].suffix.lower() == ".parquet":
        dataset = ray.data.read_parquet(paths, include_paths=True)
    else:
        # Every CSV column read as text, as single-process `predict` does (ids keep their leading zeros).
        import csv

        import pyarrow as pa
        import pyarrow.csv as pacsv

        columns: list[str] = []
        for f in files:
            with open(f, encoding="utf-8", newline="") as handle:
                columns += [c for c in next(csv.reader(handle), []) if c not in columns]
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in columns}, strings_can_be_null=False,
                                       quoted_strings_can_be_null=False)
        dataset = ray.data.read_csv(paths, convert_options=convert, include_paths=True)
    return dataset.rename_columns({"path": "__source"})


def predict_ray(model: str, input_pattern: str, output: str, text_column: str = "text", num_workers: int = 2,
                batch_size: int = 16, address: str | None = None, overwrite: bool = False, **options) -> int:
    """Score files with Ray Data into the directory `output` (same format as the input); returns the row count.

    One model per actor (`num_workers` actors, one GPU each when the cluster has GPUs); rows keep their order.
    """
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray; run `pip install 'llmclf[ray]'`.") from None
    files = expand_inputs(input_pattern)
    target = Path(output)
    if target.exists() and not overwrite:
        raise UserError(f"--output {target} exists; pass --overwrite to replace it, or choose another --output.")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    resources = ray.cluster_resources()
    gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    # Leave one CPU for Ray Data's read tasks, or a small cluster deadlocks with every CPU held by actors.
    cpus = 0 if gpus else max(0.1, min(1.0, (resources.get("CPU", 1) - 1) / num_workers))
    dataset = _read(ray, files)
    if text_column not in dataset.columns():
        raise UserError(f"--input {input_pattern}: no text column {text_column!r}; columns found: "
                        f"{', '.join(dataset.columns())}. Pass --text-column.")
    scored = dataset.map_batches(
        _Scorer, fn_constructor_args=(model, text_column, {**options, "batch_size": batch_size}),
        batch_format="pandas", batch_size=batch_size * 16, concurrency=num_workers, num_gpus=gpus,
        num_cpus=cpus,
    )
    # The driver writes the rows it receives, in input order, to one output file per input file.
    from llmclf.scoring import TableWriter

    file_format = files[0].suffix.lower().lstrip(".")
    writers: dict[str, TableWriter] = {}
    separator = (read_run_config(model) or {}).get("label_separator") or ","  # as Classifier.label_separator
    rows = 0
    with staged(target) as stage:
        for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
            for source, part in batch.groupby("__source", sort=False):
                name = Path(source).name
                if name not in writers:
                    writers[name] = TableWriter(stage / name, file_format, separator=separator)
                writers[name].write(_plain_lists(part.drop(columns="__source")))
                rows += len(part)
        for writer in writers.values():
            writer.close()
    return rows


def _plain_lists(frame):
    """List columns (a multi-label model's `labels`) as Python lists, as single-process scoring writes them: Ray
    Data hands them over as pandas ArrowDtype columns, and pandas cannot read that dtype back from the metadata
    of a Parquet file written from them."""
    import pandas as pd
    import pyarrow as pa

    for column in frame.columns:
        dtype = frame[column].dtype
        if isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype):
            frame[column] = [None if v is pd.NA else list(v) for v in frame[column].tolist()]
    return frame


def read_scored(directory: str | Path):
    """The scored rows of an output directory (files in name order) as one pandas frame."""
    import pandas as pd

    directory = Path(directory)
    parts = sorted(directory.glob("*.parquet")) or sorted(directory.glob("*.csv"))
    if parts and parts[0].suffix == ".parquet":
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in parts], ignore_index=True)
