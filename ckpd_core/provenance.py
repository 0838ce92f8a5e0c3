"""What a trial's results depend on besides its settings: a digest of the method's code and libraries.

Stored results are keyed by it, so any change to ``ckpd_core`` (or to the torch / timm versions that
run it) makes earlier results miss instead of being reused, without anyone bumping a version by hand.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("torch", "timm")


def code_digest(package_dir: str | Path = PACKAGE_DIR) -> str:
    """A 16-hex-digit digest of every file of the method's package and of the torch / timm versions."""
    return _digest(str(Path(package_dir).resolve()))


@lru_cache(maxsize=4)
def _digest(package_dir: str) -> str:
    root = Path(package_dir)
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and _counts(p.relative_to(root))):
        sha.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in LIBRARIES:
        sha.update(f"{name}=={_version(name)}\0".encode())
    return sha.hexdigest()[:16]


def _counts(relative: Path) -> bool:
    """Source and data files count; bytecode caches do not."""
    return "__pycache__" not in relative.parts and relative.suffix not in (".pyc", ".pyo")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"
