"""Staged writes, model-name resolution and the files beside a model (llmclf.artifacts)."""

import json

import pytest

from llmclf.artifacts import (model_dir, read_calibration, read_metrics, read_run_config, shipped_model_dir, staged,
                              staging_path, write_calibration, write_metrics, write_run_config, write_text)


def test_staged_directory_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged(target) as stage:
        assert stage == staging_path(target) and stage.is_dir() and stage.parent == tmp_path
        (stage / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # the old output stays until the new one is complete
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert not stage.exists()


def test_a_failed_write_leaves_the_target_untouched_and_no_stage(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged(target) as stage:
            (stage / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert not staging_path(target).exists()


def test_keep_on_failure_then_resume_continues_in_the_same_stage(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with staged(target, keep_on_failure=True) as stage:
            (stage / "checkpoint").write_text("epoch 1")
            raise KeyboardInterrupt
    assert (staging_path(target) / "checkpoint").read_text() == "epoch 1" and not target.exists()
    with staged(target, resume=True) as stage:
        assert (stage / "checkpoint").read_text() == "epoch 1"
    assert (target / "checkpoint").read_text() == "epoch 1"


def test_a_process_that_does_not_own_the_output_neither_creates_nor_publishes(tmp_path):
    target = tmp_path / "run"
    with staged(target, owner=False) as stage:
        assert not stage.exists()
    assert not target.exists()


def test_shared_stage_never_replaces_a_finished_target(tmp_path):
    target = tmp_path / "cache"
    with staged(target, shared=True) as stage:
        (stage / "a").write_text("first")
        with staged(target, shared=True) as other:  # another process, finishing first
            (other / "a").write_text("second")
    assert (target / "a").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_write_text_is_all_or_nothing(tmp_path):
    path = tmp_path / "report.json"
    write_text(path, "{}")
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_model_names_resolve_to_directories(tmp_path, monkeypatch):
    assert model_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_dir("~/runs/x") == tmp_path / "runs" / "x"
    shipped = model_dir("imdb-sentiment")
    assert shipped == shipped_model_dir("imdb-sentiment") and (shipped / "adapter_config.json").is_file()


def test_settings_metrics_and_calibration_round_trip(tmp_path):
    assert read_run_config(tmp_path) == {} and read_metrics(tmp_path) is None and read_calibration(tmp_path) == {}
    write_run_config(tmp_path, {"model": "tiny-random-llama", "max_length": 64})
    write_metrics(tmp_path, {"validation": {"accuracy": 0.5}})
    assert read_run_config(tmp_path) == {"model": "tiny-random-llama", "max_length": 64}
    assert read_metrics(tmp_path) == {"validation": {"accuracy": 0.5}}
    # An adapter directory (no config.json) keeps its calibration in calibration.json; a full model in config.json.
    assert write_calibration(tmp_path, {"threshold": 0.4}).name == "calibration.json"
    assert read_calibration(tmp_path) == {"threshold": 0.4}
    (tmp_path / "config.json").write_text(json.dumps({"num_labels": 2}))
    assert write_calibration(tmp_path, {"threshold": 0.3}).name == "config.json"
    assert json.loads((tmp_path / "config.json").read_text()) == {"llmclf": {"threshold": 0.3}, "num_labels": 2}
    assert read_calibration(tmp_path) == {"threshold": 0.3}
