"""Small tar archives built entry by entry, for the layer writer's and the builder's tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

Member = tuple[tarfile.TarInfo, bytes | None]


def member(name: str, data: bytes | None = b"", **attrs: object) -> Member:
    """One entry: `data` for a regular file (None for a directory, link or device)."""
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


def make_tar(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path
