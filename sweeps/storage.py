"""Where a sweep's results live: a local folder, or any URI pyarrow opens (``file://``, ``s3://``, ``gs://``, ``abfs://``).

A cluster without a shared disk keeps its results and base sessions in a bucket: only the driver writes
the result tables, trials read and write base-session checkpoints, and Ray Tune keeps its trial
checkpoints there too (it accepts the same URIs as ``storage_path``). Files are published whole: on a
local disk by writing a hidden temporary file and renaming it, on an object store by a single upload
that becomes visible only once complete.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import pyarrow.fs as pafs

from ckpd_core.atomic import atomic_path, write_atomic

from .errors import SpecError


@dataclass(frozen=True)
class Location:
    """A folder or file named by a local path or a URI; pickles as its URI, so Ray workers can reopen it."""

    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike | Location) -> Location:
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if "://" not in text:
            return cls(str(Path(text).expanduser().resolve()))
        _resolve(text)  # fail now, with a clear message, on a URI pyarrow cannot open
        return cls(text)

    @cached_property
    def fs(self) -> pafs.FileSystem:
        return _resolve(self.uri)[0]

    @cached_property
    def path(self) -> str:
        return _resolve(self.uri)[1]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local filesystem")
        return Path(self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        base, sep, query = self.uri.partition("?")
        return Location(base.rstrip("/").rsplit("/", 1)[0] + sep + query)

    def __truediv__(self, name: str) -> Location:
        base, sep, query = self.uri.partition("?")
        return Location(f"{base.rstrip('/')}/{name}{sep}{query}")

    def __str__(self) -> str:
        return self.uri

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def files(self) -> list[str]:
        """Names of the files directly in this folder (none when it does not exist)."""
        return [info.base_name for info in self.file_infos()]

    def file_infos(self) -> list[pafs.FileInfo]:
        """pyarrow's info (name, size, mtime) of each file directly in this folder."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file so that readers see either nothing (or the old file) or all of it."""
        if self.is_local:
            write_atomic(self.local_path, data)
            return
        with self._remote_output() as stream:
            stream.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def delete(self) -> None:
        """Remove this file or folder, if it exists."""
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def download(self, dest: Path) -> None:
        """Copy this file to the local ``dest``, which appears only once complete."""
        with atomic_path(dest) as tmp, self.fs.open_input_stream(self.path) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 22)

    def upload(self, src: Path) -> None:
        """Copy the local file ``src`` here, published whole."""
        if self.is_local:
            write_atomic(self.local_path, src.read_bytes())
            return
        with open(src, "rb") as data, self._remote_output() as stream:
            shutil.copyfileobj(data, stream, length=1 << 22)

    def _remote_output(self):
        """A stream to this object on a remote store; the object appears only when the stream closes."""
        self.fs.create_dir(self.parent.path, recursive=True)
        return self.fs.open_output_stream(self.path)


@lru_cache(maxsize=64)
def _resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SpecError(
            f"cannot open results location {uri!r}: {exc}. Give a local folder, file://, or a URI pyarrow "
            "supports such as s3://bucket/prefix or gs://bucket/prefix (with credentials set up)"
        ) from None
