"""Which floating-point precision a model runs in: one decision for training and inference.

>>> resolve_precision("fp32", "cpu")
'fp32'

`auto` means bf16 where bfloat16 matmuls are native (CUDA, or a CPU with AMX / AVX512-BF16 units), float32
elsewhere; the LLMCLF_PRECISION environment variable (`fp32`, `bf16` or `auto`) decides `auto` for every
command at once, for deployments that want one precision everywhere (bf16 results move by ~1e-3 with the
batch a text shares, fp32 results do not).
"""

from __future__ import annotations

import os
import platform

from llmclf.errors import UserError

PRECISION_CHOICES = ("auto", "bf16", "fp32")


def native_bf16(device: str = "cpu") -> bool:
    """Whether bfloat16 matmuls are native on this device: CUDA, or a CPU with AMX or AVX512-BF16 (on other
    CPUs oneDNN emulates bfloat16 and it is slower than float32)."""
    import torch

    if str(device).startswith("cuda"):
        return True
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
                or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or torch.backends.cpu.get_cpu_capability() == "AVX512_BF16")


def resolve_precision(setting: str | None, device: str = "cpu") -> str:
    """`bf16` or `fp32`: what `setting` (auto, bf16, fp32; None means auto) comes to on `device`."""
    setting = setting or "auto"
    if setting not in PRECISION_CHOICES:
        raise UserError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {setting!r}.")
    if setting != "auto":
        return setting
    chosen = os.environ.get("LLMCLF_PRECISION", "auto").strip().lower()
    if chosen not in PRECISION_CHOICES:
        raise UserError(f"LLMCLF_PRECISION={chosen!r}: use fp32, bf16 or auto (or unset it).")
    if chosen != "auto":
        return chosen
    return "bf16" if native_bf16(device) else "fp32"


def default_device() -> str:
    """cuda when torch sees a GPU, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_summary(device: str) -> str:
    """The hardware a run used, for metrics.json and the model card, e.g. "cpu: AMD EPYC (AVX2, no native bf16),
    2 threads" or "cuda: NVIDIA H200": a training time means little without it."""
    import torch

    if str(device).startswith("cuda"):
        count = torch.cuda.device_count()
        return f"cuda: {torch.cuda.get_device_name(0)}" + (f" x{count}" if count > 1 else "")
    bf16 = "native bf16" if native_bf16("cpu") else "no native bf16"
    return (f"cpu: {cpu_model_name()} ({torch.backends.cpu.get_cpu_capability()}, {bf16}), "
            f"{torch.get_num_threads()} threads")


def cpu_model_name() -> str:
    """The CPU's model name as the OS reports it (Linux: /proc/cpuinfo), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
