"""The selective scan against a plain step-by-step recurrence, and against mamba-ssm's kernel on a GPU."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from ckpd_core.models import selective_scan as scan_module
from ckpd_core.models.selective_scan import scan_backend, selective_scan

F64 = torch.float64


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = <h_t, C_t> + D u_t;  y * silu(z)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = torch.log1p(torch.exp(delta))
    batch, channels, length = u.shape
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    per_group = channels // B.shape[1]
    # (batch, channels, d_state, L): channel d reads group d // per_group
    B, C = B.repeat_interleave(per_group, dim=1), C.repeat_interleave(per_group, dim=1)
    h = torch.zeros(batch, channels, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[..., t] * u[:, :, t, None]
        y = (h * C[..., t]).sum(-1)
        if D is not None:
            y = y + D * u[:, :, t]
        ys.append(y)
    y = torch.stack(ys, dim=-1)
    if z is not None:
        y = y * z * torch.sigmoid(z)
    return y, h


def make_inputs(batch, channels, length, d_state, groups, *, gate, bias, seed=0, dtype=F64):
    """Random inputs; ``groups=None`` gives 3-D B and C."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).requires_grad_()

    bc_shape = (batch, d_state, length) if groups is None else (batch, groups, d_state, length)
    inputs = dict(
        u=rand(batch, channels, length),
        delta=rand(batch, channels, length, scale=0.5),
        A=(-torch.rand(channels, d_state, generator=gen, dtype=dtype) * 3).requires_grad_(),
        B=rand(*bc_shape),
        C=rand(*bc_shape),
        D=rand(channels),
    )
    if gate:
        inputs["z"] = rand(batch, channels, length)
    if bias:
        inputs["delta_bias"] = rand(channels, scale=0.5)
    return inputs


def outputs_and_grads(fn, inputs, **kwargs):
    """The output, the last state, and the gradients of a fixed random functional of both."""
    y, last = fn(**inputs, **kwargs)
    gen = torch.Generator().manual_seed(99)
    probe = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)).sum()
    probe = probe + (last * torch.randn(last.shape, generator=gen, dtype=last.dtype).to(last.device)).sum()
    grads = torch.autograd.grad(probe, list(inputs.values()))
    return y, last, dict(zip(inputs, grads, strict=True))


CASES = [
    # batch, channels, length, d_state, groups, gate, bias + softplus, chunk_size
    (2, 3, 7, 4, None, False, False, 3),
    (1, 4, 9, 3, 2, True, True, 4),
    (3, 6, 8, 5, 3, True, False, 8),
    (2, 8, 10, 2, 4, False, True, 1),
    (2, 4, 5, 6, 1, True, True, None),
    (1, 6, 12, 3, 2, True, True, 5),
]


@pytest.mark.parametrize("batch,channels,length,d_state,groups,gate,bias,chunk", CASES)
def test_matches_the_plain_recurrence_in_values_and_gradients(
    batch, channels, length, d_state, groups, gate, bias, chunk
):
    inputs = make_inputs(batch, channels, length, d_state, groups, gate=gate, bias=bias)
    y, last, grads = outputs_and_grads(
        selective_scan, inputs, delta_softplus=bias, return_last_state=True, chunk_size=chunk
    )
    y_ref, last_ref, grads_ref = outputs_and_grads(naive_scan, inputs, delta_softplus=bias)
    assert y.shape == (batch, channels, length) and last.shape == (batch, channels, d_state)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-12)
    assert set(grads) == set(inputs)
    for name in inputs:
        torch.testing.assert_close(grads[name], grads_ref[name], rtol=1e-9, atol=1e-11, msg=name)


def test_chunk_size_does_not_change_values_or_gradients():
    inputs = make_inputs(2, 6, 11, 4, 3, gate=True, bias=True, seed=3)
    whole = outputs_and_grads(
        selective_scan, inputs, delta_softplus=True, return_last_state=True, chunk_size=11
    )
    for chunk in (1, 2, 3, 4, 10, 64, None):
        y, last, grads = outputs_and_grads(
            selective_scan, inputs, delta_softplus=True, return_last_state=True, chunk_size=chunk
        )
        torch.testing.assert_close(y, whole[0], rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(last, whole[1], rtol=1e-12, atol=1e-13)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, whole[2][name], rtol=1e-11, atol=1e-12, msg=f"{name} {chunk}")


def saved_bytes(**inputs) -> int:
    """Bytes of the distinct storages, other than the inputs', that autograd keeps for backward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan(**inputs)
    for t in inputs.values():
        if isinstance(t, torch.Tensor):
            storages.pop(t.untyped_storage().data_ptr(), None)
    return sum(storages.values())


def test_chunked_scan_does_not_keep_every_state_for_backward():
    batch, channels, length, d_state = 2, 32, 64, 64
    inputs = make_inputs(batch, channels, length, d_state, 2, gate=True, bias=True, dtype=torch.float32)
    all_states = batch * channels * length * d_state * 4
    whole = saved_bytes(**inputs, delta_softplus=True, chunk_size=length)
    chunked = saved_bytes(**inputs, delta_softplus=True, chunk_size=8)
    assert whole >= 2 * all_states  # the plain loop keeps every state and every decay factor
    assert chunked < all_states / 4  # one state per chunk and a few (batch, channels, L) tensors


def test_float32_in_float32_out_and_forward_without_autograd():
    inputs = make_inputs(2, 4, 6, 3, 2, gate=True, bias=True, dtype=torch.float32)
    with torch.no_grad():
        y = selective_scan(**inputs, delta_softplus=True, chunk_size=4)
        y64 = selective_scan(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    assert y.dtype == torch.float32 and not y.requires_grad
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)


def test_backend_choice_and_errors(caplog, monkeypatch):
    assert scan_backend("cpu") == "pytorch"
    inputs = make_inputs(1, 2, 3, 2, None, gate=False, bias=False, dtype=torch.float32)
    monkeypatch.setattr(scan_module, "_cuda_kernel", lambda: (None, "mamba_ssm is not importable"))
    with pytest.raises(RuntimeError, match="backend='mamba_ssm' cannot run: mamba_ssm is not importable"):
        selective_scan(**inputs, backend="mamba_ssm")
    with pytest.raises(ValueError, match="backend='triton'"):
        selective_scan(**inputs, backend="triton")
    bad = dict(inputs, B=inputs["B"][:, :, :2])
    with pytest.raises(ValueError, match="B has shape"):
        selective_scan(**bad)
    monkeypatch.setattr(scan_module, "_announced", set())
    with caplog.at_level(logging.INFO, logger=scan_module.__name__):
        selective_scan(**inputs)
        selective_scan(**inputs)
    messages = [r.getMessage() for r in caplog.records if r.name == scan_module.__name__]
    assert len(messages) == 1 and "pytorch" in messages[0]


# --- GPU: the PyTorch scan against mamba-ssm's CUDA kernel (skipped without CUDA and mamba_ssm) -----------


def _kernel_skip_reason() -> str:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (and mamba-ssm: pip install -e '.[mamba]')"
    return scan_module._cuda_kernel()[1]


needs_kernel = pytest.mark.skipif(bool(_kernel_skip_reason()), reason=_kernel_skip_reason() or "ok")

GPU_CASES = {
    # the SS2D call of the neck: 4 direction groups, no gate (paper's CUB neck, batch 2)
    "ss2d": dict(batch=2, channels=4096, length=49, d_state=256, groups=4, gate=False),
    # the 1-D Mamba call: 3-D B/C and a gate
    "mamba": dict(batch=2, channels=512, length=25, d_state=256, groups=None, gate=True),
}


@needs_kernel
@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_pytorch_scan_matches_the_cuda_kernel(case):
    spec = GPU_CASES[case]
    inputs = make_inputs(
        spec["batch"],
        spec["channels"],
        spec["length"],
        spec["d_state"],
        spec["groups"],
        gate=spec["gate"],
        bias=True,
        dtype=torch.float32,
    )
    inputs = {k: v.detach().cuda().requires_grad_() for k, v in inputs.items()}
    results = {
        backend: outputs_and_grads(
            selective_scan, inputs, delta_softplus=True, return_last_state=True, backend=backend
        )
        for backend in ("pytorch", "mamba_ssm")
    }
    (y, last, grads), (y_k, last_k, grads_k) = results["pytorch"], results["mamba_ssm"]
    print(f"\n{case}: max |forward diff| {float((y - y_k).abs().max()):.2e}")
    torch.testing.assert_close(y, y_k, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last, last_k, rtol=6e-4, atol=2e-3)
    for name in inputs:
        diff = float((grads[name] - grads_k[name]).abs().max())
        scale = max(1.0, float(grads_k[name].abs().max()))  # weight gradients sum over batch and time
        print(f"{case}: max |grad {name} diff| {diff:.2e} (largest gradient {scale:.2e})")
        torch.testing.assert_close(grads[name], grads_k[name], rtol=6e-4, atol=2e-3 * scale, msg=name)


@needs_kernel
def test_cuda_kernel_is_faster_than_the_pytorch_scan():
    spec = GPU_CASES["ss2d"]
    inputs = make_inputs(
        16, spec["channels"], spec["length"], spec["d_state"], 4, gate=False, bias=True, dtype=torch.float32
    )
    inputs = {k: v.detach().cuda().requires_grad_() for k, v in inputs.items()}
    seconds = {}
    for backend in ("pytorch", "mamba_ssm"):
        times = []
        for _ in range(4):  # the first is a warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            selective_scan(**inputs, delta_softplus=True, backend=backend).sum().backward()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds[backend] = min(times[1:])
    ratio = seconds["pytorch"] / seconds["mamba_ssm"]
    print(
        f"\nforward+backward: pytorch {seconds['pytorch'] * 1e3:.1f} ms, "
        f"mamba_ssm {seconds['mamba_ssm'] * 1e3:.1f} ms, pytorch / mamba_ssm {ratio:.1f}"
    )
    assert seconds["mamba_ssm"] < seconds["pytorch"]
