import json
from collections import Counter

import pandas as pd
import pytest

from llmclf.data import LabelledTexts, encode_labels, load_labelled, make_label_maps, split_train_validation

from helpers import user_error

ROWS = [("A fine film.", "pos"), ("Dull and long.", "neg"), ("Loved it, twice.", "pos")]


def frame(rows=ROWS, text="text", label="label"):
    return pd.DataFrame({text: [t for t, _ in rows], label: [lab for _, lab in rows]})


def write(path, df):
    kind = path.suffix
    if kind == ".csv":
        df.to_csv(path, index=False)
    elif kind == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif kind == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif kind == ".parquet":
        df.to_parquet(path)
    return path


# --- files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_loads_each_file_format(tmp_path, suffix):
    path = write(tmp_path / f"reviews{suffix}", frame())
    data = load_labelled(str(path))
    assert isinstance(data, LabelledTexts)
    assert data.texts == [t for t, _ in ROWS]
    assert data.labels == ["pos", "neg", "pos"]
    assert len(data) == 3 and data.source == str(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_integer_labels_stay_integers(tmp_path, suffix):
    path = write(tmp_path / f"d{suffix}", frame([("a", 1), ("b", 0), ("c", 1)]))
    data = load_labelled(str(path))
    assert data.labels == [1, 0, 1]
    assert all(type(v) is int for v in data.labels)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_custom_column_names(tmp_path, suffix):
    df = frame(text="review", label="sentiment").assign(other=[1, 2, 3])
    path = write(tmp_path / f"d{suffix}", df)
    data = load_labelled(str(path), text_column="review", label_column="sentiment")
    assert data.texts[1] == "Dull and long." and data.labels == ["pos", "neg", "pos"]


def test_json_file_with_an_array_of_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    assert load_labelled(str(path)).labels == ["x", "y"]


def test_csv_with_quoted_commas_and_newlines_and_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes('\ufefftext,label\n"Good, really.\nYes",1\nbad,0\n'.encode())
    data = load_labelled(str(path))
    assert data.texts == ["Good, really.\nYes", "bad"] and data.labels == [1, 0]


# --- aclImdb-style folders -----------------------------------------------------------------------------------


def make_acl(root):
    """The real aclImdb layout, including the files and folders that are not classes."""
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(f"{split} {label} review {i}")
        (root / split / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0453418/usercomments\n")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("an unlabelled review")
    (root / "README").write_text("Large Movie Review Dataset v1.0")
    return root


@pytest.mark.parametrize("given", ["root", "train"])
def test_aclimdb_folder(tmp_path, given):
    root = make_acl(tmp_path / "aclImdb")
    data = load_labelled(str(root if given == "root" else root / "train"))
    assert sorted(data.labels) == ["neg", "neg", "pos", "pos"]
    assert all(t.startswith("train ") for t in data.texts)
    assert data.texts[data.labels.index("pos")].startswith("train pos")


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    user_error("no class folders with .txt files", load_labelled, str(tmp_path / "empty"))


def test_folder_with_invalid_utf8(tmp_path):
    (tmp_path / "d" / "pos").mkdir(parents=True)
    (tmp_path / "d" / "neg").mkdir()
    (tmp_path / "d" / "pos" / "a.txt").write_text("fine")
    (tmp_path / "d" / "neg" / "b.txt").write_bytes(b"\xff\xfe bad")
    user_error(r"b\.txt: not valid UTF-8", load_labelled, str(tmp_path / "d"))


# --- label maps ----------------------------------------------------------------------------------------------


def test_label_maps_for_strings_are_sorted():
    assert make_label_maps(["pos", "neg", "pos"]) == ({0: "neg", 1: "pos"}, {"neg": 0, "pos": 1})


@pytest.mark.parametrize("labels", [["b", "c", "a", "a"], [2, 0, 1, 1]])
def test_label_maps_do_not_depend_on_row_order(labels):
    expected = make_label_maps(labels)
    for shift in range(len(labels)):
        assert make_label_maps(labels[shift:] + labels[:shift]) == expected
        assert make_label_maps(list(reversed(labels[shift:] + labels[:shift]))) == expected


def test_contiguous_integer_labels_keep_their_ids():
    id2label, label2id = make_label_maps([1, 0, 2, 2])
    assert id2label == {0: "0", 1: "1", 2: "2"} and label2id == {"0": 0, "1": 1, "2": 2}
    assert encode_labels([2, 0, 1], id2label) == [2, 0, 1]


def test_integer_labels_with_label_names():
    id2label, label2id = make_label_maps([1, 0, 1], label_names=["negative", "positive"])
    assert id2label == {0: "negative", 1: "positive"}
    assert label2id == {"negative": 0, "positive": 1}
    assert encode_labels([0, 1, "positive"], id2label) == [0, 1, 1]


def test_label_names_must_cover_the_ids():
    user_error(r"--label-names gives 2 names but the labels run from 0 to 2", make_label_maps, [0, 1, 2], ["a", "b"])
    user_error(r"--label-names a,b lacks the data's label\(s\) neg, pos", make_label_maps, ["pos", "neg"], ["a", "b"])
    user_error("not unique", make_label_maps, [0, 1], ["same", "same"])


def test_label_names_fix_the_order_of_string_labels():
    """A saved run's config records label_names; retraining with it must keep the same ids."""
    assert make_label_maps(["neg", "pos", "neg"], label_names=["pos", "neg"]) == ({0: "pos", 1: "neg"},
                                                                                 {"pos": 0, "neg": 1})


def test_non_contiguous_integer_labels_are_numbered_in_order():
    id2label, label2id = make_label_maps([10, 1, 5, 5])
    assert id2label == {0: "1", 1: "5", 2: "10"}
    assert encode_labels([1, 5, 10, "5"], id2label) == [0, 1, 2, 1]


def test_non_contiguous_integer_labels_reject_an_unseen_id():
    """Ratings 1..2 in training: a 0 or 2-as-id in validation must not silently become class '1'."""
    id2label, _ = make_label_maps([1, 2, 2])
    user_error(r"row 2 has label 0, never seen in training", encode_labels, [2, 0], id2label)
    id2label, _ = make_label_maps([1, 5, 10])
    user_error(r"label 2, never seen", encode_labels, [2], id2label)


def test_single_class_is_an_error():
    user_error(r"single class \('pos'\)", make_label_maps, ["pos", "pos"])
    user_error("single class", make_label_maps, [3, 3, 3])
    user_error("no labels", make_label_maps, [])


def test_encode_labels_by_name_and_by_id():
    id2label, _ = make_label_maps(["neg", "pos"])
    assert encode_labels(["pos", "neg", "pos"], id2label) == [1, 0, 1]
    assert encode_labels([1, 0], id2label) == [1, 0]


def test_encode_labels_unseen_label_names_it():
    id2label, _ = make_label_maps(["neg", "pos"])
    message = user_error("never seen in training", encode_labels, ["pos", "meh"], id2label, what="--validation-data v.csv")
    assert message.startswith("--validation-data v.csv: row 2 has label 'meh'")
    assert "neg, pos" in message


# --- split ---------------------------------------------------------------------------------------------------


def balanced(n=100):
    return LabelledTexts([f"text {i}" for i in range(n)], ["pos" if i % 2 else "neg" for i in range(n)], "d.csv")


def test_split_is_80_20():
    train, validation = split_train_validation(balanced(100))
    assert (len(train), len(validation)) == (80, 20)
    assert sorted(train.texts + validation.texts) == sorted(balanced(100).texts)
    assert "seed 42" in validation.source


def test_split_is_reproducible_with_seed_42():
    first = split_train_validation(balanced(50), 0.2, seed=42)
    second = split_train_validation(balanced(50), 0.2, seed=42)
    other = split_train_validation(balanced(50), 0.2, seed=7)
    assert first[1].texts == second[1].texts and first[0].texts == second[0].texts
    assert first[1].texts != other[1].texts
    for part in first:  # labels follow their texts
        assert all(lab == ("pos" if int(t.split()[1]) % 2 else "neg") for t, lab in zip(part.texts, part.labels))


def test_split_is_stratified():
    data = LabelledTexts([f"t{i}" for i in range(20)], ["a"] * 16 + ["b"] * 4, "d.csv")
    for seed in range(10):
        train, validation = split_train_validation(data, 0.2, seed=seed)
        assert Counter(validation.labels) == {"a": 3, "b": 1}
        assert Counter(train.labels) == {"a": 13, "b": 3}


@pytest.mark.parametrize("n, fraction, sizes", [(5, 0.9, None), (10, 0.9, (1, 9)), (10, 0.85, (1, 9)),
                                                (3, 0.5, (1, 2))])
def test_split_with_a_large_fraction_never_fails_inside_sklearn(n, fraction, sizes):
    """At least one example stays on each side, or a UserError says why (never sklearn's own ValueError)."""
    data = LabelledTexts([f"t{i}" for i in range(n)], [["a", "b"][i % 2] for i in range(n)], "d.csv")
    if sizes is None:
        user_error(f"--validation-fraction {fraction} of {n} examples leaves none for training",
                   split_train_validation, data, fraction)
        return
    train, validation = split_train_validation(data, fraction)
    assert (len(train), len(validation)) == sizes
    assert sorted(train.texts + validation.texts) == sorted(data.texts)


def test_split_needs_two_examples():
    user_error("cannot be split", split_train_validation, LabelledTexts(["x"], ["a"], "d.csv"))
    user_error("cannot be split", split_train_validation, LabelledTexts([], [], "d.csv"))


# --- data errors ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    user_error("file not found", load_labelled, str(tmp_path / "nope.csv"))
    user_error("file not found", load_labelled, "./nope.csv")


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    message = user_error(r"unknown format '\.xlsx'", load_labelled, str(path))
    assert ".csv" in message and ".parquet" in message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("role", ["text", "label"])
def test_missing_column_lists_columns_found(tmp_path, suffix, role):
    path = write(tmp_path / f"d{suffix}", frame(text="review", label="stars"))
    missing = {"text_column": "text"} if role == "text" else {"text_column": "review", "label_column": "label"}
    message = user_error(f"no {role} column '(text|label)'", load_labelled, str(path), **missing)
    assert "columns found: review, stars" in message and f"--{role}-column" in message


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_csv(tmp_path, content):
    path = tmp_path / "d.csv"
    path.write_text(content)
    user_error("d.csv", load_labelled, str(path))


def test_header_only_csv_says_no_examples(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n")
    user_error("no examples found", load_labelled, str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_no_rows(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        path.write_text("")
    else:
        frame([]).astype({"text": str, "label": str}).to_parquet(path)
    user_error(str(path.name), load_labelled, str(path))


def test_empty_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,1\n,0\n")
    user_error("row 2 has empty text", load_labelled, str(path))
    path.write_text('text,label\ngood,1\n"   ",0\n')
    user_error("row 2 has empty text", load_labelled, str(path))


def test_non_string_text(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": 42, "label": 0}\n')
    user_error(r"row 2 has not a string \(int\) text", load_labelled, str(path))
    path.write_text('{"text": "fine", "label": 1}\n{"text": null, "label": 0}\n')
    user_error("row 2 has empty text", load_labelled, str(path))


def test_missing_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad,\n")
    user_error("row 2 has no label", load_labelled, str(path))
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": "bad", "label": null}\n')
    user_error("row 2 has no label", load_labelled, str(path))


def test_invalid_utf8(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\n\xff\xfe bad,1\n")
    user_error(r"not valid UTF-8 \(byte 11\)", load_labelled, str(path))


def test_errors_name_the_option(tmp_path):
    user_error(r"^--test-data .*nope\.csv: file not found", load_labelled, str(tmp_path / "nope.csv"), what="--test-data")


# --- hub -----------------------------------------------------------------------------------------------------


def fake_hub(monkeypatch):
    import datasets

    calls = []
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict({"text": ["bad", "good", "great"], "label": [0, 1, 1]}, features=features)

    def load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return dataset

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_dataset_uses_class_label_names(monkeypatch):
    calls = fake_hub(monkeypatch)
    data = load_labelled("imdb")
    assert calls == [("imdb", "train")]
    assert data.texts == ["bad", "good", "great"] and data.labels == ["neg", "pos", "pos"]
    assert make_label_maps(data.labels)[0] == {0: "neg", 1: "pos"}


def test_hub_dataset_split(monkeypatch):
    calls = fake_hub(monkeypatch)
    load_labelled("imdb:test")
    load_labelled("stanfordnlp/imdb:unsupervised")
    assert calls == [("imdb", "test"), ("stanfordnlp/imdb", "unsupervised")]


def test_hub_dataset_missing_column(monkeypatch):
    fake_hub(monkeypatch)
    user_error("no text column 'review'; columns found: text, label", load_labelled, "imdb", text_column="review")


def test_hub_failure_is_a_user_error(monkeypatch):
    import datasets

    def load_dataset(name, split=None, **kwargs):
        raise ConnectionError("Couldn't reach 'nosuch' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    message = user_error("loading it as a hub dataset failed", load_labelled, "nosuch")
    assert message.startswith("--data nosuch:") and "Couldn't reach 'nosuch'" in message
