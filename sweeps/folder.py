"""A sweep's results folder: what it holds, the format marker, and the checks before reading or resuming it.

``<results>/<sweep>/`` holds ``spec.yaml`` (the spec as run), ``ckpd-sweep.json`` (who wrote the folder and
when, in which results format, and whether it reuses the store), ``sessions/`` and ``trials/`` (Parquet),
``optuna.journal`` and ``tune/`` (Ray Tune's experiment and trial checkpoints); base sessions and
finished runs live in the store every sweep under the root shares (``store``), or in ``base/`` for a
sweep launched with ``--no-reuse``. It may be a local folder or a URI (see ``storage``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import yaml

from .results import git_commit, package_version
from .spec import SpecError, SweepSpec, parse_spec, yaml_problem
from .storage import Location
from .study import STUDY_FILE

SPEC_COPY = "spec.yaml"
MARKER = "ckpd-sweep.json"
TUNE_DIR = "tune"
BASE_DIR = "base"
# 1: folders written before the marker existed (no node_id, no started_at_session columns).
# 2: adds the marker, node_id and started_at_session.
# 3: the Optuna journal holds one trial per configuration plus one study of runs per seed (Parquet as 2).
# 4: base sessions and finished runs in the results root's store; reused_from, reused_seconds, store_key.
# 5: Parquet as 4; Tune's saved state holds the renamed modules (driver, scheduler) and the stop-aware
#    callback and searcher, so a format-4 sweep is read but not resumed.
RESULTS_FORMAT = 5
_TIMES = ("created_at", "finished_at")  # marker entries: when the folder was made, when a driver finished it
READABLE_FORMATS = (1, 2, 3, 4, 5)


def sweep_location(spec: SweepSpec, results_root: str | os.PathLike | None = None) -> Location:
    """``<results_root or spec.results>/<spec.name>`` as a local folder or URI."""
    return Location.of(results_root if results_root is not None else spec.results) / spec.name


def create_sweep_folder(location: Location, spec: SweepSpec, reuse: bool = True) -> list[Location]:
    """Start a new sweep's folder, refusing one that already holds a sweep.

    Returns what to delete if the launch fails before any trial runs: the outermost folder this
    created, or the files it wrote into a folder that was there already.
    """
    try:
        return _create(location, spec, reuse)
    except OSError as exc:  # no such bucket, no credentials, no permission, endpoint down
        raise SpecError(f"cannot write to the results location {location}: {exc}") from None


def _create(location: Location, spec: SweepSpec, reuse: bool) -> list[Location]:
    if (location / TUNE_DIR).exists() or (location / SPEC_COPY).exists():
        raise SpecError(
            f"{location} already holds sweep results: continue it with `ckpd-sweep resume {location}` "
            "or launch into another folder with --results"
        )
    created = [location / name for name in (MARKER, SPEC_COPY, STUDY_FILE)]
    if location.is_local and not location.exists():
        outermost = location.local_path
        while not outermost.parent.exists():
            outermost = outermost.parent
        created = [Location.of(outermost)]
    marker = {
        "format": RESULTS_FORMAT,
        "version": package_version(),
        "git_commit": git_commit(),
        "reuse": reuse,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (location / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    (location / SPEC_COPY).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return created


def open_sweep_folder(
    where: str | os.PathLike | Location, *, resume: bool = False
) -> tuple[Location, SweepSpec]:
    """The folder and its spec, after checking it is a sweep folder this version can read (or resume)."""
    location = Location.of(where)
    spec_file = location / SPEC_COPY
    if not spec_file.exists():
        raise SpecError(
            f"{location} is not a sweep results folder (no {SPEC_COPY}): pass results/<sweep name>"
        )
    written = _written_format(location)
    usable = (RESULTS_FORMAT,) if resume else READABLE_FORMATS
    if written["format"] not in usable:
        verb = "resume" if resume else "read"
        raise SpecError(
            f"{location} was written by ckpd-sweep {written['version']} "
            f"(results format {written['format']}); this ckpd-sweep {package_version()} "
            f"can only {verb} format "
            f"{' or '.join(map(str, usable))}: use the version that wrote it "
            f"(pip install 'ckpd-sweep=={written['version']}') or launch the sweep again into a new folder"
        )
    if resume and not (location / TUNE_DIR).exists():
        raise SpecError(f"{location} has no {TUNE_DIR}/ folder: its sweep never started, launch it again")
    try:
        data = yaml.safe_load(spec_file.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_file}: not valid YAML{yaml_problem(exc)}") from None
    path = spec_file.local_path if spec_file.is_local else None
    return location, parse_spec(data, path=path, name_default=location.name)


def reuses_store(location: Location) -> bool:
    """Whether the sweep at ``location`` was launched to reuse (and fill) its root's store."""
    return _written_format(location).get("reuse", False)


def created_at(location: Location) -> datetime | None:
    """When the sweep's folder was made; None when its marker does not say (made by an older version)."""
    return _written_format(location).get("created_at")


def finished_at(location: Location) -> datetime | None:
    """When the sweep's last driver ended with every run done; None while it runs, was stopped, or died."""
    return _written_format(location).get("finished_at")


def mark_finished(location: Location, finished: bool) -> None:
    """Record in the marker that a driver ended the sweep with every run done, or (a resume starting)
    that one drives it again: ``status`` says finished instead of giving an ETA."""
    marker = location / MARKER
    if not marker.exists():
        return  # a folder from before the marker: it stays as it was written
    data = json.loads(marker.read_text())
    data.pop("finished_at", None)
    if finished:
        data["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    marker.write_text(json.dumps(data, indent=2) + "\n")


def _written_format(location: Location) -> dict:
    marker = location / MARKER
    if not marker.exists():
        return {"format": 1, "version": "0.1.0"}
    try:
        data = json.loads(marker.read_text())
        return {
            "format": int(data["format"]),
            "version": str(data.get("version", "unknown")),
            "reuse": bool(data.get("reuse", True)),
            **{key: datetime.fromisoformat(data[key]) for key in _TIMES if key in data},
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise SpecError(
            f"{marker} is corrupt ({exc}): it should name the results format that wrote the folder"
        ) from None
