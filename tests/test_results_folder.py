"""The results folder's format marker, and the errors for folders and clusters ckpd-sweep cannot use."""

from __future__ import annotations

import json
import socket

import pytest
import yaml
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.folder import MARKER, RESULTS_FORMAT, SPEC_COPY, create_sweep_folder, open_sweep_folder
from sweeps.results import ResultsStore, package_version
from sweeps.spec import SpecError, parse_spec
from sweeps.storage import Location

from .helpers import session_row, tiny_spec, trial_row

runner = CliRunner()


@pytest.fixture
def sweep(tmp_path, icons_cache) -> Location:
    """A sweep folder with one finished trial, as `launch` leaves it (without Ray)."""
    spec = parse_spec(tiny_spec(icons_cache, "done", space={"rank": {"grid": [2, 4]}}))
    location = Location.of(tmp_path / "results" / "done")
    create_sweep_folder(location, spec)
    store = ResultsStore(location)
    store.write_sessions([session_row("t1", s, rank=2) for s in range(3)])
    store.write_trials([trial_row("t1", rank=2)])
    return location


def test_new_folder_records_who_wrote_it(sweep):
    marker = json.loads((sweep / MARKER).read_text())
    assert marker["format"] == RESULTS_FORMAT and marker["version"] == package_version()
    location, spec = open_sweep_folder(sweep.local_path)
    assert location == sweep and spec.name == "done" and list(spec.space) == ["rank"]


def test_folder_from_a_newer_version_is_refused_by_every_command(sweep):
    (sweep / MARKER).write_text(json.dumps({"format": RESULTS_FORMAT + 1, "version": "9.0.0"}))
    for command in (["status"], ["table", "--rows", "rank"], ["report"], ["resume"]):
        done = runner.invoke(app, [command[0], str(sweep), *command[1:]])
        assert done.exit_code == 2, (command, done.output)
        text = " ".join(done.output.split())
        assert "written by ckpd-sweep 9.0.0" in text and "ckpd-sweep==9.0.0" in text, text
        assert "Traceback" not in done.output
    assert not (sweep.local_path / "report").exists()


def test_folder_from_before_the_marker_is_read_but_not_resumed(sweep):
    (sweep / MARKER).delete()
    status = runner.invoke(app, ["status", str(sweep)])
    assert status.exit_code == 0 and "1 completed" in status.output, status.output
    with pytest.raises(SpecError, match=rf"results format 1\); .* can only resume format {RESULTS_FORMAT}"):
        open_sweep_folder(sweep, resume=True)
    done = runner.invoke(app, ["resume", str(sweep)])
    assert done.exit_code == 2 and "launch the sweep again" in " ".join(done.output.split())


def test_corrupt_marker_corrupt_spec_and_missing_spec_are_named(sweep, tmp_path):
    (sweep / MARKER).write_text("{not json")
    done = runner.invoke(app, ["status", str(sweep)])
    assert done.exit_code == 2 and f"{MARKER} is corrupt" in " ".join(done.output.split())
    (sweep / MARKER).delete()
    (sweep / SPEC_COPY).write_text("name: [unclosed")
    done = runner.invoke(app, ["status", str(sweep)])
    assert done.exit_code == 2 and "spec.yaml: not valid YAML at line" in " ".join(done.output.split())
    assert "Traceback" not in done.output
    (sweep / SPEC_COPY).delete()
    done = runner.invoke(app, ["table", str(sweep), "--rows", "rank"])
    assert done.exit_code == 2 and "is not a sweep results folder" in " ".join(done.output.split())


def test_unreachable_address_is_one_clear_error(tmp_path, icons_cache):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = tmp_path / "far.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(icons_cache, "far")))
    results = tmp_path / "results"
    done = runner.invoke(
        app, ["launch", str(spec), "--results", str(results), "--address", f"127.0.0.1:{port}"]
    )
    text = " ".join(done.output.split())
    assert done.exit_code == 2 and f"cannot join the Ray cluster at --address 127.0.0.1:{port}" in text, text
    assert "ray start --head" in text and "Traceback" not in done.output
    assert not results.exists()
