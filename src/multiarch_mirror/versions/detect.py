"""Detection for one app: run its source, apply the version policy, then the gates."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from multiarch_mirror.config import AppConfig, Gate
from multiarch_mirror.oci.media import Platform
from multiarch_mirror.template import TemplateContext
from multiarch_mirror.versions import github, gitlab, npm, pypi, regex, registry
from multiarch_mirror.versions.http import UpstreamError, UpstreamHttp
from multiarch_mirror.versions.policy import Candidate, Release, Version, VersionPolicy
from multiarch_mirror.versions.source import Source, SourceContext, StoreOpener

SOURCES: dict[str, Source] = {
    "github-releases": github.releases,
    "github-tags": github.tags,
    "gitlab-tags": gitlab.tags,
    "registry-tags": registry.tags,
    "npm": npm.versions,
    "pypi": pypi.versions,
    "regex": regex.versions,
}
"""Source kind (the `upstream.source` key) → the function listing its releases."""


@dataclass(frozen=True)
class HeldBack:
    """A version the policy selected but a gate keeps out, for now."""

    version: Version
    reason: str


@dataclass(frozen=True)
class Detection:
    """An app's candidate versions, newest first, and the ones held back by gates."""

    app: str
    candidates: list[Candidate]
    held_back: list[HeldBack]


@dataclass(frozen=True)
class _GateCheck:
    key: str
    failure: str
    holds: Callable[[], Awaitable[bool]]


class Detector:
    """Detects versions for many apps: one HTTP client, a bounded number of apps at a time.

    Gates that passed are remembered in `state_dir/gates.json` (release artifacts and tags,
    once published, stay), so a steady state costs no gate requests.
    """

    def __init__(
        self,
        http: UpstreamHttp,
        open_store: StoreOpener,
        state_dir: Path,
        *,
        concurrency: int = 8,
    ) -> None:
        self.http = http
        self._open_store = open_store
        self._bound = asyncio.Semaphore(concurrency)
        self._gates_file = state_dir / "gates.json"
        try:
            self._passed: set[str] = set(json.loads(self._gates_file.read_text()))
        except (OSError, ValueError, TypeError):
            self._passed = set()
        self._saved = frozenset(self._passed)

    async def detect(
        self, app: AppConfig, policy: VersionPolicy, platforms: Sequence[Platform]
    ) -> Detection:
        """Candidates of `app`: the policy's newest versions whose gates hold on `platforms`."""
        async with self._bound:
            context = SourceContext(
                http=self.http,
                open_store=self._open_store,
                enough=lambda found: _fills(policy, found),
            )
            try:
                releases = await SOURCES[app.upstream.source](app.upstream, context)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                # the API answered 2xx, but not in the shape this source knows
                raise UpstreamError(
                    f"{app.upstream.source} answered in an unexpected shape "
                    f"({type(exc).__name__}: {exc}); is base_url the right API?"
                ) from None
            selected = policy.select(releases)
            failures = await asyncio.gather(
                *(self._gate_failure(app.upstream.gates, c.version, platforms) for c in selected)
            )
        return Detection(
            app=app.name,
            candidates=[c for c, failure in zip(selected, failures, strict=True) if not failure],
            held_back=[
                HeldBack(c.version, failure)
                for c, failure in zip(selected, failures, strict=True)
                if failure
            ],
        )

    async def _gate_failure(
        self, gates: Sequence[Gate], version: Version, platforms: Sequence[Platform]
    ) -> str | None:
        checks = {
            check.key: check
            for gate in gates
            for platform in platforms
            for check in [self._gate_check(gate, TemplateContext.for_(version, platform))]
        }
        pending = [check for key, check in checks.items() if key not in self._passed]
        results = await asyncio.gather(*(check.holds() for check in pending))
        for check, holds in zip(pending, results, strict=True):
            if not holds:
                return check.failure
            self._passed.add(check.key)
        return None

    def _gate_check(self, gate: Gate, context: TemplateContext) -> _GateCheck:
        if gate.url_exists is not None:
            url = context.render(gate.url_exists)
            return _GateCheck(
                f"url {url}", f"{url} is not there yet", lambda: self.http.exists(url)
            )
        assert gate.gitlab_tag is not None
        spec = gate.gitlab_tag
        tag = context.render(spec.tag)
        return _GateCheck(
            f"gitlab {spec.base_url} {spec.project} {tag}",
            f"tag {tag} is not in {spec.project} on {spec.base_url} yet",
            lambda: gitlab.tag_exists(self.http, spec.base_url, spec.project, tag),
        )

    def save(self) -> None:
        """Persist the gates that passed (if any passed for the first time)."""
        if self._passed == self._saved:
            return
        self._gates_file.parent.mkdir(parents=True, exist_ok=True)
        temp = self._gates_file.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(sorted(self._passed), indent=0))
        temp.replace(self._gates_file)
        self._saved = frozenset(self._passed)


def _fills(policy: VersionPolicy, found: Sequence[Release]) -> bool:
    return len(policy.select(found)) >= policy.max_versions
