"""Base sessions shared by a sweep: trained once per key even when trials ask at the same time."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from sweeps.base_sessions import base_checkpoint_path, ensure_base_session


def _ask(config, base_dir, results) -> None:
    path, trained = ensure_base_session(config, base_dir)
    results.put((str(path), trained))


@pytest.mark.slow
def test_concurrent_requests_train_the_base_session_once(tiny_config, tmp_path):
    config = tiny_config.replace(base_epochs=3)
    context = mp.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_ask, args=(config, str(tmp_path), results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(trained for _, trained in answers) == [False, False, True]
    assert {path for path, _ in answers} == {str(base_checkpoint_path(config, tmp_path))}
    assert [p.name for p in tmp_path.glob("*.pt")] == [f"base-{config.base_session_key()}.pt"]
    assert not list(tmp_path.glob(".*tmp"))
    assert ensure_base_session(config, tmp_path)[1] is False
    other = ensure_base_session(config.replace(seed=1), tmp_path)
    assert other[1] is True and other[0] != base_checkpoint_path(config, tmp_path)
