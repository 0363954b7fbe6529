"""One precision decision for training and inference (llmclf.precision), and the deprecated --bf16 setting."""

import pytest

from llmclf.config import TrainArgs, resolve_train_args
from llmclf.errors import UserError
from llmclf.precision import resolve_precision


def test_explicit_settings_win_and_auto_follows_the_environment_then_the_hardware(monkeypatch):
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setenv("LLMCLF_PRECISION", "bf16")
    assert resolve_precision("auto", "cpu") == "bf16" and resolve_precision(None, "cpu") == "bf16"
    monkeypatch.delenv("LLMCLF_PRECISION")
    monkeypatch.setattr("llmclf.precision.native_bf16", lambda device: device == "cuda")
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(UserError, match="--precision must be one of auto, bf16, fp32, got 'half'"):
        resolve_precision("half", "cpu")


def test_the_deprecated_bf16_setting_becomes_precision():
    with pytest.warns(DeprecationWarning, match="use precision"):
        args = TrainArgs(bf16=True)
    assert args.precision == "bf16" and args.bf16 is None and "bf16" in args.to_dict()
    assert TrainArgs(bf16=False, precision="fp32").precision == "fp32"
    assert resolve_train_args(overrides={"bf16": False}).precision == "fp32"
    with pytest.raises(UserError, match="contradicts --precision fp32"):
        TrainArgs(bf16=True, precision="fp32")
    with pytest.raises(UserError, match="--precision must be one of auto, bf16, fp32, got 'fp16'"):
        TrainArgs(precision="fp16")
