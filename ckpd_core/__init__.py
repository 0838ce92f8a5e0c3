"""CKPD-FSCIL: covariance-guided knowledge-preserving decomposition for few-shot class-incremental learning.

Pure PyTorch; one trial runs from Python with ``run_trial(TrialConfig(...))``. The names below load
their module on first use, so ``ckpd_core.errors`` (and a results reader that needs only it) does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"

# Every public name and the submodule that defines it.
_HOMES = {
    "collect_statistics": "calibration",
    "find_linear_layers": "calibration",
    "TrialConfig": "config",
    "BaseImageSet": "data",
    "Benchmark": "data",
    "ImageSet": "data",
    "build_benchmark": "data",
    "PEFT_MODES": "decomposition",
    "DecomposedLinear": "decomposition",
    "adapter_sensitivity_ratio": "decomposition",
    "decompose_linear": "decomposition",
    "select_layers": "decomposition",
    "CKPDError": "errors",
    "CalibrationError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "SESSION_METRICS": "metrics",
    "TRIAL_METRICS": "metrics",
    "accuracy_breakdown": "metrics",
    "trial_summary": "metrics",
    "code_digest": "provenance",
    "ReplayMemory": "replay",
    "SessionLoop": "trial",
    "TrialResult": "trial",
    "load_base_checkpoint": "trial",
    "run_trial": "trial",
    "save_base_checkpoint": "trial",
    "train_base_session": "trial",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
