"""The deterministic layer writer: safety corpus, reproducibility, and readable output."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from multiarch_mirror.build.layers import (
    ArchiveError,
    ArchiveFormat,
    ArchiveLimits,
    Artifact,
    InlineFile,
    Layer,
    LayerOptions,
    SetuidPolicy,
    write_layer,
)
from tests.support.archives import Member, make_tar, member


def artifact(path: Path, fmt: ArchiveFormat = ArchiveFormat.TAR_GZ, **kwargs: object) -> Artifact:
    return Artifact.from_path(path, fmt, **kwargs)  # type: ignore[arg-type]


def build(tmp_path: Path, *artifacts: Artifact, **options: object) -> Layer:
    files = options.pop("files", ())
    out = tmp_path / f"layer-{len(list(tmp_path.glob('layer-*')))}.tar.gz"
    return write_layer(
        out,
        artifacts=artifacts,
        files=files,  # type: ignore[arg-type]
        options=LayerOptions(**options),  # type: ignore[arg-type]
    )


def read_members(layer: Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(layer.path, "r:gz") as tar:
        return tar.getmembers()


def refusal(tmp_path: Path, members: list[Member], **kwargs: object) -> ArchiveError:
    source = make_tar(tmp_path / "app.tar.gz", members)
    limits = kwargs.pop("limits", ArchiveLimits())
    with pytest.raises(ArchiveError) as caught:
        build(tmp_path, artifact(source, dest="/opt/app", **kwargs), limits=limits)
    assert caught.value.artifact == "app.tar.gz"
    assert "app.tar.gz" in str(caught.value)
    return caught.value


# -- safety corpus --------------------------------------------------------------------------


def test_path_traversal_entry_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("ok.txt", b"x"), member("../../etc/cron.d/evil", b"x")])
    assert error.entry == "../../etc/cron.d/evil"
    assert "'../../etc/cron.d/evil'" in str(error)
    assert "escape" in str(error)


def test_absolute_path_entry_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("/etc/passwd", b"root::0:0::/:/bin/sh\n")])
    assert error.entry == "/etc/passwd"
    assert "absolute path" in str(error)


def test_absolute_symlink_outside_destination_is_refused(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, [member("bin/shadow", None, type=tarfile.SYMTYPE, linkname="/etc/shadow")]
    )
    assert error.entry == "bin/shadow"
    assert "symlink to '/etc/shadow'" in str(error)


def test_relative_symlink_climbing_out_of_destination_is_refused(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, [member("bin/up", None, type=tarfile.SYMTYPE, linkname="../../../etc")]
    )
    assert error.entry == "bin/up"
    assert "outside the destination /opt/app" in str(error)


def test_hard_link_outside_destination_is_refused(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, [member("bin/passwd", None, type=tarfile.LNKTYPE, linkname="../../etc/passwd")]
    )
    assert error.entry == "bin/passwd"
    assert "hard link to '../../etc/passwd'" in str(error)


def test_hard_link_to_a_path_removed_by_strip_components_is_refused(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        [member("top", b"data"), member("app/bin/x", None, type=tarfile.LNKTYPE, linkname="top")],
        strip_components=1,
    )
    assert error.entry == "app/bin/x"
    assert "outside the destination" in str(error)


def test_device_node_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("dev/sda", None, type=tarfile.BLKTYPE, devmajor=8)])
    assert error.entry == "dev/sda"
    assert "device node" in str(error)


def test_fifo_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("run/pipe", None, type=tarfile.FIFOTYPE)])
    assert error.entry == "run/pipe"
    assert "FIFO" in str(error)


def test_whiteout_entry_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("etc/.wh.passwd", b"")])
    assert error.entry == "etc/.wh.passwd"
    assert "whiteout" in str(error)


def test_tar_bomb_is_refused_at_the_size_limit(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        [member("small", b"x" * 1000), member("zeros", bytes(3 << 20))],
        limits=ArchiveLimits(max_bytes=1 << 20),
    )
    assert error.entry == "zeros"
    assert "more than 1048576 bytes" in str(error)


def test_zip_bomb_is_refused_at_the_size_limit(tmp_path: Path) -> None:
    source = tmp_path / "bomb.zip"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros", bytes(4 << 20))
    assert source.stat().st_size < 20_000
    with pytest.raises(ArchiveError) as caught:
        build(
            tmp_path,
            artifact(source, ArchiveFormat.ZIP),
            limits=ArchiveLimits(max_bytes=1 << 20),
        )
    assert caught.value.entry == "zeros"
    assert "bomb.zip" in str(caught.value)


def test_entry_count_is_bounded(tmp_path: Path) -> None:
    members = [member(f"f{i:03}", b"") for i in range(20)]
    error = refusal(tmp_path, members, limits=ArchiveLimits(max_entries=10))
    assert error.entry == "f010"
    assert "limit of 10 entries" in str(error)


def test_truncated_archive_is_refused_naming_the_entry_being_read(tmp_path: Path) -> None:
    whole = make_tar(tmp_path / "whole.tar.gz", [member("big.bin", os.urandom(256 << 10))])
    cut = tmp_path / "app.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ArchiveError) as caught:
        build(tmp_path, artifact(cut))
    assert caught.value.entry == "big.bin"
    assert "truncated" in str(caught.value)
    assert "app.tar.gz" in str(caught.value)


def test_setuid_file_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("bin/su", b"\x7fELF", mode=0o4755)])
    assert error.entry == "bin/su"
    assert "setuid" in str(error) and "4755" in str(error)


def test_setgid_directory_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, [member("var/", None, type=tarfile.DIRTYPE, mode=0o2775)])
    assert error.entry == "var"


def test_setuid_inline_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as caught:
        build(tmp_path, files=[InlineFile("/usr/bin/helper", b"#!/bin/sh\n", 0o4755)])
    assert caught.value.entry == "/usr/bin/helper"


def test_setuid_and_setgid_bits_are_dropped_and_reported_when_the_recipe_says_drop(
    tmp_path: Path,
) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("bin/su", b"\x7fELF", mode=0o6755)])
    layer = build(tmp_path, artifact(source, dest="/opt/app"), setuid=SetuidPolicy.DROP)
    (su,) = [m for m in read_members(layer) if m.name == "opt/app/bin/su"]
    assert su.mode == 0o755
    assert layer.warnings == ("app.tar.gz: dropped setuid/setgid bits from 'bin/su'",)


def test_setuid_bits_are_kept_when_the_recipe_says_keep(tmp_path: Path) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("bin/su", b"\x7fELF", mode=0o4755)])
    layer = build(tmp_path, artifact(source), setuid=SetuidPolicy.KEEP)
    (su,) = [m for m in read_members(layer) if m.name == "bin/su"]
    assert su.mode == 0o4755
    assert layer.warnings == ()


# -- determinism ----------------------------------------------------------------------------


def sample_artifact(tmp_path: Path, name: str = "app.tar.gz") -> Artifact:
    payload = os.urandom(1 << 20) * 3 + os.urandom(777)  # several compressor blocks
    source = make_tar(
        tmp_path / name,
        [
            member("app/", None, type=tarfile.DIRTYPE, mode=0o755),
            member("app/bin/tool", payload, mode=0o755),
            member("app/README", b"hello\n", mode=0o644),
            member("app/bin/alias", None, type=tarfile.SYMTYPE, linkname="tool"),
        ],
    )
    return artifact(source, dest="/opt", strip_components=0)


def test_same_inputs_give_the_same_digest(tmp_path: Path) -> None:
    source = sample_artifact(tmp_path)
    first, second = (
        build(tmp_path, source, epoch=1700000000),
        build(tmp_path, source, epoch=1700000000),
    )
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_thread_count_does_not_change_the_digest(tmp_path: Path) -> None:
    source = sample_artifact(tmp_path)
    digests = {build(tmp_path, source, threads=threads).digest for threads in (1, 2, 4)}
    assert len(digests) == 1


def test_member_order_mtimes_and_owners_of_the_input_do_not_change_the_layer(
    tmp_path: Path,
) -> None:
    files = {"b/two": b"2", "a/one": b"1", "c": b"3"}
    forward = make_tar(
        tmp_path / "f.tar.gz",
        [member(n, d, mtime=1, uid=5, uname="alice") for n, d in files.items()],
    )
    backward = make_tar(
        tmp_path / "b.tar.gz",
        [member(n, d, mtime=99.5, gid=7, gname="staff") for n, d in reversed(files.items())],
    )
    assert forward.read_bytes() != backward.read_bytes()
    assert build(tmp_path, artifact(forward)).digest == build(tmp_path, artifact(backward)).digest


def test_a_different_epoch_gives_a_different_digest(tmp_path: Path) -> None:
    source = sample_artifact(tmp_path)
    assert build(tmp_path, source, epoch=0).digest != build(tmp_path, source, epoch=1).digest


def test_every_entry_has_the_epoch_as_integer_mtime_and_no_pax_headers(tmp_path: Path) -> None:
    layer = build(tmp_path, sample_artifact(tmp_path), epoch=1712345678)
    with tarfile.open(layer.path, "r:gz") as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
    assert all(m.mtime == 1712345678 and isinstance(m.mtime, int) for m in members)
    assert all(m.pax_headers == {} for m in members)
    raw = gzip.decompress(layer.path.read_bytes())
    headers = [raw[i : i + 512] for i in range(0, len(raw), 512)]
    assert not any(h[156:157] in (b"x", b"g") and h[257:262] == b"ustar" for h in headers)


def test_gzip_header_has_zero_mtime_and_no_file_name(tmp_path: Path) -> None:
    data = build(tmp_path, sample_artifact(tmp_path)).path.read_bytes()
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] & 0x08 == 0  # FNAME flag
    assert data[4:8] == b"\x00\x00\x00\x00"


def test_digest_and_diff_id_hash_the_compressed_and_the_uncompressed_bytes(tmp_path: Path) -> None:
    layer = build(tmp_path, sample_artifact(tmp_path))
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.size == len(blob)
    tar = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert layer.uncompressed_size == len(tar)
    assert layer.descriptor().media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


# -- layout of the layer --------------------------------------------------------------------


def test_entries_are_sorted_with_parent_directories_and_normalised_owners(tmp_path: Path) -> None:
    source = make_tar(
        tmp_path / "app.tar.gz",
        [member("bin/z", b"z", uid=1000, uname="dev"), member("bin/a", b"a", gname="dev")],
    )
    layer = build(tmp_path, artifact(source, dest="/opt/app"), uid=2000, gid=2001)
    members = read_members(layer)
    assert [m.name for m in members] == [
        "opt",
        "opt/app",
        "opt/app/bin",
        "opt/app/bin/a",
        "opt/app/bin/z",
    ]
    owners = {m.name: (m.uid, m.gid, m.uname, m.gname) for m in members}
    assert owners["opt"] == (0, 0, "", "")  # above the destination: root, as ADD makes it
    assert owners["opt/app"] == (2000, 2001, "", "")
    assert owners["opt/app/bin/a"] == (2000, 2001, "", "")


def test_strip_components_drops_the_top_directory(tmp_path: Path) -> None:
    source = make_tar(
        tmp_path / "app.tar.gz",
        [member("app-1.2.3/", None, type=tarfile.DIRTYPE), member("app-1.2.3/bin/app", b"x")],
    )
    layer = build(tmp_path, artifact(source, dest="/srv/app", strip_components=1))
    assert [m.name for m in read_members(layer)] == [
        "srv",
        "srv/app",
        "srv/app/bin",
        "srv/app/bin/app",
    ]


def test_hard_links_point_to_the_first_path_in_sorted_order(tmp_path: Path) -> None:
    source = make_tar(
        tmp_path / "app.tar.gz",
        [
            member("z-original", b"shared"),
            member("a-link", None, type=tarfile.LNKTYPE, linkname="z-original"),
        ],
    )
    members = {m.name: m for m in read_members(build(tmp_path, artifact(source)))}
    assert members["a-link"].isreg() and members["a-link"].size == 6
    assert members["z-original"].islnk() and members["z-original"].linkname == "a-link"


def test_symlinks_inside_the_destination_are_kept(tmp_path: Path) -> None:
    source = make_tar(
        tmp_path / "app.tar.gz",
        [
            member("bin/tool", b"x"),
            member("tool", None, type=tarfile.SYMTYPE, linkname="bin/tool"),
            member("abs", None, type=tarfile.SYMTYPE, linkname="/opt/app/bin/tool"),
        ],
    )
    members = {m.name: m for m in read_members(build(tmp_path, artifact(source, dest="/opt/app")))}
    assert members["opt/app/tool"].linkname == "bin/tool"
    assert members["opt/app/abs"].linkname == "/opt/app/bin/tool"


@pytest.mark.parametrize(
    ("fmt", "mode"), [(ArchiveFormat.TAR_XZ, "w:xz"), (ArchiveFormat.TAR_BZ2, "w:bz2")]
)
def test_xz_and_bzip2_tarballs_are_read(tmp_path: Path, fmt: ArchiveFormat, mode: str) -> None:
    source = make_tar(tmp_path / f"app.{fmt.value}", [member("bin/app", b"payload")], mode)
    members = read_members(build(tmp_path, artifact(source, fmt)))
    assert [m.name for m in members] == ["bin", "bin/app"]


def test_zip_entries_keep_modes_and_symlinks(tmp_path: Path) -> None:
    source = tmp_path / "app.zip"
    with zipfile.ZipFile(source, "w") as archive:
        tool = zipfile.ZipInfo("app/tool")
        tool.create_system = 3
        tool.external_attr = (stat.S_IFREG | 0o750) << 16
        archive.writestr(tool, b"#!/bin/sh\n")
        link = zipfile.ZipInfo("app/run")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, b"tool")
    members = {
        m.name: m for m in read_members(build(tmp_path, artifact(source, ArchiveFormat.ZIP)))
    }
    assert members["app/tool"].mode == 0o750
    assert members["app/run"].issym() and members["app/run"].linkname == "tool"


class ForwardOnly:
    """A source that streams a file and cannot seek, as a download does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> io.BufferedReader:
        raw = io.FileIO(self.path)
        raw.seekable = lambda: False  # type: ignore[method-assign]
        self.stream = io.BufferedReader(raw)
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def test_archives_from_streams_that_cannot_seek_give_the_same_layer(tmp_path: Path) -> None:
    zipped = tmp_path / "app.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("app/README", b"hello\n")
    tarball = make_tar(tmp_path / "app.tar.gz", [member("app/README", b"hello\n", mode=0o644)])
    for path, fmt in ((zipped, ArchiveFormat.ZIP), (tarball, ArchiveFormat.TAR_GZ)):
        seekable = build(tmp_path, artifact(path, fmt))
        streamed = build(tmp_path, Artifact(ForwardOnly(path), path.name, fmt))
        assert streamed.digest == seekable.digest
        assert [m.name for m in read_members(streamed)] == ["app", "app/README"]


def test_single_file_artifact_lands_at_its_destination(tmp_path: Path) -> None:
    source = tmp_path / "tool-linux-arm64"
    source.write_bytes(b"\x7fELF binary")
    layer = build(tmp_path, artifact(source, ArchiveFormat.FILE, dest="/usr/local/bin/tool"))
    members = {m.name: m for m in read_members(layer)}
    assert members["usr/local/bin/tool"].mode == 0o755
    assert members["usr/local/bin/tool"].size == len(b"\x7fELF binary")


def test_inline_files_replace_artifact_entries(tmp_path: Path) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("entrypoint.sh", b"old")])
    layer = build(
        tmp_path,
        artifact(source),
        files=[InlineFile("/entrypoint.sh", b'#!/bin/sh\nexec "$@"\n', 0o755)],
    )
    with tarfile.open(layer.path, "r:gz") as tar:
        entry = tar.getmember("entrypoint.sh")
        assert entry.mode == 0o755
        assert tar.extractfile(entry).read() == b'#!/bin/sh\nexec "$@"\n'  # type: ignore[union-attr]


def test_an_entry_under_a_file_is_refused(tmp_path: Path) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("bin", b"file"), member("bin/tool", b"x")])
    with pytest.raises(ArchiveError) as caught:
        build(tmp_path, artifact(source))
    assert caught.value.entry == "bin/tool"


def test_layer_is_readable_by_gnu_tar(tmp_path: Path) -> None:
    layer = build(tmp_path, sample_artifact(tmp_path), epoch=1700000000)
    listing = subprocess.run(
        ["tar", "-tzvf", str(layer.path), "--numeric-owner"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "opt/app/bin/alias -> tool" in listing
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(layer.path), "-C", str(root)], check=True)
    assert (root / "opt/app/README").read_bytes() == b"hello\n"
    assert (root / "opt/app/bin/tool").stat().st_mtime == 1700000000


def test_peak_memory_stays_far_below_the_layer_size(tmp_path: Path) -> None:
    # A bound, not a comparison of two runs: how many compressor blocks are in flight at the
    # peak depends on scheduling, but never comes near the 96 MiB a buffered layer would need.
    payload = tmp_path / "payload"
    with payload.open("wb") as out:
        for _ in range(96):
            out.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        build(tmp_path, artifact(payload, ArchiveFormat.FILE, dest="/payload"), threads=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_parents_of_inline_files_and_single_files_belong_to_root(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF")
    layer = write_layer(
        tmp_path / "layer.tar.gz",
        artifacts=[artifact(binary, ArchiveFormat.FILE, dest="/usr/local/bin/tool")],
        files=[InlineFile("/etc/app/conf", b"x")],
        options=LayerOptions(uid=2000, gid=2000),
    )
    owners = {m.name: (m.uid, m.gid) for m in read_members(layer)}
    assert owners == {
        "etc": (0, 0),
        "etc/app": (0, 0),
        "etc/app/conf": (2000, 2000),
        "usr": (0, 0),
        "usr/local": (0, 0),
        "usr/local/bin": (0, 0),
        "usr/local/bin/tool": (2000, 2000),
    }


def test_directories_inside_an_unpacked_archive_belong_to_the_recipe_user(tmp_path: Path) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("mattermost/bin/mattermost", b"x")])
    layer = write_layer(
        tmp_path / "layer.tar.gz",
        artifacts=[artifact(source, dest="/")],
        directories=["/mattermost/data", "/srv/volume"],
        options=LayerOptions(uid=2000, gid=2000),
    )
    owners = {m.name: (m.uid, m.gid, m.type) for m in read_members(layer)}
    assert owners == {
        "mattermost": (2000, 2000, tarfile.DIRTYPE),
        "mattermost/bin": (2000, 2000, tarfile.DIRTYPE),
        "mattermost/bin/mattermost": (2000, 2000, tarfile.REGTYPE),
        "mattermost/data": (2000, 2000, tarfile.DIRTYPE),
        "srv": (0, 0, tarfile.DIRTYPE),
        "srv/volume": (2000, 2000, tarfile.DIRTYPE),
    }


def test_a_later_artifact_replaces_a_file_of_an_earlier_one(tmp_path: Path) -> None:
    source = make_tar(tmp_path / "app.tar.gz", [member("app/bin/server", b"original")])
    patched = tmp_path / "server-patched"
    patched.write_bytes(b"patched")
    layer = build(
        tmp_path,
        artifact(source, dest="/"),
        artifact(patched, ArchiveFormat.FILE, dest="/app/bin/server"),
    )
    with tarfile.open(layer.path, "r:gz") as tar:
        assert tar.extractfile("app/bin/server").read() == b"patched"  # type: ignore[union-attr]
