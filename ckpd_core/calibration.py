"""Input statistics of linear layers, gathered with forward hooks over calibration batches."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .errors import CalibrationError, ConfigError

STATISTICS = ("covariance", "act_scale")


def find_linear_layers(model: nn.Module, patterns: Sequence[str]) -> dict[str, nn.Linear]:
    """``nn.Linear`` modules of ``model`` whose qualified name matches a glob pattern.

    Every pattern must match at least one linear layer, so a typo fails loudly instead of
    silently adapting nothing.
    """
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    found: dict[str, nn.Linear] = {}
    for pattern in patterns:
        hits = [name for name in linears if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            examples = ", ".join(list(linears)[:6])
            raise ConfigError(
                f"layer pattern {pattern!r} matches no linear layer of the backbone; "
                f"names look like: {examples}"
            )
        found.update((name, linears[name]) for name in hits)
    return dict(sorted(found.items(), key=lambda item: list(linears).index(item[0])))


class _Accumulator:
    """Running float64 sum of X^T X (or of |X|) for one layer."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.total: torch.Tensor | None = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0].detach()
        x = x.reshape(-1, x.shape[-1])
        part = gram(x) if self.kind == "covariance" else x.abs().sum(dim=0)
        # A NaN or Inf anywhere in column j of x reaches diag(X^T X)[j] (and sum |x|[j]), so checking
        # the small result spares a pass over the activations.
        if not torch.isfinite(part.diagonal() if self.kind == "covariance" else part).all():
            raise CalibrationError(
                f"NaN or Inf in the inputs of layer {self.name!r} during calibration: "
                "the model has diverged; lower the learning rate or check the data"
            )
        part = part.to(torch.float64)
        self.total = part if self.total is None else self.total.add_(part)
        self.count += x.shape[0]

    def result(self) -> torch.Tensor:
        if self.total is None or self.count == 0:
            raise CalibrationError(f"layer {self.name!r} saw no calibration inputs")
        return self.total / self.count


def gram(x: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """X^T X of the rows of ``x``, computing only the blocks on and above the diagonal (5/8 of the
    multiply-adds with 4 blocks) and mirroring the rest."""
    d = x.shape[1]
    step = -(-d // blocks)
    out = torch.empty(d, d, dtype=x.dtype, device=x.device)
    for start in range(0, d, step):
        stop = start + step
        out[start:stop, start:] = x[:, start:stop].T @ x[:, start:]
        out[stop:, start:stop] = out[start:stop, stop:].T
    return out


@torch.no_grad()
def collect_statistics(
    model: nn.Module,
    layers: dict[str, nn.Linear],
    batches: Iterable[torch.Tensor],
    *,
    kind: str = "covariance",
    forward: Callable[[torch.Tensor], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-layer mean of x x^T (``covariance``) or of |x| (``act_scale``) over all input rows.

    Each batch's product is computed in the activations' dtype and added into a float64 total.
    """
    if kind not in STATISTICS:
        raise ConfigError(f"statistic {kind!r} is unknown; choose one of {STATISTICS}")
    accumulators = {name: _Accumulator(name, kind) for name in layers}
    handles = [layer.register_forward_hook(accumulators[name]) for name, layer in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            (forward or model)(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: acc.result() for name, acc in accumulators.items()}
