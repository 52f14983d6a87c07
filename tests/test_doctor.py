"""`doctor`: which platforms this machine can build, which builders it has, QEMU setup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from multiarch_mirror.doctor import BINFMT_CONF_DIR, setup_qemu
from multiarch_mirror.oci.media import Platform
from tests.support.net import free_port
from tests.support.registry import Registry, start_registry

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


def catalog_with_target(root: Path, target: str) -> Path:
    (root / "apps").mkdir()
    (root / "mirror.yaml").write_text(f"target: {target}\n")
    return root / "mirror.yaml"


def test_doctor_proves_push_permission_on_the_target_without_writing(
    registry: Registry, tmp_path: Path
) -> None:
    config = catalog_with_target(tmp_path, f"{registry.host}/doctor")
    result = doctor("--config", str(config), "--json", "doctor")
    assert result.returncode == 0, result.stderr
    target = json.loads(result.stdout)["target"]
    assert target == {
        "target": f"{registry.host}/doctor",
        "repository": f"{registry.host}/doctor/doctor-check",
        "reachable": True,
        "push": True,
        "problem": None,
    }
    # Cancelled: the repository holds no layer, manifest or upload data (only hash state).
    repository = next((registry.root / "data").rglob("repositories/doctor/doctor-check"))
    assert sorted(p.name for p in repository.iterdir()) == ["_uploads"]
    assert list(repository.rglob("_uploads/*/data")) == []


def test_doctor_reports_a_registry_that_refuses_the_credentials(tmp_path: Path) -> None:
    locked = start_registry(tmp_path / "registry", htpasswd=("alice", "secret"))
    try:
        config = catalog_with_target(tmp_path, f"{locked.host}/doctor")
        result = doctor("--config", str(config), "--json", "doctor")
    finally:
        locked.stop()
    assert result.returncode == 1
    target = json.loads(result.stdout)["target"]
    assert (target["reachable"], target["push"]) == (True, False)
    assert locked.host in target["problem"]


def test_doctor_reports_an_unreachable_target(tmp_path: Path) -> None:
    config = catalog_with_target(tmp_path, f"127.0.0.1:{free_port()}/doctor")
    result = doctor("--config", str(config), "--json", "doctor")
    assert result.returncode == 1
    target = json.loads(result.stdout)["target"]
    assert (target["reachable"], target["push"]) == (False, False)
    assert "127.0.0.1" in target["problem"]


def test_problems_are_printed_literally_even_with_brackets(tmp_path: Path) -> None:
    binfmt = tmp_path / "binfmt[red]"
    binfmt.mkdir()
    result = doctor("doctor", "--binfmt-dir", str(binfmt), "--platform", "linux/arm64")
    assert result.returncode == 1
    assert f"no enabled qemu-aarch64 handler in {binfmt};" in result.stderr
