"""Labelled text data: load from files, folders or the hub; derive label maps; split.

>>> texts, labels = load_labelled("reviews.csv", text_column="review", label_column="sentiment")  # doctest: +SKIP
>>> id2label, label2id = make_label_maps(labels)                                                # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmclf.errors import UserError

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[Any]
    """Raw labels as found (int, str, a float for a number that is not whole, a list of those for a list cell, or
    a tuple of the --label-columns values); encode them for the run's problem type (llmclf.problem_types)."""
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def load_labelled(source: str, text_column: str = "text", label_column: str = "label", what: str = "--data",
                  label_columns: list[str] | None = None) -> LabelledTexts:
    """Read (texts, raw labels) from a file, an aclImdb-style folder or a hub dataset ``name[:split]``.

    `what` names the option the source came from, so errors point at it. With `label_columns` (multi-label, one
    0/1 column per label) each label is the tuple of those columns' values.
    """
    path = Path(source)
    if path.is_dir():
        if label_columns:
            raise UserError(f"{what} {source}: --label-columns reads columns of a file; give a CSV/JSONL/Parquet file.")
        texts, labels = _read_folder(path, what)
    elif path.suffix.lower() in FILE_FORMATS or path.exists():
        texts, labels = _read_file(path, text_column, label_columns or label_column, what)
    elif _looks_like_path(source):
        raise UserError(f"{what} {source}: file not found; check the path.")
    else:
        texts, labels = _read_hub(source, text_column, label_columns or label_column, what)
    _check_texts(texts, labels, source, what)
    return LabelledTexts(texts, labels, source)


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or "\\" in source or Path(source).suffix != "" and ":" not in source


def _read_file(path: Path, text_column: str, label_column: str | list[str], what: str) -> tuple[list, list]:
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{what} {path}: file not found; check the path.")
    file_format = FILE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(
            f"{what} {path}: unknown format {path.suffix or '(no extension)'!r}; use one of "
            f"{', '.join(sorted(FILE_FORMATS))} or an aclImdb-style folder."
        )
    try:
        if file_format == "parquet":
            frame = pd.read_parquet(path)
        else:
            # Decode strictly ourselves: pandas would otherwise guess, or fail deep inside its C parser.
            raw = path.read_bytes().decode("utf-8-sig")
            import io

            if file_format == "jsonl":  # a .json file may also hold one array of records
                frame = pd.read_json(io.StringIO(raw), lines=not raw.lstrip().startswith("["), dtype=False)
            else:
                frame = pd.read_csv(io.StringIO(raw), sep="\t" if file_format == "tsv" else ",", dtype=object,
                                    keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8.") from None
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} {path}: cannot read it as {file_format} ({first}); check the file's format.") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns  # read_json turns keys such as "0" into integers, which `--text-column 0` names
    _check_columns(columns, text_column, label_column, f"{what} {path}")
    return frame[text_column].tolist(), _column_labels(frame, label_column)


def _check_columns(columns: list[str], text_column: str, label_column: str | list[str], where: str) -> None:
    for role, column in (("text", text_column), *(("label", c) for c in _as_list(label_column))):
        if column not in columns:
            flag = "--label-columns" if isinstance(label_column, list) else f"--{role}-column"
            raise UserError(f"{where}: no {role} column {column!r}; columns found: {', '.join(columns) or '(none)'}. "
                            f"Pass {flag}.")


def _as_list(label_column: str | list[str]) -> list[str]:
    return label_column if isinstance(label_column, list) else [label_column]


def _column_labels(frame, label_column: str | list[str]) -> list:
    if isinstance(label_column, list):  # --label-columns: one 0/1 column per label
        return [tuple(_normalise_label(v) for v in row) for row in zip(*(frame[c].tolist() for c in label_column))]
    return [_normalise_label(v) for v in frame[label_column].tolist()]


def _normalise_label(value: Any) -> Any:
    """Integers stay integers (also when a CSV gives "1" or pandas gives 1.0); other numbers stay floats (a
    regression target); a list (JSONL) or array (Parquet) becomes a list of labels; anything else is a string."""
    import numpy as np

    if isinstance(value, (list, tuple, np.ndarray)):
        return [_normalise_label(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            return int(value.strip())
        except ValueError:  # "¹" and "--1" pass isdigit() but are no integers: they stay names
            pass
    if value is None or (isinstance(value, (float, np.floating)) and value != value):
        return None
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value).strip()


def _read_folder(path: Path, what: str) -> tuple[list, list]:
    """aclImdb layout: DIR/<label>/*.txt; given the dataset root, its train/ folder is used.

    The real aclImdb/train also holds urls_*.txt files and an unsup/ folder of unlabelled reviews: the root is
    recognised by train/<label>/*.txt, and unsup/ is no class.
    """
    if any((path / "train").glob("*/*.txt")):
        path = path / "train"
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and d.name != "unsup" and any(d.glob("*.txt")))
    if not class_dirs:
        raise UserError(
            f"{what} {path}: no class folders with .txt files; expected an aclImdb-style layout "
            f"such as {path}/pos/*.txt and {path}/neg/*.txt."
        )
    texts, labels = [], []
    for class_dir in class_dirs:
        for file in sorted(class_dir.glob("*.txt")):
            try:
                texts.append(file.read_bytes().decode("utf-8-sig"))
            except UnicodeDecodeError as exc:
                raise UserError(f"{what} {file}: not valid UTF-8 (byte {exc.start}); re-save it as UTF-8.") from None
            labels.append(class_dir.name)
    return texts, labels


def _read_hub(source: str, text_column: str, label_column: str, what: str) -> tuple[list, list]:
    """``imdb`` or ``imdb:test``: datasets.load_dataset, for users who can reach the hub."""
    name, _, split = source.partition(":")
    split = split or "train"
    try:
        import datasets

        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{what} {source}: not a local file or folder, and loading it as a hub dataset failed ({first}); "
            "check the path, or the dataset name and network access."
        ) from None
    _check_columns(list(dataset.column_names), text_column, label_column, f"{what} {source}")
    if isinstance(label_column, list):
        return list(dataset[text_column]), _column_labels(dataset.to_pandas(), label_column)
    labels = list(dataset[label_column])
    feature = dataset.features[label_column]
    if hasattr(feature, "names") and feature.names:  # ClassLabel: use the real names (imdb: neg/pos)
        labels = [feature.names[i] for i in labels]
    return list(dataset[text_column]), [_normalise_label(v) for v in labels]


def _check_texts(texts: list, labels: list, source: str, what: str) -> None:
    if not texts:
        raise UserError(f"{what} {source}: no examples found; give a file with at least one labelled row.")
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            missing = text is None or (isinstance(text, float) and text != text)  # pandas reads null as NaN
            shown = "empty" if isinstance(text, str) or missing else f"not a string ({type(text).__name__})"
            raise UserError(f"{what} {source}: row {row + 1} has {shown} text; remove or fill that row.")
    for row, label in enumerate(labels):
        if label is None or isinstance(label, str) and label == "":
            raise UserError(f"{what} {source}: row {row + 1} has no label; remove or label that row.")


def make_label_maps(labels: list[Any], label_names: list[str] | None = None) -> tuple[dict[int, str], dict[str, int]]:
    """Deterministic maps: integer labels keep their values as ids, string labels are sorted.

    >>> make_label_maps(["pos", "neg", "pos"])
    ({0: 'neg', 1: 'pos'}, {'neg': 0, 'pos': 1})
    >>> make_label_maps([1, 0], label_names=["negative", "positive"])
    ({0: 'negative', 1: 'positive'}, {'negative': 0, 'positive': 1})
    """
    distinct = set(labels)
    if not distinct:
        raise UserError("the training data has no labels; a classifier needs at least two classes.")
    if all(isinstance(v, int) for v in distinct):
        if label_names is not None:
            if min(distinct) < 0 or max(distinct) >= len(label_names):
                raise UserError(f"--label-names gives {len(label_names)} names but the labels run from "
                                f"{min(distinct)} to {max(distinct)}; give one name per label id 0..{max(distinct)}.")
            id2label = {i: str(name) for i, name in enumerate(label_names)}
        else:
            # 0..K-1 keep their values as ids; other integers (star ratings 1-10, say) are numbered in order.
            id2label = dict(enumerate(str(v) for v in sorted(distinct)))
    else:
        names = sorted(str(v) for v in distinct)
        if label_names is not None:
            # Named labels: --label-names may only fix their order (a saved run's config does exactly that).
            unknown = sorted(set(names) - {str(n) for n in label_names})
            if unknown:
                raise UserError(f"--label-names {','.join(map(str, label_names))} lacks the data's label(s) "
                                f"{', '.join(unknown)}; list every label, or leave --label-names out.")
            names = [str(n) for n in label_names]
        id2label = dict(enumerate(names))
    if len(id2label) < 2:
        raise UserError(f"the training data has a single class ({id2label[0]!r}); a classifier needs at least two.")
    if len(set(id2label.values())) != len(id2label):
        raise UserError("label names are not unique; give distinct --label-names.")
    return id2label, {name: i for i, name in id2label.items()}


def encode_labels(labels: list[Any], id2label: dict[int, str], what: str = "--data") -> list[int]:
    """Map raw labels (ids or names) to ids; a label never seen in training is a user error."""
    label2id = {name: i for i, name in id2label.items()}
    # When the names are themselves integers (labels 1..5, say), an integer label is a name, never an id.
    names_are_ints = all(name.strip().lstrip("-").isdigit() for name in id2label.values())
    ids = []
    for row, label in enumerate(labels):
        if str(label) in label2id:
            ids.append(label2id[str(label)])
        elif isinstance(label, int) and label in id2label and not names_are_ints:  # integer ids for named labels (--label-names)
            ids.append(label)
        else:
            raise UserError(
                f"{what}: row {row + 1} has label {label!r}, never seen in training (labels: "
                f"{', '.join(id2label.values())}); fix the label or add it to the training data."
            )
    return ids


def split_train_validation(data: LabelledTexts, fraction: float = 0.2, seed: int = 42,
                           stratify: bool = True) -> tuple[LabelledTexts, LabelledTexts]:
    """Hold out `fraction` for validation, shuffled with `seed` (the card's 80/20, seed 42).

    Stratified by label so that small data sets keep every class on both sides (unless `stratify` is False:
    label sets and numbers are no classes to stratify by).
    """
    from sklearn.model_selection import train_test_split

    if len(data) < 2:
        raise UserError(f"--data {data.source}: {len(data)} example(s) cannot be split; give at least 2, "
                        "or pass --validation-data.")
    indices = list(range(len(data)))
    counts = {}
    for label in data.labels if stratify else ():
        counts[label] = counts.get(label, 0) + 1
    n_validation = math.ceil(len(data) * fraction)  # how train_test_split rounds
    if n_validation >= len(data):
        raise UserError(f"--validation-fraction {fraction} of {len(data)} examples leaves none for training; "
                        "lower it, or pass --validation-data.")
    enough = min(n_validation, len(data) - n_validation) >= len(counts)
    by = data.labels if counts and min(counts.values()) >= 2 and enough else None
    train_idx, val_idx = train_test_split(indices, test_size=fraction, random_state=seed, stratify=by)
    pick = lambda idx, tag: LabelledTexts([data.texts[i] for i in idx], [data.labels[i] for i in idx],
                                          f"{data.source} ({tag})")
    return pick(train_idx, f"{1 - fraction:.0%} split, seed {seed}"), pick(val_idx, f"{fraction:.0%} split, seed {seed}")
