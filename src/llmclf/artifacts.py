"""What llmclf writes and reads on disk, in one place: staged (all-or-nothing) writes, which directory a model
name means, and the files beside a model (run settings, metrics, calibration).

    with staged(Path("runs/eval")) as stage:        # a directory beside the target, renamed into place at the end
        (stage / "metrics.json").write_text("{}")

Every writer works in a staging path beside its target (`.NAME.llmclf-partial`) and renames it into place only
when complete, so an interrupted run never leaves an output that looks finished.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from llmclf.errors import UserError

RUN_CONFIG_FILE = "llmclf_config.yaml"
METRICS_FILE = "metrics.json"
CALIBRATION_FILE = "calibration.json"
SHIPPED_MODELS = ("imdb-sentiment",)
DEFAULT_CLASSIFIER = "imdb-sentiment"


# ---------------------------------------------------------------------------------------------------------
# Staged writes


def staging_path(target: Path) -> Path:
    """Where the output for `target` is built: beside it, hidden, and named after it (so `--resume` finds it)."""
    target = Path(target)
    return target.parent / f".{target.name}.llmclf-partial"


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def publish(stage: Path, target: Path) -> None:
    """Move a finished staging path into place, replacing `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        remove(target)
    stage.rename(target)


@contextmanager
def staged(target: Path, *, directory: bool = True, resume: bool = False, keep_on_failure: bool = False,
           owner: bool = True, shared: bool = False):
    """Yields the staging path of `target` (a fresh directory, or a file path when `directory` is False) and
    publishes it over `target` when the block finishes.

    `resume` keeps what an earlier, interrupted run left in the staging directory; `keep_on_failure` leaves
    the stage for a later `resume` when the block raises (else it is removed). `owner` False (the other ranks
    of a multi-process run) only yields the path: one process creates and publishes. `shared` is for a cache
    that several processes may fill at once: each builds in a stage of its own, and the first to finish wins
    (a finished target is never replaced, since another process may be reading it).
    """
    target = Path(target)
    if shared:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            yield stage
        except BaseException:
            remove(stage)
            raise
        remove(stage) if target.exists() else stage.rename(target)
        return
    stage = staging_path(target)
    if owner:
        if not resume:
            remove(stage)
        if directory:
            stage.mkdir(parents=True, exist_ok=True)
        else:
            stage.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except BaseException:
        if owner and not keep_on_failure:
            remove(stage)
        raise
    if owner:
        publish(stage, target)


def write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: readers never see half of it."""
    with staged(Path(path), directory=False) as stage:
        stage.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Model names


def shipped_model_dir(name: str) -> Path:
    """A ready-to-use classifier bundled with llmclf (a LoRA adapter over the default backbone)."""
    from importlib import resources

    path = Path(str(resources.files("llmclf") / "shipped" / name))
    if not (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise UserError(f"--model {name}: this llmclf build does not bundle the shipped model yet; pass --model DIR "
                        "with a directory written by `llmclf train`.")
    return path


def shipped_model_available(name: str) -> bool:
    try:
        shipped_model_dir(name)
    except UserError:
        return False
    return True


def model_dir(name: str | Path) -> Path:
    """The directory a trained-classifier name means: a shipped model's name, or a path (`~` expanded).

    Backbone names (aliases, hub ids, .gguf files) are models.resolve_backbone's business.
    """
    if str(name) in SHIPPED_MODELS:
        return shipped_model_dir(str(name))
    return Path(name).expanduser()


# ---------------------------------------------------------------------------------------------------------
# Files beside a model


def read_run_config(model: str | Path) -> dict:
    """The settings a model was trained with (llmclf_config.yaml), or {} for a model trained elsewhere."""
    path = model_dir(model) / RUN_CONFIG_FILE
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_run_config(directory: Path, settings: dict) -> None:
    write_text(directory / RUN_CONFIG_FILE, yaml.safe_dump(settings, sort_keys=False))


def read_metrics(model: str | Path) -> dict | None:
    path = model_dir(model) / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_metrics(directory: Path, results: dict) -> None:
    write_text(directory / METRICS_FILE, json.dumps(results, indent=2))


def write_calibration(directory, record: dict) -> Path:
    """Record the calibration in `config.json` under "llmclf" (a full model), else in `calibration.json`
    (a LoRA adapter directory, which has no config.json of its own). Returns the file written."""
    directory = Path(directory)
    config = directory / "config.json"
    if config.is_file():
        values = json.loads(config.read_text(encoding="utf-8"))
        values["llmclf"] = record
        write_text(config, json.dumps(values, indent=2, sort_keys=True) + "\n")
        return config
    path = directory / CALIBRATION_FILE
    write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_calibration(model: str | Path) -> dict:
    """The saved calibration record (see llmclf.calibration), or {} for a model saved without one."""
    directory = model_dir(model)
    config = directory / "config.json"
    if config.is_file():
        record = json.loads(config.read_text(encoding="utf-8")).get("llmclf")
        if record:
            return dict(record)
    path = directory / CALIBRATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
