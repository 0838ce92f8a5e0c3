"""The Mamba (SS2D) neck: shapes, scan orders, the zero-started new branch, its losses, a trial with it."""

from __future__ import annotations

import copy

import pytest
import torch

import ckpd_core.trial as trial_module
from ckpd_core import ConfigError, DataError, TrialConfig, run_trial
from ckpd_core.models import SS2D, MambaNeck, build_classifier
from ckpd_core.models.etf_head import dot_regression_loss
from ckpd_core.models.mamba_neck import (
    ScanParams,
    merge_orders,
    scan_orders,
    separation_loss,
    suppression_loss,
)
from ckpd_core.models.selective_scan import scan_backend

from .helpers import crash_then_resume

TINY_VIT = dict(depth=1, embed_dim=32, num_heads=2)


def small_neck(**kwargs) -> MambaNeck:
    torch.manual_seed(0)
    settings = dict(d_state=4, dt_rank=3, mid_channels=20)
    settings.update(kwargs)
    return MambaNeck(24, 16, (3, 5), **settings)


def test_shapes_positional_embedding_and_projector():
    neck = small_neck()
    x = torch.randn(2, 24, 3, 5)
    assert neck(x).shape == (2, 16)
    pos = neck.base.pos_embed.detach()
    assert pos.shape == (1, 15, 16) and float(pos.abs().max()) <= 0.04  # trunc-normal, std 0.02, cut at 2 std
    big = MambaNeck(8, 256, (16, 16), d_state=2).base.pos_embed.detach()
    assert 0.015 < float(big.std()) < 0.02  # a normal(0, 0.02) truncated at 2 std has std 0.0176
    norms = [m for m in neck.base.mlp if isinstance(m, torch.nn.LayerNorm)]
    assert [tuple(n.normalized_shape) for n in norms] == [(20, 3, 5)]  # over channels and positions
    tokens = neck.base.mlp(x).flatten(2).transpose(1, 2) + pos
    y, gate, params = neck.base.ss2d(tokens.reshape(2, 3, 5, 16))
    assert y.shape == gate.shape == (2, 3, 5, 16)
    assert params.dt.shape == (2, 4, 3, 15) and params.B.shape == params.C.shape == (2, 4, 4, 15)
    with pytest.raises(ValueError, match=r"built for a \(3, 5\) map"):
        neck(torch.randn(2, 24, 5, 3))


def test_ss2d_initialisation():
    ss2d = SS2D(8, d_state=5, dt_rank=2)
    assert torch.equal(ss2d.A_log, torch.log(torch.arange(1.0, 6.0)).repeat(32, 1))  # S4D-real, 4 directions
    assert torch.equal(ss2d.D, torch.ones(32))
    dt = torch.nn.functional.softplus(ss2d.dt_proj_bias.detach())
    assert float(dt.min()) >= 1e-3 * 0.999 and float(dt.max()) <= 0.1 * 1.001


def test_scan_orders_on_a_non_square_map():
    x = torch.arange(15.0).reshape(1, 1, 3, 5)
    orders = scan_orders(x)
    assert orders[0, 0, 0].tolist() == list(range(15))
    assert orders[0, 1, 0].tolist() == list(range(14, -1, -1))
    column_major = [h * 5 + w for w in range(5) for h in range(3)]
    assert orders[0, 2, 0].tolist() == column_major
    assert orders[0, 3, 0].tolist() == column_major[::-1]
    torch.testing.assert_close(merge_orders(orders, 3, 5), 4 * x.flatten(2))


def test_ss2d_on_a_transposed_map_equals_swapped_directions():
    """Rows of the transposed map are columns of the map: swapping directions 0,1 with 2,3 and
    transposing the conv kernel must give the transposed output, on a non-square map."""
    torch.manual_seed(1)
    ss2d = SS2D(6, d_state=3, dt_rank=2).double()
    swapped = copy.deepcopy(ss2d)
    order = [2, 3, 0, 1]
    with torch.no_grad():
        swapped.conv.weight.copy_(ss2d.conv.weight.transpose(-1, -2))
        for name in ("x_proj_weight", "dt_proj_weight", "dt_proj_bias"):
            getattr(swapped, name).copy_(getattr(ss2d, name)[order])
        swapped.A_log.copy_(ss2d.A_log.unflatten(0, (4, 6))[order].flatten(0, 1))
        swapped.D.copy_(torch.randn(24, dtype=torch.float64))
        ss2d.D.copy_(swapped.D.unflatten(0, (4, 6))[order].flatten())
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    y, gate, _ = ss2d(x)
    y_t, gate_t, _ = swapped(x.transpose(1, 2))
    torch.testing.assert_close(y_t, y.transpose(1, 2), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gate_t, gate.transpose(1, 2))


@pytest.mark.slow
def test_new_branch_starts_at_exactly_zero_and_can_learn():
    neck = small_neck()
    x = torch.randn(4, 24, 3, 5)
    before = neck(x)
    assert neck.new_branch_parameters() == []
    branch = neck.add_new_branch()
    assert branch is neck.new and neck.new_branch_parameters() == list(branch.parameters())
    assert {n for n, _ in neck.named_parameters() if n.startswith("new.")} == {
        f"new.{n}" for n, _ in branch.named_parameters()
    }
    out, gate, _ = branch(x)
    assert torch.count_nonzero(out) == 0 and torch.count_nonzero(gate) == 0
    assert torch.equal(neck(x), before)  # adding the branch changes nothing
    assert torch.count_nonzero(branch.ss2d.in_proj.weight[:16]) > 0  # only the z half is zeroed
    with pytest.raises(RuntimeError, match="already exists"):
        neck.add_new_branch()
    (neck(x) * torch.randn(4, 16)).sum().backward()
    assert float(branch.ss2d.in_proj.weight.grad[16:].abs().sum()) > 0
    with torch.no_grad():
        branch.ss2d.in_proj.weight[16:] -= 0.5 * branch.ss2d.in_proj.weight.grad[16:]
    assert torch.count_nonzero(branch(x)[0]) > 0
    assert all(p.grad is not None for p in neck.base.ss2d.parameters())  # the base branch trains too


def test_suppression_and_separation_losses_by_hand():
    gate = torch.full((4, 2, 2, 3), 2.0)
    is_base = torch.tensor([True, False, True, False])
    assert float(suppression_loss(gate, is_base)) == pytest.approx(96**0.5 / 24)  # ||.||_F / numel
    assert float(suppression_loss(gate, torch.zeros(4, dtype=torch.bool))) == 0.0
    v = torch.randn(1, 4, 3, 5)
    parallel = ScanParams(*(torch.cat([v, 3 * v, v, 2 * v]) for _ in range(3)))
    assert float(separation_loss(parallel, is_base)) == pytest.approx(1.5)  # |cos| / 2 = 0.5 each
    e1, e2 = torch.zeros(1, 1, 2, 1), torch.zeros(1, 1, 2, 1)
    e1[0, 0, 0], e2[0, 0, 1] = 1.0, 1.0
    orthogonal = ScanParams(*(torch.cat([e1, e2, e1, e2]) for _ in range(3)))
    assert float(separation_loss(orthogonal, is_base)) == pytest.approx(0.0)
    assert float(separation_loss(parallel, torch.ones(4, dtype=torch.bool))) == 0.0


def test_class_sensitive_loss_of_the_neck():
    neck = small_neck(supp_weight=2.0, sep_weight=3.0, num_base_classes=5)
    x, labels = torch.randn(6, 24, 3, 5), torch.tensor([0, 7, 4, 5, 9, 1])
    assert neck.class_sensitive_loss(neck.forward_with_aux(x), labels).item() == 0.0  # no new branch yet
    branch = neck.add_new_branch()
    at_start = neck.forward_with_aux(x)
    assert suppression_loss(at_start.gate, labels < 5).item() == 0.0  # gate is exactly 0 at the start
    with torch.no_grad():
        branch.ss2d.in_proj.weight[16:].normal_()
    out = neck.forward_with_aux(x)
    is_base = labels < 5
    expected = 2.0 * suppression_loss(out.gate, is_base) + 3.0 * separation_loss(out.new_params, is_base)
    loss = neck.class_sensitive_loss(out, labels)
    assert loss.item() > 0 and loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert float(branch.ss2d.in_proj.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for p in neck.base.parameters())  # the losses act on the new branch only
    with pytest.raises(ValueError, match="num_base_classes"):
        small_neck(supp_weight=1.0)


def captured_neck_input(model, images):
    seen = []
    handle = model.neck.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.features(images)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    "extra,image,grid",
    [
        ({}, (32, 32), (4, 4)),
        (dict(class_token=True, global_pool="token"), (32, 32), (4, 4)),
        (dict(img_size=(32, 48)), (32, 48), (4, 6)),
    ],
)
def test_classifier_feeds_the_token_map(extra, image, grid):
    torch.manual_seed(0)
    model = build_classifier("vit_tiny_convstem", {**TINY_VIT, **extra}, "mamba", 16, 10, 0, dict(d_state=4))
    model.eval()
    images = torch.randn(2, 3, *image)
    tokens = model.backbone.forward_features(images)
    prefix = model.backbone.num_prefix_tokens
    assert prefix == (1 if extra.get("class_token") else 0) and model.neck.grid_size == grid
    expected = tokens[:, prefix:].transpose(1, 2).reshape(2, 32, *grid)
    torch.testing.assert_close(captured_neck_input(model, images), expected)
    assert model(images, 10).shape == (2, 10)


def test_pooled_features_still_feed_the_mlp_neck():
    torch.manual_seed(0)
    model = build_classifier("vit_tiny_convstem", TINY_VIT, "mlp", 16, 10, 0).eval()
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 9])
    assert torch.equal(model.features(images), model.neck(model.backbone(images)))
    expected = dot_regression_loss(model.features(images), labels, model.head.etf)
    assert torch.equal(model.training_loss(images, labels), expected)


def test_training_loss_adds_the_class_sensitive_losses():
    torch.manual_seed(0)
    options = dict(d_state=4, supp_weight=1.0, sep_weight=1.0, num_base_classes=5)
    model = build_classifier("vit_tiny_convstem", TINY_VIT, "mamba", 16, 10, 0, options).eval()
    model.neck.add_new_branch()
    with torch.no_grad():
        model.neck.new.ss2d.in_proj.weight[16:].normal_()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 7, 2, 8])
    out = model.neck.forward_with_aux(model.neck_input(images))
    expected = dot_regression_loss(out.features, labels, model.head.etf) + model.neck.class_sensitive_loss(
        out, labels
    )
    assert model.neck.class_sensitive_loss(out, labels).item() > 0
    torch.testing.assert_close(model.training_loss(images, labels), expected)


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(neck_d_state=0), "neck_d_state=0"),
        (dict(neck_d_state=512), "neck_d_state=512"),
        (dict(neck_kwargs={"d_conv": 3}), "neck_kwargs.d_conv"),
        (dict(neck_kwargs={"dt_rank": 0}), "neck_kwargs.dt_rank=0"),
        (dict(neck_kwargs=[("dt_rank", 4)]), "neck_kwargs="),
        (dict(neck_supp_weight=-1.0), "neck_supp_weight=-1.0"),
        (dict(neck="ssm"), "neck='ssm'"),
    ],
)
def test_bad_neck_settings_are_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrialConfig(neck="mamba").replace(**changes)


def test_base_session_key_follows_the_neck_settings():
    mlp = TrialConfig()
    assert (
        mlp.replace(neck_d_state=32, neck_kwargs={"dt_rank": 4}).base_session_key() == mlp.base_session_key()
    )
    mamba = TrialConfig.from_dict({"neck": "mamba"})
    assert mamba.base_session_key() != mlp.base_session_key()
    assert mamba.replace(neck_d_state=32).base_session_key() != mamba.base_session_key()
    assert mamba.replace(neck_kwargs={"dt_rank": 4}).base_session_key() != mamba.base_session_key()
    same = mamba.replace(neck_supp_weight=1.0, neck_sep_weight=0.5, lr=0.1)  # incremental-only settings
    assert same.base_session_key() == mamba.base_session_key()


@pytest.fixture(scope="module")
def mamba_base(tmp_path_factory):
    return tmp_path_factory.mktemp("mamba-base") / "base.pt"


def mamba_config(tiny_config):
    return tiny_config.replace(
        neck="mamba", neck_d_state=4, base_epochs=2, neck_supp_weight=1.0, neck_sep_weight=0.1
    )


@pytest.mark.slow
def test_trial_with_the_mamba_neck_trains_the_new_branch_faster(tiny_config, mamba_base, monkeypatch):
    config = mamba_config(tiny_config)
    groups_seen = []
    real_train = trial_module.train_incremental

    def recording_train(model, param_groups, *args, **kwargs):
        groups_seen.append([(g["lr"], {id(p) for p in g["params"]}) for g in param_groups])
        return real_train(model, param_groups, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train_incremental", recording_train)
    result = run_trial(config, base_checkpoint=mamba_base)
    assert [row["session"] for row in result.sessions] == [0, 1, 2]
    assert all(0.0 <= row["acc_all"] <= 1.0 for row in result.sessions)
    neck = result.model.neck
    assert isinstance(neck, MambaNeck) and neck.new is not None
    assert torch.count_nonzero(neck.new.ss2d.in_proj.weight[32:]) > 0  # the new gate has trained
    new_ids = {id(p) for p in neck.new.parameters()}
    old_ids = {id(p) for p in neck.parameters()} - new_ids
    for groups in groups_seen:
        by_lr = {}
        for lr, ids in groups:
            by_lr.setdefault(lr, set()).update(ids)
        assert new_ids <= by_lr[config.lr]
        assert by_lr[config.lr * config.neck_lr_mult] == old_ids
    neck_size = sum(p.numel() for p in neck.parameters())
    assert result.sessions[1]["trainable_params"] > neck_size  # adapters + both branches + residual


@pytest.mark.slow
def test_interrupted_mamba_trial_resumes_with_its_new_branch(tiny_config, mamba_base, tmp_path):
    config = mamba_config(tiny_config)
    uninterrupted = run_trial(config, base_checkpoint=mamba_base)
    reported = []
    resumed = crash_then_resume(config, tmp_path, reported, base_checkpoint=mamba_base)
    assert [row["session"] for row in reported] == [0, 1, 2]
    for a, b in zip(uninterrupted.sessions, resumed.sessions, strict=True):
        assert (a["acc_all"], a["val_acc_all"]) == (b["acc_all"], b["val_acc_all"])
    for (name, a), b in zip(
        uninterrupted.model.neck.state_dict().items(), resumed.model.neck.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(DataError, match="another trial configuration"):
        run_trial(config.replace(neck_d_state=8), base_checkpoint=None, state_dir=tmp_path)


# --- GPU: the neck with mamba-ssm's kernel against the PyTorch scan (skipped without both) ---------------


@pytest.mark.skipif(
    not torch.cuda.is_available() or scan_backend("cuda") != "mamba_ssm",
    reason="needs a CUDA GPU and mamba-ssm's CUDA kernel (pip install -e '.[mamba]')",
)
def test_neck_gives_the_same_numbers_with_either_scan_backend():
    torch.manual_seed(0)
    neck = MambaNeck(64, 128, (7, 7), d_state=64, dt_rank=16).cuda()
    neck.add_new_branch()
    with torch.no_grad():
        neck.new.ss2d.in_proj.weight.normal_(std=0.05)
    reference = copy.deepcopy(neck)
    for module in reference.modules():
        if isinstance(module, SS2D):
            module.backend = "pytorch"
    x = torch.randn(8, 64, 7, 7, device="cuda")
    outputs = []
    for model in (neck, reference):
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
        outputs.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (out, grads), (out_ref, grads_ref) = outputs
    torch.testing.assert_close(out, out_ref, rtol=6e-4, atol=2e-3)
    for name, grad in grads.items():
        scale = max(1.0, float(grads_ref[name].abs().max()))
        torch.testing.assert_close(grad, grads_ref[name], rtol=6e-4, atol=2e-3 * scale, msg=name)
