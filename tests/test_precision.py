"""Mixed precision: autocast and loss scaling only on CUDA; CPU runs stay float32. GPU tests skip on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ckpd_core import ConfigError, TrialConfig, run_trial
from ckpd_core.precision import PRECISIONS, autocast, grad_scaler

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cpu_forward_passes_stay_float32(precision):
    layer = nn.Linear(4, 3)
    with autocast(torch.device("cpu"), precision):
        assert layer(torch.randn(2, 4)).dtype == torch.float32
    assert not grad_scaler(torch.device("cpu"), precision).is_enabled()


def test_precision_is_validated_and_part_of_the_base_key():
    assert TrialConfig().precision == "fp32"
    assert TrialConfig(precision="bf16").base_session_key() != TrialConfig().base_session_key()
    with pytest.raises(ConfigError, match="precision='fp8'"):
        TrialConfig(precision="fp8")


@needs_cuda
@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_cuda_autocast_and_scaler(precision, dtype):
    layer = nn.Linear(4, 3).to(CUDA)
    with autocast(CUDA, precision):
        assert layer(torch.randn(2, 4, device=CUDA)).dtype == dtype
    assert grad_scaler(CUDA, precision).is_enabled() == (precision == "fp16")


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trial_runs_on_cuda(tiny_config, precision):
    result = run_trial(tiny_config.replace(device="cuda", precision=precision))
    assert [row["session"] for row in result.sessions] == [0, 1, 2]
    assert all(0 <= row["acc_all"] <= 1 for row in result.sessions)
    assert result.sessions[0]["acc_base"] > 0.3  # it learned the base classes despite half precision
