"""The packages' public names: all resolvable, and reading results pays for no deep-learning import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ckpd_core
import sweeps

HEAVY = ("torch", "timm", "optuna", "ray")


@pytest.mark.parametrize("package", [ckpd_core, sweeps], ids=lambda p: p.__name__)
def test_every_public_name_resolves_and_is_listed(package):
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="not_a_name"):
        package.not_a_name  # noqa: B018


@pytest.mark.parametrize(
    "statement", ["import sweeps.results", "from sweeps import read_sessions, read_trials, SpecError"]
)
def test_reading_results_imports_no_deep_learning_package(statement):
    probe = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_readme_names_exist():
    from sweeps import ablation_table, launch, load_spec, load_study, read_sessions, resume

    assert callable(launch) and callable(resume) and callable(load_spec)
    assert callable(read_sessions) and callable(load_study) and callable(ablation_table)
