"""CKPD-FSCIL: covariance-guided knowledge-preserving decomposition for few-shot class-incremental learning.

Pure PyTorch; one trial runs from Python with ``run_trial(TrialConfig(...))``. The names below load
their module on first use, so ``ckpd_core.errors`` (and a results reader that needs only it) does not
pay for importing torch.
"""

import lazy_loader

__version__ = "0.5.0"

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "calibration": ["collect_statistics", "find_linear_layers"],
        "config": ["TrialConfig"],
        "data": ["BaseImageSet", "Benchmark", "ImageSet", "build_benchmark"],
        "decomposition": [
            "DecomposedLinear",
            "PEFT_MODES",
            "adapter_sensitivity_ratio",
            "check_rank",
            "decompose_linear",
            "select_layers",
        ],
        "errors": ["CKPDError", "CalibrationError", "ConfigError", "DataError"],
        "metrics": ["SESSION_METRICS", "TRIAL_METRICS", "accuracy_breakdown", "trial_summary"],
        "provenance": ["code_digest"],
        "replay": ["ReplayMemory"],
        "trial": [
            "SessionLoop",
            "TrialResult",
            "load_base_checkpoint",
            "run_trial",
            "save_base_checkpoint",
            "train_base_session",
        ],
    },
)
