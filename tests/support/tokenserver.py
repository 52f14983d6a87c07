"""A Docker-style token server (the registry's `auth: token` realm) on loopback.

It issues JWTs signed by a certificate made in the test, which `docker-registry` verifies
against the CA given as its `rootcertbundle` — the same flow as Docker Hub or GHCR: the
client presents Basic credentials (or an OAuth2 refresh token) to the realm and gets a
bearer token for the scopes it asked for.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .net import free_port

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    """What a client asked the realm for: how it authenticated, and which scopes."""

    method: str
    user: str | None
    scopes: list[str]
    granted: bool


@dataclass
class TokenServer:
    """Users (`user → password`), refresh tokens, and a log of every token request."""

    directory: Path
    users: dict[str, str]
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    #: Answer with `access_token` instead of `token` (both exist in the wild).
    access_token_field: bool = False
    #: Grant nothing the first time a scope is asked for (as after a permission change).
    narrow_first: bool = False
    log: list[TokenRequest] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA(key_type=trustme.KeyType.RSA)
        signer = authority.issue_cert("token-signer", key_type=trustme.KeyType.RSA)
        self.root_bundle = self.directory / "token-ca.pem"
        authority.cert_pem.write_to_path(str(self.root_bundle))
        key = serialization.load_pem_private_key(signer.private_key_pem.bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._key = key
        self._chain = [
            base64.b64encode(_der(pem.bytes())).decode()
            for pem in (signer.cert_chain_pems[0], authority.cert_pem)
        ]
        self._asked: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, str]:
        """The `auth: token:` section for the registry's config."""
        return {
            "realm": self.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.root_bundle),
        }

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _token(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._chain}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def _grant(self, method: str, user: str | None, scopes: list[str]) -> dict[str, Any] | None:
        granted = user is not None
        key = " ".join(sorted(scopes))
        if granted and self.narrow_first and key not in self._asked:
            self._asked.add(key)
            scopes = []
        self.log.append(TokenRequest(method, user, scopes, granted))
        if not granted:
            return None
        token = self._token(user or "anonymous", scopes)
        name = "access_token" if self.access_token_field else "token"
        return {name: token, "expires_in": 300, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, doc: dict[str, Any] | None) -> None:
                body = json.dumps(doc or {"details": "unauthorized"}).encode()
                self.send_response(200 if doc else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    user = name if server.users.get(name) == password else None
                    if user is None:
                        server.log.append(TokenRequest("GET", name, [], False))
                        self._answer(None)
                        return
                self._answer(server._grant("GET", user, query.get("scope", [])))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                refresh = form.get("refresh_token", [""])[0]
                user = server.refresh_tokens.get(refresh)
                ok = form.get("grant_type") == ["refresh_token"] and user is not None
                self._answer(server._grant("POST", user if ok else None, form.get("scope", [])))

        return Handler


def _der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    return base64.b64decode(body)
