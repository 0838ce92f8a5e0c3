"""The decomposition's invariants, checked with numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ckpd_core import (
    PEFT_MODES,
    ConfigError,
    DecomposedLinear,
    adapter_sensitivity_ratio,
    decompose_linear,
    select_layers,
)
from ckpd_core.decomposition import check_rank, cholesky_qr_factor, damped_covariance, singular_directions


def make_layer(m: int, n: int, dtype: torch.dtype, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n, m).to(dtype)


def correlated_inputs(rows: int, n: int, seed: int = 1) -> torch.Tensor:
    """Inputs with a decaying spectrum, as real activations have."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(n, n, generator=gen, dtype=torch.float64) * torch.logspace(
        0, -2, n, dtype=torch.float64
    )
    return torch.randn(rows, n, generator=gen, dtype=torch.float64) @ mixing.T


def covariance_of(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x / x.shape[0]


@pytest.mark.parametrize("mode", PEFT_MODES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_reconstruction_at_init(mode, dtype, tol):
    layer = make_layer(40, 24, dtype)
    x = correlated_inputs(200, 24)
    decomposed = decompose_linear(
        layer, rank=6, mode=mode, covariance=covariance_of(x), act_scale=x.abs().mean(0)
    )
    probe = correlated_inputs(32, 24, seed=7).to(dtype)
    with torch.no_grad():
        expected, got = layer(probe), decomposed(probe)
    assert float((got - expected).norm() / expected.norm()) < tol
    merged_weight = decomposed.merged_weight().to(torch.float64)
    original = layer.weight.detach().to(torch.float64)
    rel = (merged_weight - original).norm() / original.norm()
    assert float(rel) < tol


@pytest.mark.parametrize("mode,end", [("ckpd", "last"), ("pissa", "first")])
def test_adapter_takes_last_or_first_directions(mode, end):
    layer = make_layer(30, 20, torch.float64)
    cov = covariance_of(correlated_inputs(100, 20))
    rank = 5
    decomposed = decompose_linear(layer, rank=rank, mode=mode, covariance=cov)
    c_d, _ = damped_covariance(cov, 0.01)
    spectrum = torch.linalg.svdvals(layer.weight.detach() @ c_d)
    expected = spectrum[-rank:].sum() if end == "last" else spectrum[:rank].sum()
    adapter = decomposed.adapter_a.detach() @ decomposed.adapter_b.detach()
    nuclear = torch.linalg.matrix_norm(adapter @ c_d, ord="nuc")
    assert float(abs(nuclear - expected) / expected) < 1e-9
    # the other end of the spectrum differs, so the test can tell the two apart
    other = spectrum[:rank].sum() if end == "last" else spectrum[-rank:].sum()
    assert float(abs(nuclear - other) / expected) > 0.1


def with_condition(rows: int, cols: int, condition: float, seed: int = 3) -> torch.Tensor:
    """A random float64 matrix whose singular values run log-evenly from 1 down to 1/condition."""
    gen = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    left = torch.linalg.qr(torch.randn(rows, k, generator=gen, dtype=torch.float64))[0]
    right = torch.linalg.qr(torch.randn(cols, k, generator=gen, dtype=torch.float64))[0]
    return (left * torch.logspace(0, -math.log10(condition), k, dtype=torch.float64)) @ right.T


@pytest.mark.parametrize("condition,accepted", [(3.0, True), (300.0, True), (1e5, False), (1e9, False)])
def test_cholesky_qr_is_used_only_where_it_is_accurate(condition, accepted):
    tall = with_condition(120, 30, condition)
    r = cholesky_qr_factor(tall)
    assert (r is not None) is accepted
    if accepted:
        q = torch.linalg.solve_triangular(r, tall, upper=True, left=False)  # tall @ R^-1
        assert torch.allclose(q.T @ q, torch.eye(30, dtype=torch.float64), atol=1e-10)
    assert cholesky_qr_factor(tall.float()) is None  # float32 squares its error too far
    singular = tall.clone()
    singular[:, 7] = singular[:, 3]
    assert cholesky_qr_factor(singular) is None


@pytest.mark.parametrize("shape", [(30, 30), (30, 20), (90, 20), (20, 90)])
@pytest.mark.parametrize("idx", [slice(0, 4), slice(15, 20)])
@pytest.mark.parametrize("with_right", [False, True])
@pytest.mark.parametrize("condition", [10.0, 1e6])  # Cholesky-QR, then Householder QR for the tall/wide
def test_singular_directions_match_a_full_svd(shape, idx, with_right, condition):
    matrix = with_condition(*shape, condition)
    right = covariance_of(correlated_inputs(200, shape[1])) if with_right else None
    product = matrix @ right if with_right else matrix
    if max(shape) >= 2 * min(shape) and (shape[0] > shape[1] or right is None):
        factored = matrix if shape[0] > shape[1] else matrix.T  # what gets reduced to a square factor
        assert (cholesky_qr_factor(factored) is not None) is (condition < 1e3)  # both reductions run
    u, s, vh = torch.linalg.svd(product, full_matrices=False)
    u_idx, s_got, vh_idx = singular_directions(matrix, idx, right)
    assert torch.allclose(s_got, s, rtol=1e-9, atol=1e-14 * float(s[0]))
    k = min(shape)
    assert u_idx.shape == (shape[0], len(range(k)[idx])) and vh_idx.shape == (len(range(k)[idx]), shape[1])
    expected = (u[:, idx] * s[idx]) @ vh[idx]  # the selected components, free of sign choices
    got = (u_idx * s_got[idx]) @ vh_idx
    # both SVDs are accurate to about eps * s[0] in absolute terms, whatever the size of the part
    assert float((got - expected).norm()) < 1e-8 * float(expected.norm()) + 1e-13 * float(s[0])
    eye = torch.eye(u_idx.shape[1], dtype=torch.float64)
    assert torch.allclose(u_idx.T @ u_idx, eye, atol=1e-10)
    assert torch.allclose(vh_idx @ vh_idx.T, eye, atol=1e-10)


def test_damping_is_relative_to_mean_diagonal():
    cov = covariance_of(correlated_inputs(100, 12))
    c_d, chol = damped_covariance(cov, 0.05)
    lam = 0.05 * cov.diagonal().mean()
    assert torch.allclose(c_d, cov + lam * torch.eye(12, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(chol @ chol.T, c_d, atol=1e-12)


def test_asr_formula():
    s = torch.tensor([10.0, 5.0, 3.0, 1.0, 1.0])
    assert adapter_sensitivity_ratio(s, 2) == pytest.approx(2.0 / 20.0)
    assert adapter_sensitivity_ratio(s.flip(0), 1) == pytest.approx(1.0 / 20.0)  # order does not matter
    assert adapter_sensitivity_ratio(s, 5) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        adapter_sensitivity_ratio(s, 6)


def test_layer_asr_matches_its_spectrum():
    layer = make_layer(16, 16, torch.float64)
    cov = covariance_of(correlated_inputs(64, 16))
    decomposed = decompose_linear(layer, rank=3, covariance=cov)
    s = decomposed.singular_values
    assert s.shape == (16,)
    assert decomposed.asr == pytest.approx(float(s[-3:].sum() / s.sum()))


def test_merge_returns_plain_linear_equal_to_trained_module():
    layer = make_layer(20, 12, torch.float32)
    cov = covariance_of(correlated_inputs(80, 12))
    decomposed = decompose_linear(layer, rank=4, covariance=cov)
    optimizer = torch.optim.SGD([p for p in decomposed.parameters() if p.requires_grad], lr=0.5)
    x = torch.randn(16, 12)
    for _ in range(3):
        optimizer.zero_grad()
        decomposed(x).pow(2).sum().backward()
        optimizer.step()
    with torch.no_grad():
        assert float((decomposed(x) - layer(x)).abs().max()) > 1e-3  # training changed the function
        merged = decomposed.merge()
        assert type(merged) is nn.Linear
        assert torch.allclose(merged(x), decomposed(x), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in layer.parameters())
    assert not any(p.requires_grad for p in merged.parameters())


@pytest.mark.parametrize(
    "mode,trainable",
    [
        ("ckpd", 20 * 4 + 4 * 12 + 20),
        ("svd", 20 * 4 + 4 * 12 + 20),
        ("lora", 20 * 4 + 4 * 12 + 20),
        ("full", 20 * 12 + 20),
        ("frozen", 0),
    ],
)
def test_only_adapter_and_bias_are_trainable(mode, trainable):
    layer = make_layer(20, 12, torch.float32)
    cov = covariance_of(correlated_inputs(80, 12))
    decomposed = decompose_linear(layer, rank=4, mode=mode, covariance=cov)
    assert isinstance(decomposed, DecomposedLinear)
    assert sum(p.numel() for p in decomposed.parameters() if p.requires_grad) == trainable
    assert not decomposed.weight_res.requires_grad or mode == "full"


def test_lora_starts_as_the_original_and_trains_a_low_rank_update():
    layer = make_layer(20, 12, torch.float64)
    decomposed = decompose_linear(layer, rank=3, mode="lora")
    assert torch.equal(decomposed.adapter_a, torch.zeros(20, 3, dtype=torch.float64))
    assert torch.equal(decomposed.weight_res, layer.weight)
    with torch.no_grad():
        decomposed.adapter_a.normal_()
    delta = decomposed.merged_weight() - layer.weight
    assert torch.linalg.matrix_rank(delta) == 3


def test_rank_deficient_covariance_has_no_nan():
    layer = make_layer(48, 64, torch.float32)
    x = correlated_inputs(10, 64)  # 10 vectors for 64 input dimensions: rank 10
    cov = covariance_of(x)
    assert int(torch.linalg.matrix_rank(cov)) == 10
    decomposed = decompose_linear(layer, rank=8, covariance=cov)
    for tensor in (
        decomposed.adapter_a,
        decomposed.adapter_b,
        decomposed.weight_res,
        decomposed.singular_values,
    ):
        assert torch.isfinite(tensor).all()
    probe = torch.randn(4, 64)
    with torch.no_grad():
        assert float((decomposed(probe) - layer(probe)).norm() / layer(probe).norm()) < 1e-5
    zero = decompose_linear(layer, rank=8, covariance=torch.zeros(64, 64))
    assert torch.isfinite(zero.adapter_b).all()


def test_select_layers_by_threshold_and_top_n():
    asr = {"a": 0.30, "b": 0.05, "c": 0.12, "d": 0.50}
    assert select_layers(asr, threshold=0.12) == ["b", "c"]
    assert select_layers(asr, threshold=1.0) == ["b", "c", "a", "d"]
    assert select_layers(asr, top_n=3) == ["b", "c", "a"]
    assert select_layers(asr, top_n=10) == ["b", "c", "a", "d"]
    assert select_layers(asr) == ["b", "c", "a", "d"]
    with pytest.raises(ConfigError, match="both"):
        select_layers(asr, threshold=0.2, top_n=2)
    with pytest.raises(ConfigError, match="asr_threshold"):
        select_layers(asr, threshold=1.5)
    with pytest.raises(ConfigError, match="asr_threshold"):
        select_layers(asr, threshold=0.0)
    with pytest.raises(ConfigError, match="top_n"):
        select_layers(asr, top_n=0)


def test_impossible_decompositions_name_the_setting():
    layer = make_layer(8, 6, torch.float32)
    with pytest.raises(ConfigError, match="rank=7"):
        decompose_linear(layer, rank=7, covariance=torch.eye(6))
    with pytest.raises(ConfigError, match="peft_mode='dora'"):
        decompose_linear(layer, rank=2, mode="dora")
    with pytest.raises(ConfigError, match="covariance"):
        decompose_linear(layer, rank=2, mode="ckpd")
    with pytest.raises(ConfigError, match="activation scale"):
        decompose_linear(layer, rank=2, mode="asvd")


def test_check_rank_names_the_first_layer_too_small_for_the_rank():
    layers = {"wide": nn.Linear(64, 48), "narrow": nn.Linear(16, 32)}
    check_rank(16, layers)
    with pytest.raises(
        ConfigError, match=r"^rank=17 is larger than layer narrow \(32x16\) allows: use rank <= 16$"
    ):
        check_rank(17, layers)
    with pytest.raises(ConfigError, match=r"^rank=64 \(swept\) is larger than layer wide \(48x64\)"):
        check_rank(64, layers, rank_text="rank=64 (swept)")
