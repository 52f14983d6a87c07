"""What a sync did, per app: versions built, index digests, tags moved, durations, errors —
as JSON (`--report FILE`) and as a console table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field
from rich.console import Console
from rich.table import Table

AppStatus = Literal["up-to-date", "updated", "planned", "failed"]


class BuiltImage(BaseModel):
    """One single-platform image pushed by digest."""

    image: str
    version: str
    platform: str
    digest: str
    seconds: float
    #: What the reader must know about this build, e.g. an artifact without checksum.
    notes: list[str] = Field(default_factory=list)


class PublishedIndex(BaseModel):
    """One index pushed by digest, and the tags now pointing at it."""

    image: str
    version: str
    digest: str
    tags: list[str]


class AppReport(BaseModel):
    app: str
    status: AppStatus = "up-to-date"
    #: Jobs the plan had for this app (`image version platform`).
    planned: list[str] = Field(default_factory=list)
    built: list[BuiltImage] = Field(default_factory=list)
    published: list[PublishedIndex] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def versions_built(self) -> list[str]:
        """Versions published by this run (every platform built, index tagged)."""
        return sorted({entry.version for entry in self.published})


class SyncReport(BaseModel):
    started: datetime
    seconds: float = 0.0
    dry_run: bool = False
    apps: list[AppReport] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(app.errors for app in self.apps)

    def failures(self) -> list[str]:
        """Every error, each prefixed with its app."""
        return [f"{app.app}: {error}" for app in self.apps for error in app.errors]

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def render(report: SyncReport, console: Console) -> None:
    """A table: one row per app, with what was built and tagged; then the builds' notes."""
    table = Table("app", "status", "versions", "tags", "index digests", "time", box=None)
    for app in report.apps:
        if report.dry_run:
            versions = f"{len(app.planned)} job(s) planned"
        else:
            versions = ", ".join(app.versions_built) or "-"
        tags = ", ".join(f"{entry.image}:{tag}" for entry in app.published for tag in entry.tags)
        digests = "\n".join(f"{entry.digest[:19]}…" for entry in app.published)
        table.add_row(
            app.app, app.status, versions, tags or "-", digests or "-", f"{app.seconds:.1f}s"
        )
    console.print(table)
    for app in report.apps:
        for built in app.built:
            for note in built.notes:
                console.print(
                    f"note: {app.app}/{built.image} {built.version} {built.platform}: {note}",
                    highlight=False,
                    markup=False,
                )
