"""The content-addressed store: keys, entries published whole, what it holds, pruning what no sweep uses."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ckpd_core import TrialConfig, code_digest
from sweeps.cli import app
from sweeps.folder import SPEC_COPY
from sweeps.results import ResultsStore
from sweeps.storage import Location
from sweeps.store import Store, StoredTrial, prune_unused, sweep_references, trial_key
from sweeps.summary import compute_of

runner = CliRunner()


def _rows(n: int, origin: str = "first/t1") -> list[dict]:
    return [{"session": s, "acc_all": 0.9 - 0.1 * s, "seconds": 2.0 + s, "origin": origin} for s in range(n)]


def _stored(key: str, n: int, total: int = 3) -> StoredTrial:
    return StoredTrial(key, {"rank": 4}, "digest", total, _rows(n))


def test_the_key_covers_every_setting_the_seed_and_the_code():
    config = TrialConfig(benchmark="icons", rank=16)
    assert trial_key(config) == trial_key(TrialConfig(benchmark="icons", replay_per_class=2))  # both defaults
    assert trial_key(config) != trial_key(config.replace(seed=1))
    assert trial_key(config) != trial_key(config.replace(mixup_prob=0.3))
    assert trial_key(config) != trial_key(config, digest="0" * 16)
    assert trial_key(config) == trial_key(config, digest=code_digest())


def test_the_code_digest_changes_with_any_file_of_the_method_but_not_its_bytecode(tmp_path):
    import ckpd_core

    copy = tmp_path / "ckpd_core"
    shutil.copytree(Path(ckpd_core.__file__).parent, copy)
    before = code_digest(copy)
    assert len(before) == 16
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "extra.cpython-311.pyc").write_bytes(b"\0")
    edited = tmp_path / "edited" / "ckpd_core"
    shutil.copytree(copy, edited)
    (edited / "training.py").write_text((edited / "training.py").read_text() + "\n# a change\n")
    assert code_digest(edited) != before
    bytecode_only = tmp_path / "bytecode" / "ckpd_core"
    shutil.copytree(copy, bytecode_only)
    (bytecode_only / "__pycache__" / "more.cpython-311.pyc").write_bytes(b"\1")
    assert code_digest(bytecode_only) == before


def test_an_unfinished_entry_keeps_only_its_latest_state_and_a_complete_one_none(tmp_path):
    store, state = Store(tmp_path), tmp_path / "trial_state.pt"
    state.write_bytes(b"after session 0")
    store.save(_stored("k", 1), state)
    state.write_bytes(b"after session 1")
    store.save(_stored("k", 2), state)
    loaded = store.load("k")
    assert loaded is not None and not loaded.complete and len(loaded.rows) == 2
    assert sorted(p.name for p in (tmp_path / "store" / "trials").iterdir()) == ["k.json", "k.state-2.pt"]
    store.fetch_state(loaded, tmp_path / "fetched.pt")
    assert (tmp_path / "fetched.pt").read_bytes() == b"after session 1"
    store.save(_stored("k", 3), state)
    assert store.load("k").complete and store.load("k").state is None
    assert sorted(p.name for p in (tmp_path / "store" / "trials").iterdir()) == ["k.json"]


def test_an_unfinished_entry_whose_state_is_gone_is_not_reused(tmp_path):
    store, state = Store(tmp_path), tmp_path / "trial_state.pt"
    state.write_bytes(b"state")
    store.save(_stored("k", 2), state)
    (tmp_path / "store" / "trials" / "k.state-2.pt").unlink()
    assert store.load("k") is None
    assert len(store.load("k", need_state=False).rows) == 2


def test_a_writer_killed_between_the_state_and_the_entry_leaves_the_previous_entry(tmp_path, monkeypatch):
    store, state = Store(tmp_path), tmp_path / "trial_state.pt"
    state.write_bytes(b"after session 0")
    store.save(_stored("k", 1), state)

    def killed(self, text):
        raise KeyboardInterrupt("killed before the entry was published")

    monkeypatch.setattr(Location, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        store.save(_stored("k", 3), state)  # would be complete
    monkeypatch.undo()
    loaded = store.load("k")
    assert loaded is not None and not loaded.complete and len(loaded.rows) == 1
    store.fetch_state(loaded, tmp_path / "fetched.pt")
    assert (tmp_path / "fetched.pt").read_bytes() == b"after session 0"


def _sweep_folder(root: Path, name: str, base_key: str, store_keys: list[str]) -> None:
    (root / name).mkdir(parents=True)
    (root / name / SPEC_COPY).write_text(yaml.safe_dump({"name": name}))
    results = ResultsStore(root / name)
    for i, key in enumerate(store_keys):
        ids = {"trial_id": f"t{i}", "seed": 0}
        results.write_sessions([{**ids, "session": 0, "acc_all": 0.5, "seconds": 1.0, "store_key": key}])
        results.write_trials([{**ids, "status": "completed", "base_key": base_key, "store_key": key}])


def _fill(root: Path) -> Store:
    store = Store(root)
    for key in ("used", "orphan"):
        store.save(_stored(key, 3), None)
    (root / "store" / "base").mkdir(parents=True)
    for key in ("b-used", "b-orphan"):
        (root / "store" / "base" / f"base-{key}.pt").write_bytes(b"x" * 1000)
    _sweep_folder(root, "rank", "b-used", ["used"])
    return store


def test_references_come_from_the_sweep_folders_and_pruning_deletes_only_the_rest(tmp_path):
    store = _fill(tmp_path)
    assert sweep_references(tmp_path) == {("base", "b-used"): {"rank"}, ("trial", "used"): {"rank"}}
    assert prune_unused(tmp_path) == []  # everything was written less than an hour ago
    removed = prune_unused(tmp_path, min_age_s=0)
    assert sorted((r["kind"], r["key"]) for r in removed) == [("base", "b-orphan"), ("trial", "orphan")]
    assert sorted((r["kind"], r["key"]) for r in store.contents()) == [("base", "b-used"), ("trial", "used")]
    assert store.load("used").complete


def test_deleting_a_sweep_folder_by_hand_leaves_another_sweeps_entries_whole(tmp_path):
    store = _fill(tmp_path)
    _sweep_folder(tmp_path, "replay", "b-used", ["used", "orphan"])
    shutil.rmtree(tmp_path / "rank")
    prune_unused(tmp_path, min_age_s=0)
    kept = sorted((r["kind"], r["key"]) for r in store.contents())
    assert kept == [("base", "b-used"), ("trial", "orphan"), ("trial", "used")]
    assert store.load("orphan").rows == _rows(3)


def test_store_command_lists_entries_their_users_and_prunes(tmp_path):
    _fill(tmp_path)
    listed = runner.invoke(app, ["store", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "b-used" in listed.output and "b-orphan" in listed.output and "rank" in listed.output
    assert "2 base session(s), 2 run(s)" in listed.output and "2 entries no sweep refers to" in listed.output
    pruned = runner.invoke(app, ["store", str(tmp_path), "--prune-unused", "--min-age-minutes", "0"])
    assert pruned.exit_code == 0 and "removed 2 unused entries" in pruned.output, pruned.output
    assert "1 base session(s), 1 run(s)" in pruned.output and "0 entries no sweep refers to" in pruned.output


def test_store_command_on_a_missing_root_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["store", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_compute_counts_spent_reused_and_saved_by_pruning():
    sessions = pd.DataFrame(
        {
            "trial_id": ["a", "a", "a", "b", "b", "b", "c", "c"],
            "session": [0, 1, 2, 0, 1, 2, 0, 1],
            "seconds": [10.0, 4.0, 4.0, 0.0, 0.0, 0.0, 1.0, 6.0],
            "reused_seconds": [0.0, 0.0, 0.0, 9.0, 5.0, 5.0, 0.0, 0.0],
        }
    )
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "status": ["completed", "completed", "pruned"]})
    trials["sessions_done"] = [3, 3, 2]
    compute = compute_of(sessions, trials)
    assert compute.spent_s == 25.0 and compute.reused_s == 19.0
    assert compute.saved_by_pruning_s == pytest.approx(1 * (4 + 4 + 5 + 5 + 6) / 5)  # one missing session
    assert "25 s spent, 19 s reused from the store, about 5 s saved by pruning" in compute.line()


def test_stored_entries_are_json_a_reader_can_open(tmp_path):
    Store(tmp_path).save(_stored("k", 3), None)
    entry = json.loads((tmp_path / "store" / "trials" / "k.json").read_text())
    assert entry["num_sessions"] == 3 and [r["origin"] for r in entry["rows"]] == ["first/t1"] * 3
    assert time.time() - entry["written_at"] < 60
