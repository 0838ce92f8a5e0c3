"""Whether a run's resources (``resources:`` of the spec) can be had: on this machine, checked before Ray
starts, so a request nothing can satisfy fails at once instead of leaving Ray waiting forever; on a
cluster, which of its nodes and autoscaler node types fit it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from .spec import SpecError, SweepSpec

log = logging.getLogger(__name__)
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # the config `ray up` leaves on the head node


def request(spec: SweepSpec) -> dict[str, float]:
    """One run's resources in Ray's names."""
    return {"CPU": spec.resources.get("cpu", 1), "GPU": spec.resources.get("gpu", 0)}


def local_resources(num_cpus: int | None) -> dict[str, float]:
    """What a local Ray gets: ``--num-cpus`` (else every CPU) and the CUDA devices PyTorch sees."""
    import torch

    return {"CPU": num_cpus or os.cpu_count() or 1, "GPU": torch.cuda.device_count()}


def check_local(spec: SweepSpec, machine: dict[str, float], num_cpus: int | None = None) -> None:
    """Refuse a run that asks for more CPUs or GPUs than the local Ray has (it would wait forever)."""
    where = f"{spec.path or '<sweep spec>'}: "
    asked = request(spec)
    if asked["CPU"] > machine["CPU"] and num_cpus:
        raise SpecError(
            f"{where}resources.cpu: {asked['CPU']:g} CPUs per run, but the local Ray has {num_cpus} "
            f"(--num-cpus {num_cpus}): raise --num-cpus, or lower resources.cpu to at most {num_cpus}"
        )
    if asked["CPU"] > machine["CPU"]:
        raise SpecError(
            f"{where}resources.cpu: {asked['CPU']:g} CPUs per run, but this machine has {machine['CPU']:g}: "
            f"lower resources.cpu to at most {machine['CPU']:g}, or run on a cluster with bigger nodes "
            "(--address)"
        )
    if asked["GPU"] > machine["GPU"]:
        has = f"{machine['GPU']:g}" if machine["GPU"] else "none (PyTorch sees no CUDA device)"
        raise SpecError(
            f"{where}resources.gpu: {asked['GPU']:g} GPU(s) per run, but this machine has {has}: set "
            "resources.gpu: 0 (and trial.device: cpu), or run on a cluster with GPU nodes (--address)"
        )


def fits(resources: dict[str, Any], asked: dict[str, float]) -> bool:
    return all(float(resources.get(name, 0)) >= amount for name, amount in asked.items() if amount)


def describe_fit(
    asked: dict[str, float], nodes: list[dict[str, Any]], node_types: dict[str, dict[str, Any]]
) -> tuple[str, int, list[str] | None]:
    """Which of the cluster's live nodes (``ray.nodes()``) and autoscaler node types can take one run.

    Returns a sentence saying so, how many live nodes fit, and the node types that fit (None when the
    autoscaler's node types are unknown)."""
    want = " + ".join(f"{amount:g} {name}" for name, amount in asked.items() if amount)
    alive = [n["Resources"] for n in nodes if n.get("Alive")]
    fitting = sum(fits(r, asked) for r in alive)
    sizes = "; ".join(sorted({_size(r) for r in alive}))
    text = f"each run asks for {want}: {fitting} of the {len(alive)} live node(s) fit it ({sizes})"
    if not node_types:
        return text + "; the autoscaler's node types are unknown", fitting, None
    typed = [name for name, r in node_types.items() if fits(r, asked)]
    listed = ", ".join(f"{name} ({_size(node_types[name])})" for name in typed) or "none"
    return f"{text}; autoscaler node types that fit it: {listed}", fitting, typed


def cluster_fit(asked: dict[str, float]) -> tuple[str, int, list[str] | None]:
    """``describe_fit`` for the cluster this driver joined."""
    import ray

    return describe_fit(asked, ray.nodes(), autoscaler_node_types())


def autoscaler_node_types() -> dict[str, dict[str, Any]]:
    """The node types the cluster's autoscaler may start and their resources ({} when unknown): from the
    cluster config the autoscaler reports to Ray, else from the config `ray up` left on this node."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception as exc:  # an older or newer Ray without it
        log.debug("no cluster config from Ray: %s", exc)
        config = None
    if config is not None and config.node_group_configs:
        return {g.name: dict(g.resources) for g in config.node_group_configs if g.max_count != 0}
    path = Path(BOOTSTRAP_CONFIG).expanduser()
    try:
        types = yaml.safe_load(path.read_text()).get("available_node_types", {}) if path.exists() else {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return {name: node.get("resources", {}) for name, node in types.items() if node.get("max_workers") != 0}


def _size(resources: dict[str, Any]) -> str:
    gpus = float(resources.get("GPU", 0))
    return f"{float(resources.get('CPU', 0)):g} CPU" + (f", {gpus:g} GPU" if gpus else "")
