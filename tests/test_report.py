import numpy as np
import pytest
import yaml

from llmclf.metrics import compute_metrics, softmax
from llmclf.report import write_model_card

NAMES = {0: "negative", 1: "positive"}
CONFIG = {"model": "HuggingFaceTB/SmolLM2-135M", "lora": True, "lora_r": 16, "learning_rate": 5e-5,
          "epochs": 2.0, "best_metric": None, "keep_checkpoints": False}
HISTORY = [
    {"epoch": 1.0, "train_loss": 0.61},
    {"epoch": 1.0, "eval_loss": 0.5, "eval_accuracy": 0.75, "eval_f1_macro": 0.74, "eval_roc_auc": 0.81},
    {"epoch": 2.0, "train_loss": 0.42, "eval_loss": 0.44, "eval_accuracy": 0.8, "eval_f1_macro": 0.79},
]
DATA = {"train": "reviews.csv", "train_size": 800, "validation_size": 200, "label_names": ["negative", "positive"]}
PLOTS = ["plots/confusion_matrix.png", "plots/roc.png", "plots/loss.png", "plots/accuracy.png"]


def metrics(seed):
    rng = np.random.default_rng(seed)
    labels = np.tile([0, 1], 10)
    return compute_metrics(labels, softmax(rng.normal(size=(20, 2)) + np.eye(2)[labels]), NAMES)


def read_card(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def card_metrics(header):
    (entry,) = header["model-index"]
    (result,) = entry["results"]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {"name": "reviews.csv", "type": "reviews.csv"}
    return {m["type"]: m for m in result["metrics"]}


def test_card_with_validation_only(tmp_path):
    val = metrics(1)
    path = write_model_card(tmp_path / "run", config=CONFIG, metrics=val, history=HISTORY, data_info=DATA,
                            plots=PLOTS)
    assert path == tmp_path / "run" / "README.md"
    header, body = read_card(path)
    assert header["library_name"] == "transformers"
    assert header["pipeline_tag"] == "text-classification"
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert header["tags"] == ["llmclf", "text-classification"]
    found = card_metrics(header)
    assert found["accuracy"] == {"type": "accuracy", "value": pytest.approx(val["accuracy"]),
                                 "name": "validation accuracy"}
    assert found["f1"]["value"] == pytest.approx(val["f1_macro"])
    assert found["precision"]["value"] == pytest.approx(val["precision_macro"])
    assert found["recall"]["value"] == pytest.approx(val["recall_macro"])
    assert found["roc_auc"]["value"] == pytest.approx(val["roc_auc"])
    for heading in ("## How to use", "## Data", "## Training recipe", "## Results", "## Plots", "## Limitations"):
        assert heading in body
    for plot in PLOTS:
        assert f"]({plot})" in body
    assert "LoRA (rank 16)" in body
    assert 'pipeline("text-classification"' in body and "llmclf predict --model" in body
    assert "| learning_rate | 5e-05 |" in body
    assert "| best_metric | none |" in body and "| keep_checkpoints | false |" in body
    assert f"| accuracy | {val['accuracy']:.4f} |" in body
    assert "| 1 | 0.6100 | 0.5000 | 0.7500 | 0.7400 | 0.8100 |" in body
    assert "| 2 | 0.4200 | 0.4400 | 0.8000 | 0.7900 | n/a |" in body
    assert "validation split carved from the training data" in body
    assert "`reviews.csv`" in body


def test_card_prefers_test_metrics(tmp_path):
    val, test = metrics(1), metrics(2)
    test["roc_auc"] = None
    config = {**CONFIG, "lora": False}
    path = write_model_card(tmp_path, config=config, metrics=val, history=[], data_info={**DATA, "test": "t.csv"},
                            plots=[], test_metrics=test)
    header, body = read_card(path)
    found = card_metrics(header)
    assert found["accuracy"]["value"] == pytest.approx(test["accuracy"])
    assert found["accuracy"]["name"] == "test accuracy"
    assert "roc_auc" not in found
    assert "full fine-tuning" in body
    assert "| Metric | validation | test |" in body
    assert "### Per class (test)" in body
    assert "Training history" not in body
    assert "the held-out test data" in body


def test_plot_paths_from_write_plots_become_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_model_card("run", config=CONFIG, metrics=metrics(1), history=HISTORY, data_info=DATA,
                     plots=["run/plots/roc.png", str(tmp_path / "run" / "plots" / "loss.png")])
    _, body = read_card(tmp_path / "run" / "README.md")
    assert "](plots/roc.png)" in body and "](plots/loss.png)" in body


def test_card_names_the_hub_model_and_the_dataset_not_local_aliases(tmp_path):
    config = {**CONFIG, "model": "smollm2-135m"}
    data = {**DATA, "train": "../shared/data/imdb/train.parquet"}
    header, body = read_card(write_model_card(tmp_path, config=config, metrics=metrics(1), history=[], data_info=data,
                                              plots=[]))
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["datasets"] == ["imdb"]
    (result,) = header["model-index"][0]["results"]
    assert result["dataset"] == {"name": "IMDb (Maas et al., 2011)", "type": "imdb"}
    assert "fine-tuned from `HuggingFaceTB/SmolLM2-135M-Instruct` (llmclf alias `smollm2-135m`)" in body
    assert "| train | IMDb (Maas et al., 2011), read from ../shared/data/imdb/train.parquet | 800 |" in body
    assert "| validation | held out from IMDb (Maas et al., 2011) | 200 |" in body
    assert "- Trained on IMDb (Maas et al., 2011) only;" in body
    assert "| model | smollm2-135m |" in body  # the recipe table stays the saved settings, a valid --config
    for local in ("reviews.csv", "my/data/train.parquet"):  # a file of one's own keeps its name, no `datasets:`
        header, _ = read_card(write_model_card(tmp_path / "own", config=CONFIG, metrics=metrics(1), history=[],
                                               data_info={**DATA, "train": local}, plots=[]))
        assert "datasets" not in header and header["base_model"] == CONFIG["model"]
        assert header["model-index"][0]["results"][0]["dataset"] == {"name": local, "type": local}


def test_training_sentence_adds_up_a_resumed_run_and_says_when_it_cannot():
    from llmclf.report import training_lines

    base = {"train_seconds": 5400.0, "steps": 900, "train_examples": 12000, "epochs": 1.2, "bf16": True,
            "device": "CPU B", "eval_each_epoch": False, "resumed": True}
    segments = [{"seconds": 3600.0, "steps": 500, "device": "CPU A"},
                {"seconds": 1800.0, "steps": 900, "device": "CPU B"}]
    [line, _] = training_lines({**base, "train_segments": segments})
    assert line.startswith("Trained in 1 h 30 min (5,400 s, no per-epoch validation; 2 processes, each resumed "
                           "from the last one's checkpoint: 1 h 0 min to step 500 on CPU A, then 30 min 0 s to step "
                           "900 on CPU B) in bf16 on CPU B")
    # a checkpoint without the record (an older llmclf): the time is the resumed process's only, and it says so
    [line, _] = training_lines({**base, "train_segments": None, "eval_each_epoch": True})
    assert "(5,400 s, per-epoch validation included; resumed from a checkpoint: the resumed part only)" in line
