"""cluster.yaml passes the checks ``ray up`` runs before touching AWS (defaults, then schema), offline."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
PAPER_SPECS = sorted((REPO / "search_spaces" / "paper").glob("*.yaml"))


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def ray_up_checks(config: dict) -> None:
    """What ``ray up`` does with the file before the provider: merge the AWS defaults, then validate."""
    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_passes_ray_validation(cluster):
    ray_up_checks(cluster)
    assert cluster["provider"] == {"type": "aws", "region": "us-west-2", "cache_stopped_nodes": False}
    assert "docker" not in cluster
    worker = cluster["available_node_types"]["gpu_worker"]
    assert (worker["min_workers"], worker["max_workers"], worker["resources"]["GPU"]) == (0, 4, 1)
    setup = " ".join(cluster["setup_commands"] + cluster["worker_setup_commands"])
    assert "pip install" in setup and "ckpd-sweep @ git+" in setup and "ckpd-sweep[mamba] @ git+" in setup


def _set(path: tuple[str, ...], value):
    def mutate(config: dict) -> None:
        *parents, last = path
        for key in parents:
            config = config[key]
        config[last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _set(("bogus_key",), 1),
        _set(("max_workers",), "4"),
        _set(("available_node_types", "gpu_worker", "resources", "GPU"), 0.5),
        _set(("available_node_types", "gpu_worker", "instance_type"), "g5.2xlarge"),
        _set(("idle_timeout_minutes",), "ten"),
    ],
    ids=[
        "unknown-top-level-key",
        "max-workers-string",
        "fractional-node-gpu",
        "unknown-node-key",
        "idle-timeout-string",
    ],
)
def test_broken_copies_fail_the_schema(cluster, mutate):
    broken = copy.deepcopy(cluster)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        ray_up_checks(broken)


def test_more_min_workers_than_max_fails(cluster):
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_workers"] = 5
    with pytest.raises(ValueError, match="max_workers"):
        ray_up_checks(broken)


@pytest.mark.parametrize("path", PAPER_SPECS, ids=lambda p: p.stem)
def test_gpu_worker_fits_the_paper_trials(cluster, path):
    spec = load_spec(path)
    worker = cluster["available_node_types"]["gpu_worker"]["resources"]
    per_node = min(worker["CPU"] // spec.resources["cpu"], worker["GPU"] // spec.resources["gpu"])
    assert per_node >= 2  # two half-GPU trials a node, as the paper specs' comments promise
    assert spec.max_concurrent <= per_node * cluster["max_workers"]
