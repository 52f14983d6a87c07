"""The `multiarch-mirror` command: parse arguments, call the library, render results.

No logic lives here that a library caller would need. Exit codes: 0 success, 1 when any
app/operation failed, 2 on usage or configuration errors.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from multiarch_mirror import __version__
from multiarch_mirror.errors import MirrorError, UsageError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="multiarch-mirror",
    help=(
        "Keep multi-arch (linux/amd64 + linux/arm64) images of third-party apps in sync with "
        "their upstream releases: detect versions, build what the registry lacks, publish one "
        "index per version, verify it."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

stdout = Console()
stderr = Console(stderr=True)


@dataclass
class GlobalOptions:
    """Options every sub-command sees (set by the top-level callback)."""

    config: Path = Path("mirror.yaml")
    json: bool = False
    verbose: int = 0
    insecure_registries: list[str] = field(default_factory=list)
    ca_file: Path | None = None


def options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def emit_json(value: Any) -> None:
    """Machine output: JSON on stdout, nothing else there."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into a one-line message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            stderr.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except MirrorError as exc:
            stderr.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        stdout.print(f"multiarch-mirror {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("mirror.yaml"), "--config", "-c", help="Mirror configuration file.", show_default=True
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Machine-readable output on stdout (logs go to stderr)."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-vv: debug)."
    ),
    insecure_registry: list[str] = typer.Option(
        [],
        "--insecure-registry",
        help="Allow plain HTTP to this registry host[:port] (repeatable). "
        "localhost and 127.0.0.0/8 always use HTTP.",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="CA bundle to trust for registry TLS (default: $SSL_CERT_FILE)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=False, show_time=False)],
        force=True,
    )
    ctx.obj = GlobalOptions(
        config=config,
        json=json_output,
        verbose=verbose,
        insecure_registries=list(insecure_registry),
        ca_file=ca_file,
    )


def main() -> None:
    app()


@app.command()
@handle_errors
def schema(
    mirror: bool = typer.Option(
        False, "--mirror", help="The schema of mirror.yaml instead of apps/<app>/app.yaml."
    ),
) -> None:
    """Print the JSON Schema of app files (or of mirror.yaml), for editors and validators."""
    from multiarch_mirror.config import app_schema, mirror_schema

    emit_json(mirror_schema() if mirror else app_schema())
