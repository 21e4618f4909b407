"""API keys, the loopback rule, per-key rate limits and the request-body limit.

Keys file: one key a line, stored as its SHA-256 hex digest, optionally followed by a name
(`# comments` and blank lines are skipped). `genforge serve --new-key NAME` or `new_key()`
makes one. A presented key is hashed and compared with every stored digest by
`hmac.compare_digest`, so neither the comparison nor the loop's length depends on where a
guess first differs. The file is re-read when it changes: deleting a line revokes that key
without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from genforge.errors import ConfigError

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(name: str = "") -> tuple[str, str]:
    """A fresh key and the line that stores it (digest and name): give out the key, keep the
    line."""
    key = "gf_" + secrets.token_urlsafe(32)
    return key, f"{hash_key(key)} {name}".rstrip()


class KeyStore:
    """The hashed keys of one file, re-read when the file's mtime or size changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._digests: dict[str, str] = {}  # digest -> name
        self._lock = threading.Lock()
        self._reload()
        if not self._digests:
            raise ConfigError(f"--api-keys {self.path}: no keys in it (one SHA-256 hex digest "
                              "a line; `genforge serve --new-key NAME` makes one)")

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ConfigError(f"--api-keys {self.path}: no such file") from None
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        digests = {}
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            digest, _, name = line.partition(" ")
            if not _DIGEST.match(digest):
                raise ConfigError(f"--api-keys {self.path}:{number}: not a SHA-256 hex digest; "
                                  "the file stores hashes of keys, never the keys")
            digests[digest] = name.strip() or digest[:8]
        self._digests, self._stamp = digests, stamp

    def check(self, key: str) -> str | None:
        """The key's name if it is valid, else None; constant time in the key's content."""
        with self._lock:
            try:
                self._reload()
            except ConfigError:
                self._digests = {}  # the file went away: every key is revoked
        presented = hash_key(key)
        found = None
        for digest, name in list(self._digests.items()):
            if hmac.compare_digest(presented, digest):  # no early exit on a match either
                found = name
        return found


def is_loopback(host: str) -> bool:
    if host in ("localhost", "testclient"):  # testclient: Starlette's in-process client
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: KeyStore | None) -> None:
    """Without keys the server answers on loopback only."""
    if keys is None and not is_loopback(host):
        raise ConfigError(f"--host {host}: refusing to serve beyond this machine without "
                          "--api-keys; use --host 127.0.0.1 or give a keys file")


@dataclass
class RateLimiter:
    """A token bucket per client (key name, or address without keys): `rate` requests a
    second on average, bursts of `burst`."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, client: str) -> float:
        """0 if the request may go, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 before any of it is parsed."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        chunks, seen, more = [], 0, True
        while more:  # read the whole body first (bounded), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await _too_large(send, self.limit)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        async def replayed():  # the body once, then whatever comes next (a disconnect)
            nonlocal body
            if body is not None:
                message, body = {"type": "http.request", "body": body, "more_body": False}, None
                return message
            return await receive()

        await self.app(scope, replayed, send)


def _replay(messages):  # type: ignore[no-untyped-def]
    async def receive():  # type: ignore[no-untyped-def]
        return messages.pop(0) if messages else {"type": "http.disconnect"}
    return receive


async def _too_large(send, limit: int) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"detail": f"body: over the limit of {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
