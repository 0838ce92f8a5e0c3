"""Shared fixtures and helpers: a tiny icons benchmark in a temporary cache, tiny trial and sweep specs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from moto.server import ThreadedMotoServer

from ckpd_core import TrialConfig
from ckpd_core.data.fake import write_cub200

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TINY_BENCHMARK = dict(
    num_classes=20, base_classes=10, ways=5, shots=5, train_per_class=30, val_per_class=6, test_per_class=6
)


def real_format_config(benchmark: str, data_root: str, feature_dim: int, **benchmark_kwargs) -> TrialConfig:
    """A 3-session trial with a one-block backbone on a tiny dataset in a real on-disk format."""
    return TrialConfig(
        benchmark=benchmark,
        data_root=data_root,
        benchmark_kwargs=dict(num_sessions=3, max_per_class=2, **benchmark_kwargs),
        backbone_kwargs=dict(depth=1, embed_dim=32, num_heads=2),
        feature_dim=feature_dim,
        rank=4,
        top_n=2,
        base_epochs=1,
        steps=2,
        batch_size=16,
        base_batch_size=64,
    )


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


def tiny_spec(cache: str, name: str, **changes) -> dict:
    """A sweep spec over the tiny icons benchmark (3 sessions); ``changes`` replace top-level keys."""
    spec = {
        "name": name,
        "trial": {
            "benchmark_kwargs": dict(TINY_BENCHMARK),
            "data_root": cache,
            "backbone_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
            "feature_dim": 32,
            "rank": 4,
            "top_n": 2,
            "base_epochs": 40,
            "base_batch_size": 16,
            "steps": 10,
            "batch_size": 16,
        },
        "space": {"lr": {"grid": [0.001, 0.5]}},
        "search": {"algorithm": "grid"},
        "pruner": {"name": "median", "args": {"n_startup_trials": 1, "n_warmup_steps": 1}},
        "seeds": [0, 1],
        "max_concurrent": 1,
        "max_failures": 0,
    }
    spec.update(changes)
    for swept in spec["space"]:
        spec["trial"].pop(swept, None)
    return spec


def cli_process(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m sweeps ARGS` in its own process group (so a test can kill the driver and its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )
