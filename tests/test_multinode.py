"""A sweep on a real Ray cluster of three node processes (a head and two workers) that loses a worker.

The head has no CPUs, so every trial runs on a worker node. While a trial runs, its worker is killed
(not drained): the trial must continue on the other worker from its last finished session. Run
with the results on a folder every node sees, and on S3 with no shared folder between the workers.
"""

from __future__ import annotations

import time

import pytest
import yaml
from ray.cluster_utils import Cluster

from sweeps.base_sessions import CACHE_ENV
from sweeps.results import read_sessions, read_trials
from sweeps.storage import Location

from .helpers import cli_process, tiny_spec

pytestmark = pytest.mark.slow  # every test here starts Ray
NUM_SESSIONS = 3
RANKS = [2, 4, 8, 16]


@pytest.fixture(params=["shared-disk", "s3"])
def cluster(request, tmp_path):
    """A head and two workers, and the results root: a folder all three see, or an S3 bucket.

    With S3 each worker gets a cache folder of its own, as machines without a shared disk would.
    """
    bucket = request.getfixturevalue("s3_root") if request.param == "s3" else None
    root = str(tmp_path / "results") if bucket is None else (Location.of(bucket) / "multinode").uri
    fast_failure_detection = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": fast_failure_detection},
    )
    workers = [
        cluster.add_node(num_cpus=1, env_vars={CACHE_ENV: str(tmp_path / f"worker-{i}-cache")})
        for i in range(2)
    ]
    cluster.wait_for_nodes()
    yield cluster, workers, Location.of(root) / "nodes"
    cluster.shutdown()


def test_sweep_runs_on_two_nodes_and_survives_losing_one(cluster, icons_cache, tmp_path):
    ray_cluster, workers, sweep_dir = cluster
    spec = tiny_spec(
        icons_cache, "nodes", space={"rank": {"grid": RANKS}}, pruner=None, seeds=[0], max_concurrent=2
    )
    spec.update(max_failures=2, resources={"cpu": 1})
    spec["trial"]["steps"] = 300  # sessions of a few seconds: a node is lost in the middle of a trial
    spec_path = tmp_path / "nodes.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    driver = cli_process(
        "launch",
        str(spec_path),
        "--results",
        str(sweep_dir.parent),
        "--address",
        ray_cluster.address,
        "--quiet",
    )
    try:
        interrupted, node_id = _wait_for_a_running_trial(sweep_dir, driver, deadline=time.time() + 300)
        lost, kept = sorted(workers, key=lambda worker: worker.node_id != node_id)
        before = read_sessions(sweep_dir)
        ray_cluster.remove_node(lost, allow_graceful=False)
        output, _ = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0, output

    sessions, trials = read_sessions(sweep_dir), read_trials(sweep_dir)
    assert sorted(trials["rank"]) == RANKS
    assert set(trials.status) <= {"completed", "pruned", "failed"}
    assert trials[trials.status == "failed"].error.str.len().gt(0).all()
    assert {kept.node_id, lost.node_id} <= set(sessions.node_id), "trials ran on both worker nodes"
    assert "base session trained 1 time(s)" in " ".join(output.split()), output
    assert len([n for n in (sweep_dir.parent / "store" / "base").files() if n.endswith(".pt")]) == 1

    assert not sessions.duplicated(["trial_id", "seed", "session"]).any()
    for trial in trials.itertuples():
        mine = sessions[sessions.trial_id == trial.trial_id].sort_values("session")
        expected = NUM_SESSIONS if trial.status == "completed" else trial.sessions_done
        assert list(mine.session) == list(range(expected))

    # the interrupted trial went on from its last finished session, on the surviving node
    mine = sessions[sessions.trial_id == interrupted].sort_values("session")
    done_before = int((before.trial_id == interrupted).sum())
    assert trials.set_index("trial_id").status[interrupted] == "completed"
    resumed = mine[mine.node_id != lost.node_id]
    assert len(resumed) and set(resumed.node_id) == {kept.node_id}
    restart = int(resumed.started_at_session.iloc[0])
    assert done_before <= restart == int(resumed.session.iloc[0]), mine[["session", "node_id"]]
    assert (mine[mine.session < restart].node_id == lost.node_id).all()
    kept_rows = before.merge(sessions, on=["trial_id", "seed", "session"], suffixes=("", "_after"))
    assert len(kept_rows) == len(before) and (kept_rows.val_acc_all == kept_rows.val_acc_all_after).all()


def _wait_for_a_running_trial(sweep_dir: Location, driver, deadline: float) -> tuple[str, str]:
    """A trial that has finished its first session but not its second, and the node it runs on."""
    while time.time() < deadline and driver.poll() is None:
        if (sweep_dir / "sessions").files():
            sessions = read_sessions(sweep_dir)
            counts = sessions.groupby("trial_id").session.count()
            running = sessions[sessions.trial_id.isin(counts[counts == 1].index)]
            if len(running):
                return running.trial_id.iloc[0], running.node_id.iloc[0]
        time.sleep(0.2)
    output = driver.communicate()[0] if driver.poll() is not None else ""
    raise AssertionError(f"no trial was caught between its first and second session\n{output}")
