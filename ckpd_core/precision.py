"""Mixed precision for GPU trials: autocast for forward passes, a gradient scaler for fp16.

Only CUDA forward passes are autocast; on a CPU every precision runs in float32. Calibration is
never autocast, and its covariances are accumulated (and decomposed) in float64 regardless.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward-pass context for ``precision`` on ``device`` (a no-op for fp32 or off CUDA)."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA (bf16 has float32's range and needs none); disabled otherwise."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and precision == "fp16")
