"""Mamba's selective scan (S6): mamba-ssm's CUDA kernel when it can run, else a chunked PyTorch scan.

Both compute, per channel d (in group g) and state n, from a zero state:
``h_t = exp(delta_t A_dn) h_{t-1} + delta_t B_gnt u_t``, ``y_t = sum_n h_t C_gnt + D_d u_t``, then
``y * silu(z)``; ``delta`` gets ``delta_bias`` added and, with ``delta_softplus``, a softplus first.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)
BACKENDS = ("auto", "mamba_ssm", "pytorch")
# By default the PyTorch scan recomputes chunks in backward only when keeping every step's state for
# backward would take more than this; below it, recomputation costs time (about 30% on CPU) for little.
RECOMPUTE_ABOVE_BYTES = 64 * 2**20
_announced: set[str] = set()


@functools.cache
def _cuda_kernel() -> tuple[Callable | None, str]:
    """mamba-ssm's ``selective_scan_fn`` (and ""), or None and the reason it cannot be used."""
    try:
        from mamba_ssm.ops import selective_scan_interface as interface
    except Exception as exc:  # a broken build fails in many ways: missing extension, ABI, transformers
        return None, f"mamba_ssm is not importable ({type(exc).__name__}: {exc})"
    if getattr(interface, "selective_scan_cuda", None) is None:  # newer builds make the kernel opt-in
        return None, "mamba_ssm is installed without its CUDA selective-scan extension"
    return interface.selective_scan_fn, ""


def scan_backend(device: torch.device | str | None = None) -> str:
    """``"mamba_ssm"`` if ``device`` (default: CUDA if present) gets the CUDA kernel, else ``"pytorch"``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda" and _cuda_kernel()[0] is not None:
        return "mamba_ssm"
    return "pytorch"


def _announce(backend: str, why: str) -> None:
    if backend not in _announced:
        _announced.add(backend)
        log.info("selective scan backend: %s (%s)", backend, why)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan with mamba-ssm's ``selective_scan_fn`` semantics.

    Shapes: ``u, delta, z`` (batch, channels, L); ``A`` (channels, d_state); ``B, C`` (batch, d_state, L)
    or grouped (batch, groups, d_state, L), channel d using group ``d // (channels / groups)``;
    ``D, delta_bias`` (channels,). Returns the output in ``u``'s dtype and, with ``return_last_state``,
    the final state (batch, channels, d_state). ``chunk_size`` (PyTorch backend only): steps per
    recomputed chunk; ``>= L`` scans in one piece, keeping every step for backward; default: one piece
    when all states fit in ``RECOMPUTE_ABOVE_BYTES``, else about sqrt(L) steps (least memory).
    ``backend``: ``auto`` (the CUDA kernel for CUDA tensors when mamba_ssm imports), ``mamba_ssm``,
    ``pytorch``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
    chosen = scan_backend(u.device) if backend == "auto" else backend
    if chosen == "mamba_ssm":
        kernel, why_not = _cuda_kernel()
        if kernel is None:
            raise RuntimeError(f"backend='mamba_ssm' cannot run: {why_not}")
        _announce("mamba_ssm", "mamba-ssm CUDA kernel")
        return kernel(
            u.contiguous(),
            delta.contiguous(),
            A.contiguous(),
            B.contiguous(),
            C.contiguous(),
            D,
            None if z is None else z.contiguous(),
            delta_bias,
            delta_softplus,
            return_last_state,
        )
    if backend == "pytorch":
        why = "requested"
    else:
        why = _cuda_kernel()[1] if u.device.type == "cuda" else f"tensors on {u.device.type}"
    _announce("pytorch", f"chunked PyTorch scan; {why}")
    # like the kernel, the recurrence runs in float32 (or wider) even under autocast
    with torch.autocast(u.device.type, enabled=False):
        return _torch_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size)


def _torch_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    return_last_state: bool,
    chunk_size: int | None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scan chunk by chunk; under autograd each chunk is recomputed in backward (chunk-start states kept).

    Memory for backward is about (L / chunk) states plus two per step of one chunk, instead of two per
    step of the whole sequence (2x the (batch, channels, L, d_state) tensor) without recomputation.
    """
    batch, channels, length = u.shape
    B, C = _grouped(B, "B", u.shape), _grouped(C, "C", u.shape)
    groups, d_state = B.shape[1], A.shape[1]
    if channels % groups or C.shape[1] != groups or A.shape[0] != channels:
        raise ValueError(
            f"selective_scan: {channels} channels, A {tuple(A.shape)}, B {tuple(B.shape)} and "
            f"C {tuple(C.shape)} disagree (channels must split evenly over the groups of B and C)"
        )
    dtype = torch.promote_types(u.dtype, torch.float32)  # like the kernel: at least float32 inside
    x, delta = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # Time-leading views with channels split as (groups, per group): a chunk is a slice, a step an unbind.
    grouped = (batch, groups, channels // groups, length)
    steps_delta = delta.reshape(grouped).permute(3, 0, 1, 2)
    steps_du = (delta * x).reshape(grouped).permute(3, 0, 1, 2)
    steps_b = B.to(dtype).permute(3, 0, 1, 2).unsqueeze(3)  # (L, batch, groups, 1, d_state)
    steps_c = C.to(dtype).permute(3, 0, 1, 2).unsqueeze(4)  # (L, batch, groups, d_state, 1)
    rates = A.to(dtype).reshape(groups, channels // groups, d_state)
    state = x.new_zeros(batch, groups, channels // groups, d_state)
    step = chunk_size if chunk_size is not None else _auto_chunk(state, length)
    if step < 1:
        raise ValueError(f"selective_scan: chunk_size={chunk_size} must be >= 1")
    recompute = step < length and torch.is_grad_enabled()
    outputs = []
    for start in range(0, length, step):
        part = slice(start, start + step)
        args = (state, steps_delta[part], steps_du[part], rates, steps_b[part], steps_c[part])
        y, state = checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args)
        outputs.append(y)
    y = torch.cat(outputs).permute(1, 2, 3, 0).reshape(batch, channels, length)
    if D is not None:
        y = y + x * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(u.dtype)
    return (out, state.reshape(batch, channels, d_state)) if return_last_state else out


def _auto_chunk(state: torch.Tensor, length: int) -> int:
    """One piece when every step's state fits in ``RECOMPUTE_ABOVE_BYTES``, else sqrt(L) steps."""
    if state.numel() * state.element_size() * length <= RECOMPUTE_ABOVE_BYTES:
        return length
    return max(1, math.isqrt(length))


def _grouped(t: torch.Tensor, name: str, u_shape: torch.Size) -> torch.Tensor:
    """B or C as (batch, groups, d_state, L): a 3-D (batch, d_state, L) tensor is one group."""
    t = t.unsqueeze(1) if t.dim() == 3 else t
    if t.dim() != 4 or t.shape[0] != u_shape[0] or t.shape[-1] != u_shape[-1]:
        raise ValueError(
            f"selective_scan: {name} has shape {tuple(t.shape)}; expected (batch, d_state, L) or "
            f"(batch, groups, d_state, L) with batch {u_shape[0]} and L {u_shape[-1]}"
        )
    return t


def _scan_chunk(
    state: torch.Tensor,
    delta: torch.Tensor,
    du: torch.Tensor,
    rates: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence over one chunk of time-leading steps: outputs (T, batch, groups, per_group), state.

    Decay and input terms are formed step by step, so backward keeps two states per step and reduces
    their gradients to the (batch, channels) / (channels, d_state) inputs at once, never stacking them.
    """
    outputs = []
    for d_t, du_t, b_t, c_t in zip(delta.unbind(0), du.unbind(0), B.unbind(0), C.unbind(0), strict=True):
        state = torch.exp(d_t.unsqueeze(-1) * rates) * state + du_t.unsqueeze(-1) * b_t
        outputs.append(state @ c_t)
    return torch.stack(outputs).squeeze(-1), state
