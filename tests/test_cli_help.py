"""`--help` reads well on every command: plain value names, no Python types, `-h` works."""

from __future__ import annotations

import pytest

from tests.support.cli import run_cli

COMMANDS = [
    "check", "plan", "build", "publish", "sync", "verify",
    "inspect", "copy", "tags", "doctor", "schema", "demo",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_readable_help(command: str) -> None:
    result = run_cli(command, "-h")
    assert result.returncode == 0, result.stderr
    assert f"Usage: multiarch-mirror {command}" in result.stdout
    for python_type in ("<bool>", "<str>", "<int>", "<list[", "<path>"):
        assert python_type not in result.stdout


def test_top_level_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"│ {command} " in result.stdout
