"""The official CKPD recipe, element by element: the values, what trains, the optimizer and its schedule,
the batches (image pool, feature-map pool), mixup, length-aware targets, the detached new branch."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ckpd_core.trial as trial_module
from ckpd_core import TrialConfig, build_benchmark, run_trial
from ckpd_core.data.fake import write_mini_imagenet
from ckpd_core.decomposition import layers_of_last_blocks
from ckpd_core.models.etf_head import dot_regression_loss
from ckpd_core.models.mamba_neck import MambaNeck
from ckpd_core.recipe import ELEMENTS, explain, format_value, recipe_values
from ckpd_core.replay import ReplayMemory
from ckpd_core.schedules import SCHEDULES, schedule
from ckpd_core.session_data import session_batches
from ckpd_core.training import train_incremental
from sweeps.cli import app

from .helpers import TINY_BENCHMARK
from .helpers import run_ckpd_core as run_main

runner = CliRunner()
# The official recipe with a model and iteration counts a CPU test can afford; every other element official.
TINY_OFFICIAL = dict(
    recipe="official",
    backbone="vit_tiny_convstem",
    pretrained=False,
    backbone_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
    neck_d_state=4,
    neck_kwargs={"num_layers": 1, "dt_rank": 4},
    rank=4,
    base_epochs=2,
    base_batch_size=64,
    steps=6,
    batch_size=16,
)
SIZE_ELEMENTS = {"backbone", "pretrained", "neck_d_state", "neck_kwargs", "feature_dim", "rank"}
SIZE_ELEMENTS |= {"base_epochs", "base_batch_size", "steps", "batch_size"}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    write_mini_imagenet(root)
    return root


def official(benchmark: str, root, **changes) -> TrialConfig:
    values = dict(TINY_OFFICIAL, feature_dim=128 if benchmark == "cub200" else 80)
    kwargs = dict(num_sessions=3, max_per_class=2, store_size=32)
    return TrialConfig(
        benchmark=benchmark, data_root=str(root), benchmark_kwargs=kwargs, **{**values, **changes}
    )


# ------------------------------------------------------------------------------------------ the values


def test_every_element_is_a_setting_filled_by_the_recipe_unless_set():
    names = {f for f in TrialConfig.__dataclass_fields__}
    assert {e.setting for e in ELEMENTS} <= names
    embedded = TrialConfig()
    assert all(getattr(embedded, e.setting) == e.embedded for e in ELEMENTS)
    cub = TrialConfig(recipe="official", benchmark="cub200", data_root="/data")
    assert all(getattr(cub, e.setting) == e.official_for("cub200") for e in ELEMENTS)
    ablated = TrialConfig(recipe="official", benchmark="cub200", data_root="/data", feature_replay=False)
    assert (
        ablated.feature_replay is False and ablated.mixup_prob == 0.75
    )  # what is set wins; the rest official
    assert TrialConfig.from_dict(cub.to_dict()) == cub  # a resolved config round-trips


def test_docs_list_every_element_with_its_values():
    rows = {}
    for line in (Path(__file__).resolve().parents[1] / "docs" / "recipe.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip().strip("`") for cell in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[2:5]
    for e in ELEMENTS:
        expected = [
            format_value(e.embedded),
            format_value(e.official_for("cub200")),
            format_value(e.official_for("mini_imagenet")),
        ]
        assert rows[e.setting] == expected, e.setting


def test_official_values_are_the_official_configs():
    cub, mini = recipe_values("official", "cub200"), recipe_values("official", "mini_imagenet")
    # configs/cub/*_eval_ckpd_fscil*.py and configs/miniimagenet/*_eval_ckpd_fscil*.py
    assert (cub["lr"], cub["adapter_lr_mult"], cub["mixup_prob"], cub["shot_views"]) == (0.05, 0.01, 0.75, 10)
    assert (mini["lr"], mini["adapter_lr_mult"], mini["mixup_prob"], mini["shot_views"]) == (
        0.01,
        0.1,
        0.3,
        -1,
    )
    assert (cub["length_aware_targets"], mini["length_aware_targets"]) == (False, True)
    assert (cub["top_n"], cub["fixed_last_blocks"], mini["top_n"], mini["fixed_last_blocks"]) == (
        6,
        None,
        None,
        2,
    )
    # the base-session configs: SGD 0.005, wd 5e-4, 50 x 4 (CUB) and 20 x 10 (mini) passes
    for values in (cub, mini):
        assert (values["base_optimizer"], values["base_lr"], values["base_weight_decay"]) == (
            "sgd",
            0.005,
            5e-4,
        )
        assert (values["base_epochs"], values["base_trainable_blocks"], values["loss_weight"]) == (
            200,
            1,
            10.0,
        )
    assert (cub["base_batch_size"], mini["base_batch_size"]) == (128, 512)
    assert recipe_values("official", "cifar100") == mini  # no official CIFAR config: mini's protocol
    assert recipe_values("official", "icons")["backbone"] == "vit_tiny_convstem"  # CLIP cannot run at 32 px


# ------------------------------------------------------------------------------- what trains, and how


@pytest.mark.slow
def test_the_official_base_session_trains_only_the_last_block_the_final_norm_and_the_neck(
    cub_root, monkeypatch
):
    import ckpd_core.training as training

    config = official("cub200", cub_root, base_epochs=3, base_batch_size=50)
    trainable, lrs = [], []
    real_train, real_step = trial_module.train_base, training._step

    def recording(model, *args, **kwargs):
        trainable.append({name for name, p in model.named_parameters() if p.requires_grad})
        return real_train(model, *args, **kwargs)

    def recording_step(loss, optimizer, scaler, scheduler):
        assert isinstance(optimizer, torch.optim.SGD)
        assert (
            optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["weight_decay"] == 5e-4
        )
        lrs.append(optimizer.param_groups[0]["lr"])
        real_step(loss, optimizer, scaler, scheduler)

    monkeypatch.setattr(trial_module, "train_base", recording)
    monkeypatch.setattr(training, "_step", recording_step)
    trial = trial_module.SessionLoop(config)
    trial.prepare_base(None)
    names = {name for name, _ in trial.model.named_parameters()}
    expected = {
        n
        for n in names
        if n.startswith(("backbone.blocks.1.", "backbone.norm.", "backbone.fc_norm.", "neck."))
    }
    assert trainable == [expected]
    assert any(n.startswith("backbone.blocks.0.") for n in names) and "backbone.pos_embed" in names
    # 3 passes in batches of 50: every iteration on the official base schedule from 0.005
    total = 3 * math.ceil(len(trial.benchmark.train_set(0)) / 50)
    assert lrs == pytest.approx([0.005 * SCHEDULES["ckpd_base"](step, total) for step in range(total)])
    first, last = trial.model.backbone.blocks  # drop-path spread linearly from 0 to 0.1, as the official ViT
    assert isinstance(first.drop_path1, torch.nn.Identity) and last.drop_path1.drop_prob == pytest.approx(0.1)


@pytest.mark.slow
def test_sessions_train_the_chosen_adapters_and_the_neck_at_lr_times_their_multipliers(cub_root, monkeypatch):
    config = official("cub200", cub_root)
    groups_seen = []
    real = trial_module.train_incremental

    def recording(model, param_groups, *args, **kwargs):
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        grouped = {id(p) for g in param_groups for p in g["params"]}
        adapters = {
            id(p)
            for m in model.backbone.modules()
            if hasattr(m, "adapter_a")
            for p in m.parameters()
            if p.requires_grad
        }
        groups_seen.append((trainable, grouped, adapters, [g["lr"] for g in param_groups]))
        return real(model, param_groups, *args, **kwargs)

    monkeypatch.setattr(trial_module, "train_incremental", recording)
    run_trial(config)
    assert len(groups_seen) == 2
    for trainable, grouped, adapters, lrs in groups_seen:
        assert trainable == grouped and adapters <= grouped  # nothing trains outside the three groups
        assert lrs == pytest.approx([0.05 * 0.01, 0.05 * 1.0, 0.05 * 0.1])  # adapters, new branch, old neck


@pytest.mark.parametrize(
    ("name", "iterations", "expected"),
    [
        # sessions count iterations from 1: warm-up 0.28, 0.46, 0.64, 0.82 of the cosine value
        ("ckpd_session", [1, 2, 3, 4], [0.28, 0.46, 0.64, 0.82]),
        # the base counts from 0: 0.1 at the first iteration
        ("ckpd_base", [0, 50], [0.1, 0.55]),
    ],
)
def test_warm_up_matches_mmcv_linear_warm_up(name, iterations, expected):
    total = 1000
    fixed = SCHEDULES[name]
    for it, ratio in zip(iterations, expected, strict=True):
        annealed = total - fixed.cooldown_iters
        cosine = fixed.min_ratio + 0.5 * (1 - fixed.min_ratio) * (1 + math.cos(math.pi * it / annealed))
        assert fixed(it - fixed.first_iteration, total) == pytest.approx(ratio * cosine)


def test_cosine_and_cool_down_match_the_formula():
    session = schedule("ckpd_session", 1000, warmup=0)
    assert session(999) == pytest.approx(0.01 * 0.1) and session(995) == pytest.approx(0.001)  # last 5 its
    assert session(994) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 995 / 995)))
    middle = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 500 / 995))
    assert session(499) == pytest.approx(middle)
    base = schedule("ckpd_base", 4700, warmup=0)
    # the base runner counts from 0: iteration 4690 ends the cosine at 0.1x, 4691-4699 cool down at 0.01x
    assert (
        base(4690) == pytest.approx(0.1)
        and base(4691) == pytest.approx(0.01)
        and base(4699) == pytest.approx(0.01)
    )
    assert base(2345) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2345 / 4690)))


@pytest.mark.slow
def test_the_optimizer_follows_the_schedule_at_every_step(cub_root, monkeypatch):
    import ckpd_core.training as training

    config = official("cub200", cub_root, steps=12)
    seen = []
    real_step = training._step

    def recording(loss, optimizer, scaler, scheduler):
        assert isinstance(optimizer, torch.optim.SGD)
        assert all(g["momentum"] == 0.9 and g["weight_decay"] == 5e-4 for g in optimizer.param_groups)
        seen.append([g["lr"] for g in optimizer.param_groups])
        real_step(loss, optimizer, scaler, scheduler)

    monkeypatch.setattr(training, "_step", recording)
    run_trial(config.replace(base_epochs=0))
    multiplier = SCHEDULES["ckpd_session"]
    per_session = [seen[:12], seen[12:24]]
    for lrs in per_session:
        for step, groups in enumerate(lrs):
            base = [0.05 * 0.01, 0.05, 0.05 * 0.1]
            assert groups == pytest.approx([lr * multiplier(step, 12) for lr in base])


# ---------------------------------------------------------------------------------------------- batches


@pytest.mark.slow
def test_the_image_pool_holds_views_of_the_shots_and_copies_of_the_exemplars(cub_root):
    from ckpd_core.session_data import _image_pool

    config = official("cub200", cub_root)
    trial = trial_module.SessionLoop(config)
    bench = trial.benchmark
    trial.replay.add(bench.train_set(0))
    trial.replay.add(bench.train_set(1))
    generator = torch.Generator().manual_seed(0)
    shots = bench.train_set(2)
    pool = _image_pool(config, bench, shots, trial.replay.image_set(), generator, trial.device)
    counts = Counter(pool.labels.tolist())
    assert {counts[c] for c in bench.base_classes} == {2}  # one exemplar per class, two copies
    assert {counts[c] for c in bench.session_classes[1]} == {5}  # earlier novel classes: five copies
    assert {c: counts[c] for c in bench.session_classes[2]} == {
        c: 10 * int((shots.labels == c).sum()) for c in bench.session_classes[2]
    }  # ten augmented views of every shot
    views = pool.items[pool.labels == bench.session_classes[2][0]]
    assert len({tuple(v.flatten()[:64].tolist()) for v in views}) == len(views)  # the views differ
    drawn = torch.cat([pool.draw(generator)[1] for _ in range(len(pool) // config.batch_size)])
    assert Counter(drawn.tolist()) <= counts  # one pass: drawn without replacement


@pytest.mark.slow
def test_the_feature_pool_holds_class_mean_maps_with_the_official_copies(cub_root):
    from ckpd_core.session_data import _feature_pool

    config = official("cub200", cub_root)
    trial = trial_module.SessionLoop(config)
    trial.prepare_base(None)
    generator = torch.Generator().manual_seed(0)
    pool = _feature_pool(config, trial.model, trial.benchmark, 2, generator, trial.device)
    counts = Counter(pool.labels.tolist())
    assert {counts[c] for c in trial.benchmark.base_classes} == {2}
    assert {counts[c] for c in trial.benchmark.session_classes[1]} == {5}
    assert not set(trial.benchmark.session_classes[2]) & set(counts)  # the current classes are not replayed
    base = trial.benchmark.train_set(0)
    with torch.no_grad():
        maps = trial.model.neck_input(base.load())
    for c in (0, 57):
        expected = maps[base.labels == c].mean(dim=0)
        torch.testing.assert_close(pool.items[pool.labels == c][0], expected, rtol=1e-4, atol=1e-5)
    assert pool.items.shape[1:] == maps.shape[1:]  # the Mamba neck's input: (C, H, W) feature maps


@pytest.mark.slow
def test_mixup_mixes_with_lambda_one_half_at_the_configured_probability(cub_root, monkeypatch):
    config = official("cub200", cub_root, mixup_prob=0.3, steps=400, feature_replay=False)
    trial = trial_module.SessionLoop(config)
    trial.prepare_base(None)
    calls = []

    def counting(images, labels, *, mixup=None, **kwargs):
        calls.append(mixup)
        return trial.model.features(images).sum() * 0.0

    monkeypatch.setattr(trial.model, "training_loss", counting)
    generator = torch.Generator().manual_seed(3)
    batches = session_batches(config, trial.model, trial.benchmark, 1, trial.replay, generator, trial.device)
    params = [p for p in trial.model.neck.parameters()]
    train_incremental(
        trial.model,
        [{"params": params, "lr": 0.1}],
        batches,
        config,
        generator=generator,
        device=trial.device,
    )
    mixed = [m for m in calls if m is not None]
    assert len(calls) == 400 and {m[1] for m in mixed} == {0.5}
    assert abs(len(mixed) - 0.3 * 400) <= 3 * math.sqrt(400 * 0.3 * 0.7)  # binomial, 3 standard deviations
    assert all(sorted(m[0].tolist()) == list(range(len(m[0]))) for m in mixed)  # permutations of the batch


def test_mixed_loss_weighs_both_labels():
    from ckpd_core.models.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier(
        "vit_tiny_convstem", {"depth": 1, "embed_dim": 32, "num_heads": 2}, "mlp", 16, 10, 0
    )
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    order = torch.tensor([1, 0, 3, 2])
    features = model.features(images)
    mixed = 0.5 * features + 0.5 * features[order]
    expected = 0.5 * dot_regression_loss(mixed, labels, model.head.etf) + 0.5 * dot_regression_loss(
        mixed, labels[order], model.head.etf
    )
    got = model.training_loss(images, labels, mixup=(order, 0.5), loss_weight=10.0)
    torch.testing.assert_close(got, 10.0 * expected)


def test_length_aware_targets_weigh_every_class_of_a_batch_alike():
    features = torch.randn(6, 8)
    etf = torch.nn.functional.normalize(torch.randn(8, 3), dim=0)
    labels = torch.tensor([0, 0, 0, 0, 1, 2])  # class 0 four times
    cosine = (torch.nn.functional.normalize(features, dim=-1) * etf[:, labels].T).sum(-1)
    gamma, counts = 6 / 3, torch.tensor([4.0, 4, 4, 4, 1, 1])
    expected = 0.5 * ((gamma / counts) * (cosine - 1) ** 2).mean()
    torch.testing.assert_close(dot_regression_loss(features, labels, etf, length_aware=True), expected)
    balanced = torch.tensor([0, 1, 2, 0, 1, 2])  # every class twice: gamma / n = 1, the plain loss
    torch.testing.assert_close(
        dot_regression_loss(features, balanced, etf, length_aware=True),
        dot_regression_loss(features, balanced, etf),
    )


@pytest.mark.parametrize(("detach", "reaches"), [(True, False), (False, True)])
def test_the_new_branch_trains_the_backbone_only_when_not_detached(detach, reaches):
    torch.manual_seed(0)
    neck = MambaNeck(8, 8, (2, 2), d_state=2, num_layers=1, detach_new_branch=detach)
    neck.add_new_branch()
    with torch.no_grad():  # open the new branch's gate so its output depends on the map
        neck.new.ss2d.in_proj.weight.normal_()
    feature_map = torch.randn(2, 8, 2, 2, requires_grad=True)
    old = neck.base(feature_map)[0].sum() + neck.residual_proj(feature_map.mean((2, 3))).sum()
    base_only = torch.autograd.grad(old, feature_map)[0]
    total = torch.autograd.grad(neck(feature_map).sum(), feature_map)[0]
    assert (not torch.allclose(total, base_only)) == reaches


# ------------------------------------------------------------------------- what adapts, what is replayed


def test_fixed_last_blocks_adapts_every_candidate_of_the_last_blocks():
    names = [f"blocks.{b}.{layer}" for b in range(12) for layer in ("attn.qkv", "attn.proj", "mlp.fc2")]
    assert layers_of_last_blocks(names, 2) == names[-6:]


def test_replay_of_the_first_images_in_file_order(icons_cache):
    bench = build_benchmark("icons", icons_cache, **TINY_BENCHMARK)
    memory = ReplayMemory(1, seed=0, selection="first")
    base = bench.train_set(0)
    memory.add(base)
    firsts = [int((base.labels == c).nonzero()[0]) for c in range(10)]
    assert torch.equal(memory.image_set().raw(), base.raw(torch.tensor(firsts)))


# ------------------------------------------------------------------------------- whole official trials


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cub200", "mini_imagenet"])
def test_an_official_trial_runs_end_to_end_on_the_real_formats(dataset, cub_root, mini_root):
    root = cub_root if dataset == "cub200" else mini_root
    config = official(dataset, root, backbone_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2})
    differing = {row.setting for row in explain(config.to_dict(), dataset) if row.differs}
    assert differing <= SIZE_ELEMENTS  # only sizes a CPU test can afford differ from the official recipe
    result = run_trial(config)
    assert [row["session"] for row in result.sessions] == [0, 1, 2]
    assert [row["n_adapted"] for row in result.sessions[1:]] == [6, 6]  # top-6 by ASR, or the last 2 blocks'
    if dataset == "mini_imagenet":  # qkv, proj and fc2 of blocks 1 and 2 of 3, every session
        fixed = sorted(f"blocks.{b}.{n}" for b in (1, 2) for n in ("attn.qkv", "attn.proj", "mlp.fc2"))
        assert all(sorted(row["adapted_layers"]) == fixed for row in result.sessions[1:])
    assert all(math.isfinite(row["train_loss"]) for row in result.sessions)


def test_recipe_command_shows_no_difference_for_the_paper_rank_spec():
    done = runner.invoke(app, ["recipe", "search_spaces/paper/rank.yaml"], terminal_width=200)
    assert done.exit_code == 0, done.output
    assert "no element with a setting differs from the official recipe for cub200" in done.output
    assert "swept" in done.output and "(damping)" in done.output
    embedded = runner.invoke(app, ["recipe", "search_spaces/rank.yaml"], terminal_width=200)
    assert embedded.exit_code == 0 and "feature_replay" in embedded.output
    assert "element(s) differ from the official recipe for icons" in embedded.output


@pytest.mark.slow
def test_explain_prints_the_table_without_running(tmp_path):
    done = run_main(
        ["--explain", "recipe=official", "benchmark=cub200", "data_root=/data", "feature_replay=false"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "1 element(s) differ from the official recipe for cub200: feature_replay" in done.stdout
    assert not list(tmp_path.glob("base-*.pt"))  # nothing trained
