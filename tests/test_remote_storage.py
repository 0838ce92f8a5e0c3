"""Results, the Optuna study and base sessions on a pyarrow filesystem URI: ``file://`` and S3.

S3 is a real S3 API served by moto on localhost, reached through pyarrow's own S3 client with an
``endpoint_override`` in the URI, as a cluster without a shared disk would reach its bucket.
"""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from sweeps.base_sessions import CACHE_ENV, base_checkpoint, ensure_base_session
from sweeps.cli import app
from sweeps.results import ResultsStore, read_sessions, read_trials
from sweeps.storage import Location
from sweeps.study import StudyRef, load_study

from .helpers import cli_process, session_row, tiny_spec, trial_row

runner = CliRunner()


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path):
    return f"file://{tmp_path}/results" if request.param == "file" else request.getfixturevalue("s3_root")


def test_results_store_round_trip_on_a_uri(root):
    sweep = Location.of(root) / "store"
    store = ResultsStore(sweep)
    assert store.write_sessions([session_row("t1", s, rank=4) for s in range(3)]) == 3
    assert store.write_trials([trial_row("t1", rank=4)]) == 1
    again = ResultsStore(sweep)  # a new driver (resume) sees what the first one wrote
    assert again.write_sessions([session_row("t1", 2, rank=4), session_row("t1", 3, rank=4)]) == 1
    sessions, trials = read_sessions(str(sweep)), read_trials(str(sweep))
    assert sorted(sessions.session) == [0, 1, 2, 3] and list(trials.trial_id) == ["t1"]
    assert (sessions["sweep"] == "store").all()
    names = (sweep / "sessions").files()
    assert len(names) == 2 and all(n.startswith("part-") and n.endswith(".parquet") for n in names)
    # plain pyarrow on the same filesystem reads the folder with no project code
    folder = sweep / "sessions"
    assert pq.read_table(folder.path, filesystem=folder.fs).num_rows == 4


def test_study_journal_on_a_uri_survives_reopening(root):
    where = Location.of(root) / "study" / "optuna.journal"
    study = StudyRef(where, "study", "max").study
    for value in (0.2, 0.7):
        trial = study.ask()
        trial.report(value / 2, step=0)
        study.tell(trial, value)
    reopened = load_study(Location.of(root) / "study")
    assert [t.value for t in reopened.trials] == [0.2, 0.7]
    assert reopened.trials[1].intermediate_values == {0: 0.35}


@pytest.mark.slow
def test_base_session_is_uploaded_once_and_downloaded_elsewhere(s3_root, tiny_config, tmp_path, monkeypatch):
    config = tiny_config.replace(base_epochs=2)
    base = Location.of(s3_root) / "base-test" / "base"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-a"))
    first, trained = ensure_base_session(config, base)
    assert trained and base_checkpoint(config, base).exists()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-b"))  # another node: an empty local cache
    second, trained_again = ensure_base_session(config, base)
    assert not trained_again and second != first
    assert second.read_bytes() == first.read_bytes()


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("nosuchscheme://bucket/x", "Unrecognized filesystem type in URI"),
        (
            "s3://bucket/x?endpoint_overide=localhost:9000",
            "Unexpected query parameter in S3 URI: 'endpoint_overide'",
        ),
    ],
)
def test_bad_results_uri_is_one_clear_error(tmp_path, icons_cache, uri, problem):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(icons_cache, "bad")))
    done = runner.invoke(app, ["launch", str(spec), "--results", uri])
    text = " ".join(done.output.split())
    assert done.exit_code == 2 and f"cannot open results location '{uri}'" in text and problem in text, text
    assert "Traceback" not in done.output


@pytest.mark.slow
def test_sweep_with_results_on_s3(s3_root, icons_cache, tmp_path):
    spec = tiny_spec(icons_cache, "remote", space={"rank": {"grid": [2, 4]}}, pruner=None, seeds=[0])
    spec_path = tmp_path / "remote.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, CACHE_ENV: str(tmp_path / "node-cache")}
    root = Location.of(s3_root) / "remote-test"  # a root of its own: no other test's store to reuse
    launched = cli_process(
        "launch", str(spec_path), "--results", root.uri, "--num-cpus", "2", "--quiet", cwd=tmp_path, env=env
    )
    output, _ = launched.communicate(timeout=600)
    assert launched.returncode == 0, output
    assert "base session trained 1 time(s)" in " ".join(output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-cache", "remote.yaml"], (
        "nothing local but caches"
    )

    sweep = root / "remote"
    sessions, trials = read_sessions(sweep), read_trials(sweep)
    assert sorted(trials["rank"]) == [2, 4] and set(trials.status) == {"completed"}
    assert len(sessions) == 2 * 3 and not sessions.duplicated(["trial_id", "seed", "session"]).any()
    assert len(load_study(sweep).trials) == 2
    assert [n for n in (root / "store" / "base").files() if n.endswith(".pt")] and (sweep / "tune").is_dir()
    assert len([n for n in (root / "store" / "trials").files() if n.endswith(".json")]) == 2
    frame = pd.read_parquet((sweep / "sessions").path, filesystem=sweep.fs)
    assert len(frame) == 6

    status = runner.invoke(app, ["status", str(sweep)])
    assert status.exit_code == 0 and "2 completed" in status.output, status.output
    resumed = cli_process("resume", str(sweep), "--num-cpus", "2", "--quiet", cwd=tmp_path, env=env)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert len(read_sessions(sweep)) == 6 and len(read_trials(sweep)) == 2


@pytest.mark.slow
def test_a_bucket_that_does_not_exist_is_one_clear_error(s3_root, tmp_path, icons_cache):
    spec = tmp_path / "nobucket.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(icons_cache, "nobucket")))
    missing = s3_root.replace("s3://sweeps/", "s3://no-such-bucket/").replace(
        "&allow_bucket_creation=true", ""
    )
    done = runner.invoke(app, ["launch", str(spec), "--results", missing])
    text = " ".join(done.output.split())
    assert done.exit_code == 2 and "cannot write to the results location s3://no-such-bucket/" in text, text
    assert "Traceback" not in done.output
