"""Shared fixtures: a tiny icons cache, a tiny CUB folder, a tiny trial, an S3 server."""

from __future__ import annotations

import logging
import os

import pytest

from ckpd_core import TrialConfig
from ckpd_core.data.fake import write_cub200

from .helpers import S3_CREDENTIALS, TINY_BENCHMARK


@pytest.fixture(scope="session")
def cub_root(tmp_path_factory):
    """A tiny CUB-200-2011 folder in its official layout (shared read-only: copy it to break it)."""
    root = tmp_path_factory.mktemp("cub")
    write_cub200(root)
    return root


@pytest.fixture(scope="session")
def icons_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("icons-cache"))


@pytest.fixture
def tiny_config(icons_cache) -> TrialConfig:
    """A trial of 3 sessions that runs in a few seconds on a CPU."""
    return TrialConfig(
        benchmark_kwargs=dict(TINY_BENCHMARK),
        data_root=icons_cache,
        backbone_kwargs=dict(depth=2, embed_dim=64, num_heads=2),
        feature_dim=32,
        rank=4,
        top_n=2,
        base_epochs=40,
        steps=4,
        batch_size=16,
        base_batch_size=16,
    )


@pytest.fixture(scope="session")
def s3_root():
    """A bucket URI on a moto S3 server; credentials in the environment, as on a cloud node."""
    from moto.server import ThreadedMotoServer  # imported here: only the S3 tests pay for it

    saved = {k: os.environ.get(k) for k in S3_CREDENTIALS}
    os.environ.update(S3_CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per HTTP request otherwise
    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"s3://sweeps/results?endpoint_override=127.0.0.1:{port}&scheme=http&allow_bucket_creation=true"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
