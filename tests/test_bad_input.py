"""Every row of docs/bad_input.md: the bad input, the one line ckpd-sweep prints, the exit code.

Each case checks the exit code (2: bad input, ours or Typer's usage errors), a key phrase of the
message, that no traceback is printed, and for ``launch`` that Ray never starts and no results folder
is left behind. Nothing here runs a trial.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
import safetensors.torch
import torch
import yaml
from typer.testing import CliRunner

from ckpd_core.data.fake import write_cub200
from ckpd_core.data.splits import read_split
from ckpd_core.models.backbone import create_backbone
from sweeps import driver, resources
from sweeps.cli import app
from sweeps.folder import create_sweep_folder
from sweeps.progress import ProgressPrinter
from sweeps.results import ResultsStore
from sweeps.spec import SpecError, check_local_inputs, load_spec, parse_spec
from sweeps.storage import Location

from .bad_specs import BAD_SPECS
from .helpers import session_row, tiny_spec, trial_row

REPO = Path(__file__).resolve().parents[1]
BAD_INPUT = 2
TINY_BACKBONE = {"depth": 1, "embed_dim": 32, "num_heads": 2}
runner = CliRunner()


def cli(*args: str, code: int = BAD_INPUT, says: str | tuple[str, ...] = ()) -> str:
    """Run ``ckpd-sweep ARGS`` in-process; check the exit code, the phrases and that nothing raised."""
    result = runner.invoke(app, [str(a) for a in args])
    raised = result.exception if not isinstance(result.exception, SystemExit) else None
    assert raised is None, f"ckpd-sweep {' '.join(map(str, args))} raised {raised!r}"
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for phrase in (says,) if isinstance(says, str) else says:
        assert phrase in result.output, result.output
    if code == BAD_INPUT and result.output.startswith("error:"):
        assert result.output.count("\n") == 1, "our errors are one line"
    return result.output


def write_spec(folder: Path, data: dict | str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything starts Ray."""

    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start for bad input")

    monkeypatch.setattr(ray, "init", refuse)


def launch_fails(tmp_path: Path, spec: Path, says: str | tuple[str, ...]) -> str:
    """``launch`` refuses the spec with exit 2, before Ray starts, and leaves no results folder."""
    results = tmp_path / "results"
    output = cli("launch", spec, "--results", results, "--num-cpus", "1", says=says)
    assert not results.exists()
    assert not ray.is_initialized()
    return output


# ----------------------------------------------------------------------------------------- spec file


def test_missing_spec_file(tmp_path):
    cli("validate", tmp_path / "rnak.yaml", says="rnak.yaml: no such sweep spec file")


@pytest.mark.parametrize("text, key, says", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec(tmp_path, monkeypatch, text, key, says):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, text)
    cli("validate", spec, says=(f"error: {spec}: {key}: " if key else f"error: {spec}: ", says))
    assert [p.name for p in tmp_path.iterdir()] == ["spec.yaml"]


LAUNCHED = ["not-yaml", "unknown-trial-setting", "low-above-high", "unknown-pruner", "unknown-backbone"]


@pytest.mark.parametrize("case", LAUNCHED)
def test_launch_of_a_bad_spec_starts_nothing(tmp_path, monkeypatch, no_ray, case):
    monkeypatch.chdir(tmp_path)
    _, text, _, says = next(c for c in BAD_SPECS if c[0] == case)
    launch_fails(tmp_path, write_spec(tmp_path, text), says)


# ----------------------------------------------------------------------------------------- resources

MACHINE_CPUS = os.cpu_count()
LOCAL_RESOURCES = [
    (
        "cpu",
        {"cpu": 4096},
        [],
        f"resources.cpu: 4096 CPUs per run, but this machine has {MACHINE_CPUS}: lower resources.cpu",
    ),
    (
        "cpu-above-num-cpus",
        {"cpu": 2},
        ["--num-cpus", "1"],
        "resources.cpu: 2 CPUs per run, but the local Ray has 1 (--num-cpus 1): raise --num-cpus, or",
    ),
    (
        "gpu",
        {"gpu": 1},
        [],
        "resources.gpu: 1 GPU(s) per run, but this machine has none (PyTorch sees no CUDA device): set",
    ),
]


@pytest.mark.parametrize(
    "resources, flags, says", [c[1:] for c in LOCAL_RESOURCES], ids=[c[0] for c in LOCAL_RESOURCES]
)
def test_a_run_this_machine_cannot_hold(tmp_path, monkeypatch, no_ray, resources, flags, says):
    """Ray would wait forever for resources that cannot appear: refused at once, before Ray starts."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # the same on a machine with a GPU
    spec = write_spec(tmp_path, {"name": "big", "resources": resources})
    results = tmp_path / "results"
    cli("launch", spec, "--results", results, *flags, says=(f"error: {spec}: ", says))
    assert not results.exists()


def test_resume_with_fewer_cpus_than_a_run(tmp_path, no_ray):
    location = Location.of(tmp_path / "results") / "big"
    create_sweep_folder(location, parse_spec({"name": "big", "resources": {"cpu": 2}}))
    (location.local_path / "tune").mkdir()
    before = sorted(location.local_path.rglob("*"))
    cli("resume", location.local_path, "--num-cpus", "1", says="resources.cpu: 2 CPUs per run, but the local")
    assert sorted(location.local_path.rglob("*")) == before


NODES = [
    {"Alive": True, "Resources": {"CPU": 8.0}},
    {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
    {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
]


def test_which_nodes_and_node_types_fit_a_run_on_a_cluster(tmp_path, monkeypatch):
    shipped = yaml.safe_load((REPO / "cluster.yaml").read_text())
    bootstrap = write_spec(tmp_path, shipped, "ray_bootstrap_config.yaml")  # what `ray up` leaves on the head
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", str(bootstrap))
    types = resources.autoscaler_node_types()  # without Ray connected, from the file
    assert types == {"head": {}, "gpu_worker": {"CPU": 8, "GPU": 1}}
    text, nodes, fitting = resources.describe_fit({"CPU": 4, "GPU": 0.5}, NODES, types)
    assert text == (
        "each run asks for 4 CPU + 0.5 GPU: 1 of the 2 live node(s) fit it (8 CPU; 8 CPU, 1 GPU); "
        "autoscaler node types that fit it: gpu_worker (8 CPU, 1 GPU)"
    )
    assert (nodes, fitting) == (1, ["gpu_worker"])
    assert resources.describe_fit({"CPU": 16, "GPU": 0}, NODES, types)[1:] == (0, [])
    text, nodes, fitting = resources.describe_fit({"CPU": 1, "GPU": 2}, NODES, {})
    assert (nodes, fitting) == (0, None) and text.endswith("the autoscaler's node types are unknown")


def test_a_run_no_node_type_fits_is_refused_on_a_cluster(tmp_path, monkeypatch, capsys):
    spec = load_spec(write_spec(tmp_path, {"name": "big", "resources": {"cpu": 16, "gpu": 1}}))
    progress = ProgressPrinter(spec.objective, spec.mode)
    nodes, node_types = NODES, {"gpu_worker": {"CPU": 8, "GPU": 1}}
    monkeypatch.setattr(driver, "cluster_fit", lambda asked: resources.describe_fit(asked, nodes, node_types))
    with pytest.raises(
        SpecError, match=r"resources: each run asks for 16 CPU \+ 1 GPU: 0 of the 2 live node"
    ):
        driver._check_cluster(spec, progress)
    node_types = {}  # unknown: a node that fits may still join, so the runs wait, with a warning
    driver._check_cluster(spec, progress)
    assert capsys.readouterr().out.startswith("warning: each run asks for 16 CPU + 1 GPU: 0 of the 2")


# ------------------------------------------------------------------------------------ cluster config


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_shipped_cluster_config_passes_with_a_note_about_the_placeholder():
    output = cli("check-cluster", REPO / "cluster.yaml", code=0, says="passes the checks `ray up` runs")
    assert output.startswith("ok ") and "note: the setup commands install from the placeholder" in output


def test_missing_cluster_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("check-cluster", says="cluster.yaml: no such cluster config file")


def _edit(*path, value=None, drop=False):
    def mutate(config: dict) -> None:
        *parents, last = path
        for key in parents:
            config = config[key]
        if drop:
            del config[last]
        else:
            config[last] = value

    return mutate


WORKER = ("available_node_types", "gpu_worker")
BAD_CLUSTERS = [
    ("unknown-key", _edit("max_wrokers", value=4), "max_wrokers: unknown key; allowed keys: auth,"),
    (
        "unknown-node-key",
        _edit(*WORKER, "instance_type", value="g5.2xlarge"),
        "gpu_worker.instance_type: unknown",
    ),
    ("wrong-type", _edit("max_workers", value="4"), "max_workers: '4' is not of type 'integer'"),
    (
        "fractional-node-gpu",
        _edit(*WORKER, "resources", "GPU", value=0.5),
        "resources.GPU: 0.5 is not of type",
    ),
    ("node-config-missing", _edit(*WORKER, "node_config", drop=True), "'node_config' is a required property"),
    ("no-provider", _edit("provider", drop=True), "provider: missing or without a type; e.g. provider:"),
    (
        "unknown-provider",
        _edit("provider", "type", value="awz"),
        "provider.type: Unsupported node provider: awz",
    ),
    (
        "min-above-max",
        _edit(*WORKER, "min_workers", value=5),
        "max_workers` is smaller than the sum of `min_w",
    ),
    ("unknown-head-type", _edit("head_node_type", value="cpu_head"), "`head_node_type` must be one of"),
    (
        "commands-not-list",
        _edit("setup_commands", value="pip install ckpd-sweep"),
        "setup_commands: 'pip inst",
    ),
    (
        "ckpd-sweep-not-installed",
        _edit("setup_commands", value=["python3 -m pip install torch"]),
        "setup_commands or head_setup_commands: no command installs ckpd-sweep on node type 'head'",
    ),
]


@pytest.mark.parametrize("mutate, says", [c[1:] for c in BAD_CLUSTERS], ids=[c[0] for c in BAD_CLUSTERS])
def test_bad_cluster_config(tmp_path, cluster, mutate, says):
    broken = copy.deepcopy(cluster)
    mutate(broken)
    path = write_spec(tmp_path, broken, "cluster.yaml")
    cli("check-cluster", path, says=(f"error: {path}: ", says))


@pytest.mark.parametrize(
    "text, says",
    [
        ("provider: {type: aws\n", "not valid YAML at line 2, column 1: expected ',' or '}'"),
        ("- head\n", "the top level must be a mapping of cluster settings (cluster_name, provider,"),
    ],
    ids=["not-yaml", "not-a-mapping"],
)
def test_unreadable_cluster_config(tmp_path, text, says):
    path = write_spec(tmp_path, text, "cluster.yaml")
    cli("check-cluster", path, says=(f"error: {path}: ", says))


# ------------------------------------------------------------------------------------ dataset folder


def dataset_spec(tmp_path: Path, dataset: str, data_root: Path) -> Path:
    trial = {"benchmark": dataset, "data_root": str(data_root), "benchmark_kwargs": {"num_sessions": 2}}
    return write_spec(tmp_path, {"name": "data", "trial": trial})


@pytest.mark.parametrize(
    "dataset, says",
    [
        (
            "cifar100",
            "CIFAR-100 not found under {root}: expected {root}/cifar-100-python/{{train,test,meta}}",
        ),
        ("mini_imagenet", "miniImageNet not found under {root}: expected either {root}/MINI-ImageNet/"),
        ("cub200", "CUB-200-2011 not found under {root}: expected {root}/CUB_200_2011/ with images.txt"),
    ],
    ids=["cifar100", "mini_imagenet", "cub200"],
)
def test_data_root_without_the_dataset(tmp_path, no_ray, dataset, says):
    root = tmp_path / "downloads"
    root.mkdir()
    spec = dataset_spec(tmp_path, dataset, root)
    launch_fails(tmp_path, spec, ("trial.data_root: ", says.format(root=root)))


def test_data_root_that_does_not_exist(tmp_path, no_ray):
    root = tmp_path / "cifra"
    launch_fails(tmp_path, dataset_spec(tmp_path, "cifar100", root), f"CIFAR-100 not found under {root}")


def test_corrupt_cifar_pickle(tmp_path, no_ray):
    folder = tmp_path / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"\x80\x04truncated")
    spec = dataset_spec(tmp_path, "cifar100", tmp_path / "cifar")
    launch_fails(tmp_path, spec, f"{folder / 'meta'} is not a readable CIFAR-100 pickle")


def test_cifar_with_too_few_images(tmp_path, no_ray):
    folder = tmp_path / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    labels = list(range(100))
    for name in ("train", "test"):
        blob = {b"data": np.zeros((100, 3072), np.uint8), b"fine_labels": labels}
        (folder / name).write_bytes(pickle.dumps(blob))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"c%d" % c for c in labels]}))
    spec = dataset_spec(tmp_path, "cifar100", tmp_path / "cifar")
    launch_fails(tmp_path, spec, "cifar100 session_1.txt: 29")  # of its 30000 rows, 29xxx are past 100


def test_mini_imagenet_split_csv_missing(tmp_path, no_ray):
    root = tmp_path / "mini"
    (root / "images").mkdir(parents=True)
    (root / "split").mkdir()
    (root / "split" / "train.csv").write_text("filename,label\n")
    spec = dataset_spec(tmp_path, "mini_imagenet", root)
    launch_fails(tmp_path, spec, f"miniImageNet: cannot read {root / 'split' / 'test.csv'}")


def test_cub_table_missing(tmp_path, no_ray):
    folder = tmp_path / "cub" / "CUB_200_2011"
    folder.mkdir(parents=True)
    (folder / "images.txt").write_text("1 001.Black_footed_Albatross/a.jpg\n")
    spec = dataset_spec(tmp_path, "cub200", tmp_path / "cub")
    launch_fails(tmp_path, spec, f"CUB-200-2011: cannot read {folder / 'train_test_split.txt'}")


@pytest.fixture
def cub_root(tmp_path) -> Path:
    return write_cub200(tmp_path / "cub")  # the real layout, every image a hard link: 0.2 s


def test_cub_table_line_malformed(tmp_path, cub_root, no_ray):
    images = cub_root / "images.txt"
    images.write_text(images.read_text() + "11789 \n")
    spec = dataset_spec(tmp_path, "cub200", cub_root.parent)
    launch_fails(tmp_path, spec, f"{images}, line 11789: expected '<id> <value>', found '11789 '")


def test_listed_image_file_missing(tmp_path, cub_root, no_ray):
    entry = read_split("cub200", "session_1.txt")[0]
    (cub_root.parent / entry).unlink()
    spec = dataset_spec(tmp_path, "cub200", cub_root.parent)
    launch_fails(
        tmp_path, spec, ("cub200 training images: 1 image file(s) are missing, e.g.", Path(entry).name)
    )


@pytest.mark.slow
def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    """The same as a user sees it: a new process, stdout and stderr, no Ray log lines either."""
    spec = dataset_spec(tmp_path, "cifar100", tmp_path / "cifra")
    done = subprocess.run(
        [sys.executable, "-m", "sweeps", "launch", str(spec), "--results", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"},
    )
    assert done.returncode == BAD_INPUT
    assert done.stdout.startswith("error: ") and done.stdout.count("\n") == 1, done.stdout
    assert "CIFAR-100 not found under" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------------- checkpoint file


def checkpoint_spec(tmp_path: Path, checkpoint: Path) -> Path:
    trial = {"backbone_kwargs": dict(TINY_BACKBONE), "backbone_checkpoint": str(checkpoint), "rank": 4}
    return write_spec(tmp_path, {"name": "weights", "trial": trial})


def test_backbone_checkpoint_missing(tmp_path, no_ray):
    path = tmp_path / "vit_tiny.pth"
    spec = checkpoint_spec(tmp_path, path)
    launch_fails(
        tmp_path, spec, ("trial.backbone_checkpoint: ", f"backbone_checkpoint='{path}' does not exist")
    )


@pytest.mark.parametrize(
    "name, says",
    [
        ("weights.pth", "torch.load(weights_only=True) refused it: not a file of tensors"),
        ("weights.safetensors", "(Error while deserializing header"),
    ],
    ids=["pth", "safetensors"],
)
def test_backbone_checkpoint_not_a_checkpoint(tmp_path, no_ray, name, says):
    path = tmp_path / name
    path.write_text("<html>404 Not Found</html>")
    launch_fails(tmp_path, checkpoint_spec(tmp_path, path), (f"{path} could not be loaded into", says))


@pytest.mark.parametrize(
    "other, says",
    [
        ({"depth": 2}, "(12 key(s) unexpected, e.g. blocks.1."),
        ({"embed_dim": 64}, "shape(s) differ, e.g. pos_embed is [1, 16, 64] in the file, [1, 16, 32] in"),
    ],
    ids=["extra-keys", "other-shapes"],
)
def test_backbone_checkpoint_of_another_architecture(tmp_path, no_ray, other, says):
    path = tmp_path / "other.safetensors"
    model = create_backbone("vit_tiny_convstem", **{**TINY_BACKBONE, **other})
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    output = launch_fails(tmp_path, checkpoint_spec(tmp_path, path), says)
    assert "it must hold that model's weights, with the same backbone_kwargs" in output


def test_valid_dataset_and_checkpoint_pass_the_local_check(tmp_path, cub_root):
    """The check refuses nothing a trial would accept."""
    path = tmp_path / "good.pth"
    torch.save({"state_dict": create_backbone("vit_tiny_convstem", **TINY_BACKBONE).state_dict()}, path)
    check_local_inputs(load_spec(checkpoint_spec(tmp_path, path)))
    check_local_inputs(load_spec(dataset_spec(tmp_path, "cub200", cub_root.parent)))


# ------------------------------------------------------------------------------------------ CLI flags


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A finished two-trial rank sweep folder, written by the results store (no Ray)."""
    spec = parse_spec({"name": "rank", "space": {"rank": {"choice": [4, 8]}}})
    location = Location.of(tmp_path / "results") / "rank"
    create_sweep_folder(location, spec)
    store = ResultsStore(location)
    store.write_sessions([session_row(f"t{r}", s, rank=r) for r in (4, 8) for s in range(3)])
    store.write_trials([trial_row(f"t{r}", rank=r) for r in (4, 8)])
    return tmp_path / "results" / "rank"


USAGE_ERRORS = [
    ("unknown-command", ["lanuch", "spec.yaml"], "No such command 'lanuch'"),
    ("unknown-option", ["launch", "spec.yaml", "--num-gpus", "1"], "No such option: --num-gpus"),
    ("missing-argument", ["validate"], "Missing argument 'spec'"),
    ("cpus-zero", ["launch", "spec.yaml", "--num-cpus", "0"], "Invalid value for '--num-cpus'"),
    ("cpus-negative", ["resume", "results/rank", "--num-cpus", "-2"], "Invalid value for '--num-cpus'"),
    ("cpus-not-a-number", ["launch", "spec.yaml", "--num-cpus", "two"], "Invalid value for '--num-cpus'"),
    ("negative-digits", ["table", "results/rank", "--rows", "rank", "--digits", "-1"], "Invalid value for"),
]


@pytest.mark.parametrize("args, says", [c[1:] for c in USAGE_ERRORS], ids=[c[0] for c in USAGE_ERRORS])
def test_usage_error(tmp_path, monkeypatch, no_ray, args, says):
    monkeypatch.chdir(tmp_path)
    output = cli(*args, says=says)
    assert "Usage: " in output and "--help" in output
    assert list(tmp_path.iterdir()) == []


BAD_TABLE_FLAGS = [
    ("rows-not-swept", ["--rows", "lr"], "unknown rows parameter 'lr'; choose one of: rank"),
    ("cols-not-swept", ["--rows", "rank", "--cols", "lr"], "unknown cols 'lr'; choose one of: session"),
    (
        "unknown-metric",
        ["--rows", "rank", "--metric", "accuracy"],
        "unknown metric 'accuracy'; choose one of:",
    ),
    (
        "unknown-format",
        ["--rows", "rank", "--format", "html"],
        "--format 'html' is unknown; choose one of markdown",
    ),
    (
        "unknown-objective",
        ["--objective", "mean"],
        "objective 'mean' is unknown; choose one of avg, last, hm",
    ),
    (
        "baseline-not-swept",
        ["--baseline", "lr=0.1"],
        "--baseline lr: not a swept parameter; choose from rank",
    ),
    ("baseline-no-row", ["--baseline", "rank=64"], "--baseline rank=64 names no completed configuration"),
    ("baseline-not-key-value", ["--baseline", "rank"], "--baseline 'rank': write key=value, e.g."),
    (
        "baseline-with-rows",
        ["--rows", "rank", "--baseline", "rank=4"],
        "--objective and --baseline apply to the configuration table: leave out --rows",
    ),
]


@pytest.mark.parametrize("flags, says", [c[1:] for c in BAD_TABLE_FLAGS], ids=[c[0] for c in BAD_TABLE_FLAGS])
def test_bad_table_flag(sweep, flags, says):
    cli("table", sweep, *flags, says=("error: ", says))


def test_report_parameter_not_swept(sweep, tmp_path):
    cli(
        "report",
        sweep,
        "--param",
        "lr",
        "--out",
        tmp_path / "png",
        says="unknown parameter 'lr'; choose one of: rank",
    )
    assert not (tmp_path / "png").exists()


def test_report_out_is_a_file(sweep, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    cli("report", sweep, "--out", out, says=f"--out {out}: cannot write the PNGs there (File exists: {out})")
    assert out.read_text() == "mine"


# ------------------------------------------------------------------------------------- results folder


@pytest.mark.parametrize("command", ["status", "table", "report", "resume"])
def test_not_a_sweep_folder(tmp_path, no_ray, command):
    extra = ["--rows", "rank"] if command == "table" else []
    cli(
        command,
        tmp_path / "results",
        *extra,
        says="is not a sweep results folder (no spec.yaml): pass results/",
    )


def test_a_file_instead_of_a_sweep_folder(tmp_path):
    path = tmp_path / "sessions.parquet"
    path.write_bytes(b"PAR1")
    cli("status", path, says=f"{path} is not a sweep results folder (no spec.yaml)")


def test_table_of_a_sweep_without_rows_yet(tmp_path):
    location = Location.of(tmp_path / "results") / "rank"
    create_sweep_folder(location, parse_spec({"name": "rank", "space": {"rank": {"choice": [4, 8]}}}))
    cli(
        "table", location.local_path, "--rows", "rank", says="has no session rows yet, so there is nothing to"
    )


def test_launch_into_a_folder_that_holds_a_sweep(tmp_path, sweep, icons_cache, no_ray):
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    spec = write_spec(tmp_path, tiny_spec(icons_cache, "rank"))
    cli("launch", spec, "--results", sweep.parent, says=(f"{sweep} already holds sweep results", "resume"))
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("*")) == before
