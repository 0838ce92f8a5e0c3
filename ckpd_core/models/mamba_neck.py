"""Mamba-FSCIL's dual selective-SSM projector: an SS2D base branch, a zero-started new branch for sessions.

Restated from the reference specs (``reference/mamba_spec.md`` section 1, ``ckpd_spec.md`` section 6),
in the 'ss2d' version CKPD uses. Deliberate differences: the four scan orders are undone correctly for
non-square maps, and only the new branch's scan parameters take part in the separation loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .selective_scan import selective_scan

DIRECTIONS = 4  # row-major, reversed row-major, column-major, reversed column-major


@dataclass
class ScanParams:
    """The input-dependent scan parameters of a branch, (batch, directions, rank | d_state, L) each."""

    dt: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor


@dataclass
class NeckOutput:
    """Features for the head plus what the class-sensitive losses need (None without a new branch)."""

    features: torch.Tensor
    gate: torch.Tensor | None
    new_params: ScanParams | None


def scan_orders(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, 4, D, H*W): row-major, reversed row-major, column-major, reversed column-major."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, rows.flip(-1), cols, cols.flip(-1)], dim=1)


def merge_orders(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Undo ``scan_orders`` for each direction and sum them: (B, 4, D, L) -> (B, D, L) in row-major order."""
    rows = y[:, 0] + y[:, 1].flip(-1)
    cols = y[:, 2] + y[:, 3].flip(-1)
    cols = cols.unflatten(-1, (width, height)).transpose(2, 3).flatten(2)
    return rows + cols


def _dt_bias(shape: tuple[int, ...], low: float = 1e-3, high: float = 0.1) -> torch.Tensor:
    """Biases whose softplus is log-uniform in [low, high] (Mamba's time-step initialisation)."""
    dt = torch.exp(torch.rand(shape) * (math.log(high) - math.log(low)) + math.log(low)).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


class SS2D(nn.Module):
    """VMamba-style 2-D selective scan over a (B, H, W, C) map; each scan direction has its own SSM.

    Returns the gated output (B, H, W, C), the gate's pre-activation z and the scan parameters.
    """

    def __init__(self, d_model: int, d_state: int, dt_rank: int, backend: str = "auto") -> None:
        super().__init__()
        self.d_state, self.dt_rank, self.backend = d_state, dt_rank, backend
        self.in_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.conv = nn.Conv2d(d_model, d_model, 3, padding=1, groups=d_model)
        bound = d_model**-0.5  # nn.Linear's default initialisation
        self.x_proj_weight = nn.Parameter(
            torch.empty(DIRECTIONS, dt_rank + 2 * d_state, d_model).uniform_(-bound, bound)
        )
        self.dt_proj_weight = nn.Parameter(
            torch.empty(DIRECTIONS, d_model, dt_rank).uniform_(-(dt_rank**-0.5), dt_rank**-0.5)
        )
        self.dt_proj_bias = nn.Parameter(_dt_bias((DIRECTIONS, d_model)))
        s4d_real = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
        self.A_log = nn.Parameter(s4d_real.repeat(DIRECTIONS * d_model, 1))
        self.D = nn.Parameter(torch.ones(DIRECTIONS * d_model))
        self.out_norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, ScanParams]:
        batch, height, width, channels = x.shape
        length = height * width
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv(x.permute(0, 3, 1, 2)))
        xs = scan_orders(x)  # (B, K, D, L)
        projected = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dt, B, C = projected.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.einsum("bkrl,kdr->bkdl", dt, self.dt_proj_weight)
        y = selective_scan(
            xs.reshape(batch, -1, length),
            delta.reshape(batch, -1, length),
            -torch.exp(self.A_log),
            B,
            C,
            self.D,
            delta_bias=self.dt_proj_bias.flatten(),
            delta_softplus=True,
            backend=self.backend,
        )
        y = merge_orders(y.unflatten(1, (DIRECTIONS, channels)), height, width)
        y = self.out_norm(y.transpose(1, 2)).reshape(batch, height, width, channels)
        return y * F.silu(z), z, ScanParams(dt, B, C)


class MambaBranch(nn.Module):
    """1x1-conv MLP on the map, learnable positional embedding, SS2D, average pool over positions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid_size: tuple[int, int],
        mid_channels: int,
        num_layers: int,
        d_state: int,
        dt_rank: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(num_layers - 1):
            # LayerNorm over channels and positions jointly, as in the reference projector
            layers += [nn.Conv2d(width, mid_channels, 1), nn.LayerNorm([mid_channels, *grid_size])]
            layers.append(nn.LeakyReLU(0.1))
            width = mid_channels
        layers.append(nn.Conv2d(width, out_channels, 1, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.pos_embed = nn.Parameter(torch.empty(1, grid_size[0] * grid_size[1], out_channels))
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        self.ss2d = SS2D(out_channels, d_state, dt_rank)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, ScanParams]:
        tokens = self.mlp(x)
        batch, channels, height, width = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2) + self.pos_embed
        y, gate, params = self.ss2d(tokens.reshape(batch, height, width, channels))
        return y.mean(dim=(1, 2)), gate, params


class MambaNeck(nn.Module):
    """``out = base(map) + residual_proj(pool(map)) [+ new(map)]`` on the backbone's (B, C, H, W) token map.

    ``add_new_branch()`` (before the first incremental session) adds a branch of the same structure
    whose gate projection starts at zero, so the neck's output is unchanged until it trains. With
    ``detach_new_branch`` the new branch sees the map detached (Mamba-FSCIL): it does not train the
    backbone; without (the official CKPD sessions), its gradient reaches the adapters too.
    ``supp_weight`` / ``sep_weight`` weigh the class-sensitive losses (``class_sensitive_loss``); labels
    below ``num_base_classes`` are base classes.
    """

    takes_feature_map = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid_size: tuple[int, int],
        *,
        d_state: int = 16,
        dt_rank: int | None = None,
        mid_channels: int | None = None,
        num_layers: int = 2,
        supp_weight: float = 0.0,
        sep_weight: float = 0.0,
        num_base_classes: int = 0,
        detach_new_branch: bool = True,
    ) -> None:
        super().__init__()
        self.detach_new_branch = detach_new_branch
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self._branch_args = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            grid_size=self.grid_size,
            mid_channels=mid_channels or 2 * in_channels,
            num_layers=num_layers,
            d_state=d_state,
            dt_rank=dt_rank or math.ceil(out_channels / 16),
        )
        if (supp_weight > 0 or sep_weight > 0) and num_base_classes < 1:
            raise ValueError("the class-sensitive losses need num_base_classes >= 1 to tell base from novel")
        self.supp_weight, self.sep_weight, self.num_base_classes = supp_weight, sep_weight, num_base_classes
        self.residual_proj = nn.Linear(in_channels, out_channels, bias=False)
        self.base = MambaBranch(**self._branch_args)
        self.new: MambaBranch | None = None

    def add_new_branch(self) -> MambaBranch:
        """Add the incremental branch; its output is exactly zero until its gate projection trains."""
        if self.new is not None:
            raise RuntimeError("the new branch already exists")
        branch = MambaBranch(**self._branch_args).to(self.residual_proj.weight.device)
        with torch.no_grad():
            branch.ss2d.in_proj.weight[self._branch_args["out_channels"] :].zero_()  # the z half
        self.new = branch
        return branch

    def new_branch_parameters(self) -> list[nn.Parameter]:
        """Parameters of the new branch (none before ``add_new_branch``): trained at the full session lr."""
        return [] if self.new is None else list(self.new.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x).features

    def forward_with_aux(self, x: torch.Tensor) -> NeckOutput:
        if tuple(x.shape[-2:]) != self.grid_size:
            raise ValueError(f"MambaNeck was built for a {self.grid_size} map, got {tuple(x.shape[-2:])}")
        out, _, _ = self.base(x)
        out = out + self.residual_proj(x.mean(dim=(2, 3)))
        if self.new is None:
            return NeckOutput(out, None, None)
        new, gate, params = self.new(x.detach() if self.detach_new_branch else x)
        return NeckOutput(out + new, gate, params)

    def class_sensitive_loss(self, output: NeckOutput, labels: torch.Tensor) -> torch.Tensor:
        """Weighted suppression and separation losses of the new branch (0 before it exists)."""
        loss = output.features.new_zeros(())
        if output.gate is None or output.new_params is None:
            return loss
        is_base = labels < self.num_base_classes
        if self.supp_weight > 0:
            loss = loss + self.supp_weight * suppression_loss(output.gate, is_base)
        if self.sep_weight > 0:
            loss = loss + self.sep_weight * separation_loss(output.new_params, is_base)
        return loss


def suppression_loss(gate: torch.Tensor, is_base: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the new branch's gate pre-activation on base samples over its element count.

    Keeps the new branch silent on base classes (Mamba-FSCIL's ``loss_supp_base``); 0 without base samples.
    """
    chosen = gate[is_base]
    return chosen.norm() / chosen.numel() if chosen.numel() else gate.new_zeros(())


def separation_loss(params: ScanParams, is_base: torch.Tensor) -> torch.Tensor:
    """Sum over dt, B, C of |cos| / 2 between their mean over base and over novel samples.

    The mean is over samples, directions and positions (the reference's ``param_avg_dim='0-1-3'``);
    it pushes base and novel inputs to different scan dynamics. 0 unless both kinds are present.
    """
    loss = params.dt.new_zeros(())
    if bool(is_base.all()) or not bool(is_base.any()):
        return loss
    for p in (params.dt, params.B, params.C):
        base, novel = p[is_base].mean(dim=(0, 1, 3)), p[~is_base].mean(dim=(0, 1, 3))
        loss = loss + F.cosine_similarity(base, novel, dim=0).abs() / 2
    return loss
