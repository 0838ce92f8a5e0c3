"""CKPD-FSCIL: covariance-guided knowledge-preserving decomposition for few-shot class-incremental learning.

Pure PyTorch; one trial runs from Python with ``run_trial(TrialConfig(...))``.
"""

from .calibration import collect_statistics, find_linear_layers
from .config import TrialConfig
from .data import BaseImageSet, Benchmark, ImageSet, build_benchmark
from .decomposition import (
    PEFT_MODES,
    DecomposedLinear,
    adapter_sensitivity_ratio,
    decompose_linear,
    select_layers,
)
from .errors import CalibrationError, CKPDError, ConfigError, DataError
from .metrics import SESSION_METRICS, TRIAL_METRICS, accuracy_breakdown, trial_summary
from .provenance import code_digest
from .replay import ReplayMemory
from .trial import TrialResult, load_base_checkpoint, run_trial, save_base_checkpoint, train_base_session

__version__ = "0.4.0"

__all__ = [
    "PEFT_MODES",
    "SESSION_METRICS",
    "TRIAL_METRICS",
    "BaseImageSet",
    "Benchmark",
    "CKPDError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "DecomposedLinear",
    "ImageSet",
    "ReplayMemory",
    "TrialConfig",
    "TrialResult",
    "accuracy_breakdown",
    "adapter_sensitivity_ratio",
    "build_benchmark",
    "code_digest",
    "collect_statistics",
    "decompose_linear",
    "find_linear_layers",
    "load_base_checkpoint",
    "run_trial",
    "save_base_checkpoint",
    "select_layers",
    "train_base_session",
    "trial_summary",
]
