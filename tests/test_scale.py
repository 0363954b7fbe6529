"""Distributed scoring on a real local Ray cluster with 2 CPU workers: the output equals single-process
`predict` row for row, input ids and columns kept."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'llmclf[ray]'")
pytestmark = pytest.mark.slow  # a local Ray cluster for the whole module

from llmclf.cli import main  # noqa: E402
from llmclf.errors import UserError  # noqa: E402
from llmclf.predict import Classifier  # noqa: E402
from llmclf.scale import expand_inputs, predict_ray, read_scored  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def make_parts(directory, suffix, parts=3, rows=17):
    directory.mkdir()
    frames = []
    for part in range(parts):
        frame = pd.DataFrame({"id": [f"{part}{i:04d}" for i in range(rows)],
                              "text": [f"review {part}-{i} " + "word " * (i * 7 % 50) for i in range(rows)],
                              "stars": [str(i % 5 + 1) for i in range(rows)]})
        path = directory / f"part-{part}{suffix}"
        frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_ray_output_equals_single_process_row_for_row(tiny_classifier_dir, tmp_path, suffix):
    frame = make_parts(tmp_path / "in", suffix)
    out = tmp_path / "out"
    rows = predict_ray(str(tiny_classifier_dir), str(tmp_path / "in"), str(out), num_workers=2, batch_size=4)
    assert rows == len(frame) == 51
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i}{suffix}" for i in range(3)]
    scored = read_scored(out)
    assert scored["id"].tolist() == frame["id"].tolist()  # ids (leading digits kept) and order
    assert scored["stars"].astype(str).tolist() == frame["stars"].tolist()
    expected = Classifier.from_pretrained(str(tiny_classifier_dir)).predict_proba(frame["text"].tolist())
    assert np.allclose(scored[["prob_neg", "prob_pos"]].astype(float).to_numpy(), expected, atol=1e-5)
    assert scored["label"].tolist() == [["neg", "pos"][i] for i in expected.argmax(axis=1)]


def test_ray_cli_and_errors(tiny_classifier_dir, tmp_path):
    make_parts(tmp_path / "in", ".parquet", parts=2, rows=5)
    assert main(["predict", "--engine", "ray", "--model", str(tiny_classifier_dir), "--input",
                 str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "o")]) == 0
    assert len(read_scored(tmp_path / "o")) == 10
    with pytest.raises(UserError, match="no .parquet or .csv files"):
        expand_inputs(str(tmp_path / "nothing-*.parquet"))
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        predict_ray(str(tiny_classifier_dir), str(tmp_path / "in"), str(tmp_path / "o"))
    with pytest.raises(UserError, match="no text column 'body'"):
        predict_ray(str(tiny_classifier_dir), str(tmp_path / "in"), str(tmp_path / "o2"), text_column="body")
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("kind,suffix", [("multi-label", ".parquet"), ("multi-label", ".csv"), ("regression", ".csv")])
def test_ray_scores_multi_label_and_regression_models_as_one_process_does(tmp_path, kind, suffix):
    from llmclf.scoring import score_file
    from typed_models import multi_label_dir, regression_dir

    model = str(multi_label_dir(tmp_path) if kind == "multi-label" else regression_dir(tmp_path))
    frame = make_parts(tmp_path / "in", suffix, parts=2, rows=9)
    assert predict_ray(model, str(tmp_path / "in"), str(tmp_path / "out"), num_workers=2, batch_size=4) == 18
    scored = read_scored(tmp_path / "out")
    classifier = Classifier.from_pretrained(model)
    alone = []
    for part in sorted((tmp_path / "in").iterdir()):
        score_file(classifier, str(part), str(tmp_path / f"alone-{part.name}"), progress=False)
        alone.append(pd.read_parquet(tmp_path / f"alone-{part.name}") if suffix == ".parquet" else
                     pd.read_csv(tmp_path / f"alone-{part.name}", dtype=str, keep_default_na=False))
    alone = pd.concat(alone, ignore_index=True)
    assert list(scored.columns) == list(alone.columns) and scored["id"].tolist() == frame["id"].tolist()
    added = [c for c in alone.columns if c not in frame.columns]
    assert added == (["labels", "prob_action", "prob_comedy", "prob_drama"] if kind == "multi-label" else
                     ["value", "value_low", "value_high"])
    for column in added:
        if column == "labels":
            assert [list(v) if not isinstance(v, str) else v for v in scored[column]] == \
                   [list(v) if not isinstance(v, str) else v for v in alone[column]]
        else:
            assert np.allclose(scored[column].astype(float), alone[column].astype(float), atol=1e-5)
