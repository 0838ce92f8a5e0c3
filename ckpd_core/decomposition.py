"""Split a linear layer into a frozen knowledge-holding part and a trainable adapter.

For ``y = W x + b`` with input second-moment ``C = E[x x^T]``, CKPD takes the SVD of ``W C_d``
(``C_d = C + lambda I``) and turns its *last* ``rank`` directions into an adapter ``A B`` while the
rest stays frozen as ``W_res = W - A B``. The other variants the ablations compare (plain SVD,
activation-scaled SVD, PiSSA, LoRA, full fine-tuning, frozen) go through the same function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import gram
from .errors import CalibrationError, ConfigError

PEFT_MODES = ("ckpd", "svd", "asvd", "pissa", "lora", "full", "frozen")
# Modes whose adapter comes out of the SVD of the weighted matrix, and which end of the spectrum.
_LAST_DIRECTIONS = ("ckpd", "svd", "asvd")
_FIRST_DIRECTIONS = ("pissa",)
_ACT_SCALE_EPS = 1e-6
_MAX_DAMPING_DOUBLINGS = 40
_MIN_RECIPROCAL_CONDITION = 1e-12
# Cholesky-QR is used when eps * cond^2 of the factored matrix stays below this (cond <~ 1e4 in float64).
_CHOLESKY_QR_TOLERANCE = 1e-8


def adapter_sensitivity_ratio(singular_values: torch.Tensor | Sequence[float], rank: int) -> float:
    """Sum of the smallest ``rank`` singular values over the sum of all of them."""
    s = torch.as_tensor(singular_values, dtype=torch.float64).flatten()
    if not 1 <= rank <= s.numel():
        raise ConfigError(f"rank={rank} is outside 1..{s.numel()} (the number of singular values)")
    s = torch.sort(s, descending=True).values
    total = s.sum()
    if total <= 0:
        return 0.0
    return float(s[-rank:].sum() / total)


def select_layers(
    asr_by_layer: Mapping[str, float], *, threshold: float | None = None, top_n: int | None = None
) -> list[str]:
    """Layers to adapt, lowest ASR first: ASR <= threshold, the ``top_n`` lowest, or all of them."""
    if threshold is not None and top_n is not None:
        raise ConfigError("asr_threshold and top_n are both set: choose one way of selecting layers")
    ordered = sorted(asr_by_layer, key=lambda name: (asr_by_layer[name], name))
    if threshold is not None:
        if not 0 < threshold <= 1:
            raise ConfigError(f"asr_threshold={threshold} must lie in (0, 1]")
        return [name for name in ordered if asr_by_layer[name] <= threshold]
    if top_n is not None:
        if top_n < 1:
            raise ConfigError(f"top_n={top_n} must be at least 1")
        return ordered[:top_n]
    return ordered


def check_rank(rank: int, layers: Mapping[str, nn.Linear], rank_text: str | None = None) -> None:
    """Raise ConfigError if ``rank`` exceeds a layer's smaller side (no rank-r split exists there);
    ``rank_text`` is how the message names the rank (default ``rank=<rank>``)."""
    for name, layer in layers.items():
        limit = min(layer.in_features, layer.out_features)
        if rank > limit:
            raise ConfigError(
                f"{rank_text or f'rank={rank}'} is larger than layer {name} ({layer.out_features}x"
                f"{layer.in_features}) allows: use rank <= {limit}"
            )


def layers_of_last_blocks(names: Sequence[str], blocks: int) -> list[str]:
    """The layers among ``names`` in the last ``blocks`` blocks (module names ``...blocks.<i>....``):
    a fixed set adapted without ASR selection, as the official miniImageNet sessions adapt the six
    candidate layers of blocks 10 and 11."""
    index = {name: int(m.group(1)) for name in names if (m := re.search(r"(?:^|\.)blocks\.(\d+)\.", name))}
    if not index:
        raise ConfigError(
            "fixed_last_blocks needs candidate layers named blocks.<i>.... (a ViT); none of "
            f"{', '.join(names[:3])} is: select layers with top_n or asr_threshold instead"
        )
    last = set(sorted(set(index.values()))[-blocks:])
    return [name for name in names if index.get(name) in last]


def damped_covariance(covariance: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``C + lambda I`` and its Cholesky factor, ``lambda = damping * mean(diag C)``.

    The damping is doubled only while the factorisation fails or is too ill-conditioned for float64
    solves to be accurate, so a rank-deficient ``C`` (fewer calibration vectors than inputs) works.
    """
    c = covariance.detach().to(torch.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise CalibrationError(f"covariance must be a square matrix, got shape {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise CalibrationError("covariance contains NaN or Inf: check the calibration inputs")
    c = (c + c.T).mul_(0.5)
    mean_diag = float(c.diagonal().mean())
    lam = damping * mean_diag if mean_diag > 0 else max(damping, 1e-12)
    for _ in range(_MAX_DAMPING_DOUBLINGS):
        c_d = c.clone()
        c_d.diagonal().add_(lam)
        chol, info = torch.linalg.cholesky_ex(c_d)
        if int(info) == 0:
            diag = chol.diagonal()
            if float((diag.min() / diag.max()) ** 2) >= _MIN_RECIPROCAL_CONDITION:
                return c_d, chol
        lam *= 2.0
    raise CalibrationError("covariance could not be factorised even with heavy damping")


def cholesky_qr_factor(tall: torch.Tensor, iterations: int = 8) -> torch.Tensor | None:
    """Upper-triangular ``R`` with ``R^T R = tall^T tall``, or None where Cholesky-QR would be inaccurate.

    ``tall @ R^-1`` is orthonormal up to about ``eps * cond(tall)^2``, so ``R`` is returned only when a
    power-iteration estimate of that (``||R||_F^2 / sigma_min(R)^2``, at most a few triangular solves)
    stays below 1e-8; otherwise the caller falls back to Householder QR.
    """
    if tall.dtype != torch.float64:
        return None
    r, info = torch.linalg.cholesky_ex(gram(tall), upper=True)
    if int(info) != 0:
        return None
    n = r.shape[0]
    probes = torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=r.dtype).to(r.device)
    for _ in range(iterations):  # power iteration on (R^T R)^-1 for 1 / sigma_min(R)^2
        probes = probes / probes.norm(dim=0)
        lower = torch.linalg.solve_triangular(r.mT, probes, upper=False)
        probes = torch.linalg.solve_triangular(r, lower, upper=True)
    cond_sq = float(r.square().sum() * probes.norm(dim=0).max())
    if not math.isfinite(cond_sq) or torch.finfo(r.dtype).eps * cond_sq > _CHOLESKY_QR_TOLERANCE:
        return None
    return r


def singular_directions(
    matrix: torch.Tensor, idx: slice, right: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of ``matrix @ right`` (``right`` square, or absent): all singular values (descending) and
    only the singular vectors ``idx`` selects, ``(U[:, idx], s, Vh[idx])``.

    A product at least twice as tall as wide (or wide as tall) is first reduced to its square factor
    ``R`` (Cholesky-QR where that is accurate, Householder QR otherwise), whose SVD is cheap, and only
    the selected vectors are mapped back: the full ``m x n`` factor a plain SVD forms (3x the time for
    a 768x3072 layer) is never built. A tall ``matrix`` is factored before ``right`` is applied, so
    the tall product is never formed either.
    """
    m, n = matrix.shape
    if max(m, n) < 2 * min(m, n):
        u, s, vh = torch.linalg.svd(matrix if right is None else matrix @ right, full_matrices=False)
        return u[:, idx], s, vh[idx]
    tall = m >= n
    factored = matrix if tall or right is None else matrix @ right
    factored = factored if tall else factored.T
    k = factored.shape[1]
    r = cholesky_qr_factor(factored)
    reflectors = tau = None
    if r is None:
        reflectors, tau = torch.geqrf(factored)
        r = reflectors[:k].triu()
    core = r @ right if tall and right is not None else r
    u_r, s, vh_r = torch.linalg.svd(core)
    chosen = u_r[:, idx]
    if reflectors is None:  # Q = factored R^-1
        mapped = factored @ torch.linalg.solve_triangular(r, chosen, upper=True)
    else:
        mapped = torch.zeros(factored.shape[0], chosen.shape[1], dtype=chosen.dtype, device=chosen.device)
        mapped[:k] = chosen
        mapped = torch.ormqr(reflectors, tau, mapped)
    if tall:
        return mapped, s, vh_r[idx]
    return vh_r[idx].T, s, mapped.T


class DecomposedLinear(nn.Module):
    """``y = W_res x + scale * A (B x) + b`` with ``W_res`` frozen and only the adapter trainable."""

    def __init__(
        self,
        weight_res: torch.Tensor,
        bias: torch.Tensor | None,
        adapter_a: torch.Tensor | None,
        adapter_b: torch.Tensor | None,
        *,
        mode: str,
        rank: int,
        singular_values: torch.Tensor,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.rank = rank
        self.scale = scale
        self.out_features, self.in_features = weight_res.shape
        self.weight_res = nn.Parameter(weight_res)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.adapter_a = None if adapter_a is None else nn.Parameter(adapter_a)
        self.adapter_b = None if adapter_b is None else nn.Parameter(adapter_b)
        self.register_buffer("singular_values", singular_values, persistent=False)
        self.unfreeze_adapter()

    def unfreeze_adapter(self) -> None:
        """Make exactly the parameters this mode trains require gradients (and freeze the rest)."""
        self.weight_res.requires_grad_(self.mode == "full")
        if self.bias is not None:
            self.bias.requires_grad_(self.mode != "frozen")
        for adapter in (self.adapter_a, self.adapter_b):
            if adapter is not None:
                adapter.requires_grad_(True)

    @property
    def asr(self) -> float:
        """Adapter Sensitivity Ratio of this layer at its rank."""
        return adapter_sensitivity_ratio(self.singular_values, self.rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_res, self.bias)
        if self.adapter_a is not None:
            y = y + self.scale * F.linear(F.linear(x, self.adapter_b), self.adapter_a)
        return y

    def merged_weight(self) -> torch.Tensor:
        """``W_res + scale * A B`` computed in float64 and returned in the layer's dtype."""
        w = self.weight_res.detach().to(torch.float64)
        if self.adapter_a is not None:
            a = self.adapter_a.detach().to(torch.float64)
            b = self.adapter_b.detach().to(torch.float64)
            w = w + self.scale * (a @ b)
        return w.to(self.weight_res.dtype)

    def merge(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function, with no extra parameters."""
        w = self.weight_res
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(self.merged_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.requires_grad_(False)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, mode={self.mode}, rank={self.rank}"


def decompose_linear(
    linear: nn.Linear,
    *,
    rank: int,
    mode: str = "ckpd",
    covariance: torch.Tensor | None = None,
    act_scale: torch.Tensor | None = None,
    damping: float = 0.01,
    lora_alpha: float | None = None,
) -> DecomposedLinear:
    """Decompose ``linear`` for ``mode``; see the module docstring for the variants.

    ``covariance`` (n x n input second moment) is required for ``ckpd`` and used, when given, by
    ``pissa``/``lora``/``full``/``frozen`` so that their spectrum (and so their ASR) is the same as
    CKPD's. ``act_scale`` (per-input mean |x|) is required for ``asvd``. ``lora_alpha`` defaults to
    ``rank`` (adapter scale 1).
    """
    if mode not in PEFT_MODES:
        raise ConfigError(f"peft_mode={mode!r} is unknown; choose one of {', '.join(PEFT_MODES)}")
    if not isinstance(linear, nn.Linear):
        raise ConfigError(f"decompose_linear needs an nn.Linear, got {type(linear).__name__}")
    weight = linear.weight.detach()
    m, n = weight.shape
    k = min(m, n)
    if not isinstance(rank, int) or not 1 <= rank <= k:
        raise ConfigError(f"rank={rank} is impossible for a {m}x{n} layer: use 1..{k}")
    if mode == "ckpd" and covariance is None:
        raise ConfigError("peft_mode='ckpd' needs the input covariance of the layer")
    if mode == "asvd" and act_scale is None:
        raise ConfigError("peft_mode='asvd' needs the per-input activation scale of the layer")
    if damping <= 0:
        raise ConfigError(f"damping={damping} must be positive")

    w64 = weight.to(torch.float64)
    left, right = w64, None  # the SVD is of left @ right
    if mode == "asvd":
        scale_vec = act_scale.detach().to(torch.float64, copy=True).abs() + _ACT_SCALE_EPS
        left = w64 * scale_vec

        def unweight(rows: torch.Tensor) -> torch.Tensor:
            return rows / scale_vec

    elif covariance is not None and mode != "svd":
        right, chol = damped_covariance(covariance.to(weight.device), damping)

        def unweight(rows: torch.Tensor) -> torch.Tensor:
            return torch.cholesky_solve(rows.T, chol).T

    else:

        def unweight(rows: torch.Tensor) -> torch.Tensor:
            return rows

    bias = None if linear.bias is None else linear.bias.detach().clone()
    dtype = weight.dtype
    adapter_a = adapter_b = None
    residual = w64
    scale = 1.0
    if mode in _LAST_DIRECTIONS or mode in _FIRST_DIRECTIONS:
        idx = slice(k - rank, k) if mode in _LAST_DIRECTIONS else slice(0, rank)
        u_idx, s, vh_idx = singular_directions(left, idx, right)
        root = s[idx].sqrt()
        a64 = u_idx * root
        b64 = unweight(root[:, None] * vh_idx)
        residual = torch.addmm(w64, a64, b64, alpha=-1)
        adapter_a, adapter_b = a64.to(dtype), b64.to(dtype)
    else:
        s = torch.linalg.svdvals(left if right is None else left @ right)
    if mode == "lora":
        adapter_a = torch.zeros(m, rank, dtype=dtype, device=weight.device)
        adapter_b = torch.empty(rank, n, dtype=dtype, device=weight.device)
        nn.init.kaiming_uniform_(adapter_b, a=math.sqrt(5))
        scale = (rank if lora_alpha is None else lora_alpha) / rank
    return DecomposedLinear(
        residual.to(dtype),
        bias,
        adapter_a,
        adapter_b,
        mode=mode,
        rank=rank,
        singular_values=s,
        scale=scale,
    )


def trainable_parameters(modules: Iterable[nn.Module]) -> int:
    """Number of parameter entries that require gradients across ``modules``."""
    return sum(p.numel() for module in modules for p in module.parameters() if p.requires_grad)
