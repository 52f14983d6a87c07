"""`doctor`: which platforms this machine can build, which builders it has, QEMU setup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from multiarch_mirror.doctor import BINFMT_CONF_DIR, setup_qemu
from multiarch_mirror.oci.media import Platform

BOTH = [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")]


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "multiarch_mirror", *args], capture_output=True, text=True
    )


def test_doctor_reports_amd64_native_and_arm64_under_qemu_with_buildah_version() -> None:
    result = doctor("--json", "doctor")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    via = {entry["platform"]: entry["via"] for entry in report["platforms"]}
    assert via == {"linux/amd64": "native", "linux/arm64": "qemu"}
    buildah = subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout
    (builder,) = report["builders"]
    assert builder["name"] == "buildah"
    assert builder["version"] in buildah


def test_doctor_without_a_qemu_handler_fails_and_says_how_to_register_it(tmp_path: Path) -> None:
    result = doctor("doctor", "--binfmt-dir", str(tmp_path))
    assert result.returncode == 1
    assert "linux/arm64" in result.stderr
    assert "doctor --setup-qemu" in " ".join(result.stderr.split())


def test_setup_qemu_registers_the_foreign_handler_from_binfmt_d(tmp_path: Path) -> None:
    (tmp_path / "register").write_text("")
    assert setup_qemu(BOTH, binfmt_dir=tmp_path) == ["qemu-aarch64"]
    conf = (BINFMT_CONF_DIR / "qemu-aarch64.conf").read_text()
    written = (tmp_path / "register").read_text()
    assert written.startswith(":qemu-aarch64:M:")
    assert written in conf


def test_setup_qemu_leaves_registered_handlers_alone() -> None:
    assert setup_qemu(BOTH) == []
