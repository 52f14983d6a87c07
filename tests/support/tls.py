"""Certificates made in the test (trustme): a CA, and a server certificate for loopback names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certificates:
    """PEM files: `ca` to trust, `cert`/`key` for the server; `authority` issues more."""

    ca: Path
    cert: Path
    key: Path
    authority: trustme.CA


def make_certificates(directory: Path, *names: str) -> Certificates:
    """A fresh CA and a server certificate for `names` (default: 127.0.0.1 and localhost)."""
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    server = authority.issue_cert(*(names or ("127.0.0.1", "localhost")))
    certs = Certificates(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        authority=authority,
    )
    authority.cert_pem.write_to_path(str(certs.ca))
    server.cert_chain_pems[0].write_to_path(str(certs.cert))
    server.private_key_pem.write_to_path(str(certs.key))
    return certs
