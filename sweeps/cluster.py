"""``ckpd-sweep check-cluster``: a Ray cluster launcher config checked offline, as ``ray up`` checks it
before contacting the cloud, plus what this project needs of it."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .spec import yaml_problem

# A setup command that installs this project: ``pip install "ckpd-sweep @ git+..."``, ``pip install -e
# ckpd-sweep``, ``cd ckpd-sweep && pip install .`` ...
_INSTALLS_US = re.compile(r"\binstall\b.*\bckpd[-_]sweep\b|\bckpd[-_]sweep\b.*\binstall\b", re.IGNORECASE)
_PLACEHOLDER = "github.com/OWNER/"
_EXAMPLE = 'python3 -m pip install "ckpd-sweep @ git+https://github.com/<you>/ckpd-sweep"'


def check_cluster_config(path: Path) -> tuple[str, list[str]]:
    """Run on ``path`` what ``ray up`` runs before it contacts the provider (Ray's defaults for the
    provider merged in, then Ray's schema and node-type rules), then check that the setup commands of
    every node type install ckpd-sweep. Returns a one-line summary and notes (a placeholder left in);
    raises SpecError naming the file and the offending key."""
    config = _read(path)
    prepared = _ray_up_checks(path, config)
    node_types = prepared.get("available_node_types", {})
    every_command = []
    for name, node in node_types.items():
        commands, key = _setup_commands(prepared, name, node)
        if not any(_INSTALLS_US.search(command) for command in commands):
            raise SpecError(
                f"{path}: {key}: no command installs ckpd-sweep on node type {name!r}, so Ray there cannot "
                f"run the trials; add e.g. {_EXAMPLE}"
            )
        every_command += commands
    notes = []
    if any(_PLACEHOLDER in command for command in every_command):
        notes.append(
            f"the setup commands install from the placeholder {_PLACEHOLDER}...: put your repository there"
        )
    import ray

    summary = (
        f"{path}: cluster {prepared.get('cluster_name', '?')!r} on {config['provider']['type']} passes "
        f"the checks `ray up` runs before contacting the cloud (Ray {ray.__version__}: defaults, schema, "
        f"node types {', '.join(node_types)}, up to {prepared.get('max_workers', 0)} workers) and every "
        "node type installs ckpd-sweep"
    )
    return summary, notes


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError(
            f"{path}: no such cluster config file: pass the YAML that `ray up` takes, e.g. cluster.yaml"
        )
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML{yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the cluster config: {exc}") from None
    if not isinstance(config, dict):
        got = "nothing" if config is None else f"a {type(config).__name__}"
        raise SpecError(
            f"{path}: the top level must be a mapping of cluster settings (cluster_name, provider, "
            f"available_node_types, ...), got {got}"
        )
    provider = config.get("provider")
    if not isinstance(provider, dict) or not isinstance(provider.get("type"), str):
        raise SpecError(
            f"{path}: provider: missing or without a type; e.g. provider: {{type: aws, region: us-west-2}}"
        )
    return config


def _ray_up_checks(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """``validate_config(prepare_config(config))`` as ``ray up`` calls them; the prepared config."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    ray_log = logging.getLogger("ray.autoscaler._private.util")
    level = ray_log.level
    ray_log.setLevel(logging.WARNING)  # its INFO lines about the defaults it sets are not news
    try:
        prepared = prepare_config(copy.deepcopy(config))
        validate_config(prepared)
        return prepared
    except jsonschema.ValidationError as exc:
        raise SpecError(f"{path}: {_schema_problem(exc)}") from None
    except NotImplementedError as exc:  # Ray's words for a provider type it does not know
        raise SpecError(f"{path}: provider.type: {exc}; e.g. aws, gcp, azure") from None
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        try:  # the defaults trip over some wrong values before the schema sees them: ask the schema
            validate_config(copy.deepcopy(config))
        except jsonschema.ValidationError as inner:
            raise SpecError(f"{path}: {_schema_problem(inner)}") from None
        except Exception:  # the file lacks what the defaults add: the first error stands
            pass
        problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SpecError(f"{path}: `ray up` would refuse it: {problem}") from None
    finally:
        ray_log.setLevel(level)


def _setup_commands(prepared: dict[str, Any], name: str, node: dict[str, Any]) -> tuple[list[str], str]:
    """What ``ray up`` runs to set up a node of type ``name`` (after ``prepare_config`` merged
    ``setup_commands`` into the head and worker lists), and the key to fix when it lacks something."""
    if name == prepared.get("head_node_type"):
        return prepared.get("head_setup_commands", []), "setup_commands or head_setup_commands"
    if "worker_setup_commands" in node:  # a node type's own list replaces the global ones
        return node["worker_setup_commands"], f"available_node_types.{name}.worker_setup_commands"
    return prepared.get("worker_setup_commands", []), "setup_commands or worker_setup_commands"


def _schema_problem(exc: Any) -> str:
    """A jsonschema error of Ray's cluster schema as ``<dotted key>: <problem>``, unknown keys by name."""
    where = ".".join(str(part) for part in exc.absolute_path)
    if exc.validator == "additionalProperties" and isinstance(exc.instance, dict):
        allowed = sorted(exc.schema.get("properties", {}))
        extra = sorted(str(key) for key in exc.instance if key not in allowed)
        key = ".".join(part for part in (where, extra[0] if extra else "") if part)
        return f"{key}: unknown key; allowed keys: {', '.join(allowed)}"
    return f"{where or 'top level'}: {exc.message}"
