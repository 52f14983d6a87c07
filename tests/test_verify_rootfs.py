"""Layers unpack into a root filesystem with whiteouts honoured; smoke commands run per arch."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from multiarch_mirror.oci.media import Platform
from multiarch_mirror.verify import SmokeTest, VerifyError, apply_layer, run_smoke


def _layer(path: Path, entries: list[tuple[str, bytes | str | None]]) -> Path:
    """Write a gzip layer: (name, bytes) is a file, (name, None) a directory, (name, str) a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return path


def test_whiteout_removes_a_lower_layer_file(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    apply_layer(
        _layer(tmp_path / "1.tgz", [("etc", None), ("etc/a", b"a"), ("etc/b", b"b")]), rootfs
    )
    apply_layer(_layer(tmp_path / "2.tgz", [("etc/.wh.a", b"")]), rootfs)
    assert sorted(p.name for p in (rootfs / "etc").iterdir()) == ["b"]


def test_opaque_whiteout_hides_lower_content_but_keeps_its_own(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    apply_layer(_layer(tmp_path / "1.tgz", [("d", None), ("d/old", b"x")]), rootfs)
    apply_layer(
        _layer(tmp_path / "2.tgz", [("d", None), ("d/new", b"y"), ("d/.wh..wh..opq", b"")]), rootfs
    )
    assert sorted(p.name for p in (rootfs / "d").iterdir()) == ["new"]


def test_a_file_replacing_a_symlink_does_not_write_through_it(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    apply_layer(_layer(tmp_path / "1.tgz", [("real", b"keep"), ("link", "real")]), rootfs)
    apply_layer(_layer(tmp_path / "2.tgz", [("link", b"replaced")]), rootfs)
    assert (rootfs / "real").read_bytes() == b"keep"
    assert (rootfs / "link").read_bytes() == b"replaced"
    assert not (rootfs / "link").is_symlink()


def test_entries_escaping_the_rootfs_are_refused(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with pytest.raises(VerifyError, match="escape"):
        apply_layer(_layer(tmp_path / "1.tgz", [("../outside", b"x")]), rootfs)
    assert not (tmp_path / "outside").exists()


def _busybox_rootfs(tmp_path: Path, busybox: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    apply_layer(
        _layer(tmp_path / "l.tgz", [("bin", None), ("bin/busybox", busybox.read_bytes())]), rootfs
    )
    return rootfs


@pytest.mark.parametrize(("arch", "machine"), [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_smoke_runs_each_architecture(
    tmp_path: Path, busybox: dict[str, Path], arch: str, machine: str
) -> None:
    rootfs = _busybox_rootfs(tmp_path, busybox[arch])
    output, problem = run_smoke(
        rootfs,
        SmokeTest(command=["/bin/busybox", "uname", "-m"], expect=f"^{machine}$"),
        Platform(os="linux", architecture=arch),
    )
    assert (output, problem) == (machine, None)


def test_smoke_output_that_does_not_match_fails_with_the_output(
    tmp_path: Path, busybox: dict[str, Path]
) -> None:
    rootfs = _busybox_rootfs(tmp_path, busybox["amd64"])
    _, problem = run_smoke(
        rootfs,
        SmokeTest(command=["/bin/busybox", "echo", "9.1.0"], expect=r"^10\.0\.0$"),
        Platform(os="linux", architecture="amd64"),
    )
    assert problem is not None and "'9.1.0'" in problem


def test_foreign_arch_without_qemu_handler_says_how_to_fix(
    tmp_path: Path, busybox: dict[str, Path]
) -> None:
    rootfs = _busybox_rootfs(tmp_path, busybox["arm64"])
    empty_binfmt = tmp_path / "binfmt_misc"
    empty_binfmt.mkdir()
    _, problem = run_smoke(
        rootfs,
        SmokeTest(command=["/bin/busybox", "true"]),
        Platform(os="linux", architecture="arm64"),
        binfmt_dir=empty_binfmt,
    )
    assert problem is not None and "doctor --setup-qemu" in problem
