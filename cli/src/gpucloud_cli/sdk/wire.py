"""The SDK's default HTTP path, on the standard library alone.

A `gpucloud` command is a new process, so import time is latency: `import httpx` alone
cost about a third of `gpucloud ps --json` (`just bench cli`). `Http` sends the API's
requests with `http.client` instead: HTTP/1.1, one kept-alive connection per client (the
gateway is one origin), TLS verified against certifi's bundle (httpx's default;
`SSL_CERT_FILE` / `SSL_CERT_DIR` override it), JSON or form bodies, query parameters.

httpx is still the client when it has something to add: a proxy named in the environment
(`HTTPS_PROXY`, `ALL_PROXY`, ...) or a transport given by the caller (httpx's
MockTransport in tests). `Client` picks (gpucloud_cli.sdk.client); both paths answer with
an object carrying `status_code`, `reason_phrase`, `headers` (lower-case names),
`content`, `text` and `json()`, and both fail with `TransportError` when no answer came.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import select
import socket
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")


class TransportError(Exception):
    """No answer: the connection failed, timed out or broke mid-answer."""


class Answer:
    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(
        self, status_code: int, reason_phrase: str, headers: dict[str, str], content: bytes
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode(_charset(self.headers.get("content-type", "")), "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def proxied() -> bool:
    """A proxy is configured in the environment (httpx honours it; Http does not)."""
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES)


def tls_context() -> ssl.SSLContext:
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


class Http:
    def __init__(self, base_url: str, *, timeout: float, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = headers
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        found = self._connection
        if found is not None and (found.sock is None or not idle_and_open(found.sock)):
            found.close()  # closed by the server while idle, or never opened
            found = None
        if found is None:
            if self.scheme == "https":
                found = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=tls_context()
                )
            else:
                found = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._connection = found
        return found

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        target = self.prefix + path
        if params:
            target += "?" + urlencode(
                [(k, "" if v is None else v) for k, v in params.items()], doseq=True
            )
        sent = {**self.headers, **(headers or {}), "Accept-Encoding": "identity"}
        body: bytes | None = None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json"
        elif data is not None:
            body = urlencode(data).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif content is not None:
            body = content
            sent.setdefault("Content-Type", "application/octet-stream")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            sent["Content-Length"] = str(len(body or b""))
        connection = self._connect()
        try:
            connection.request(method, target, body=body, headers=sent)
            answer = connection.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise TransportError(str(exc) or type(exc).__name__) from exc
        if answer.will_close:
            connection.close()
        got = {k.lower(): v for k, v in answer.getheaders() if k.lower() != "transfer-encoding"}
        if got.get("content-encoding", "").lower() == "gzip":  # asked for identity; some don't
            import gzip

            content = gzip.decompress(content)
        return Answer(answer.status, answer.reason, got, content)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class HttpxHttp:
    """The same interface over an httpx.Client (a proxy, or a caller's transport)."""

    def __init__(
        self, base_url: str, *, timeout: float, headers: dict[str, str], transport: Any = None
    ) -> None:
        from gpucloud_cli.sdk.transport import StdlibTransport, httpx

        self._httpx = httpx
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport or StdlibTransport(),
            headers=headers,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            response = self._client.request(method, path, **kwargs)
        except self._httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc
        return Answer(
            response.status_code,
            response.reason_phrase,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    def close(self) -> None:
        self._client.close()


def idle_and_open(sock: socket.socket) -> bool:
    """A kept-alive socket with nothing to read: still usable. Readable means the server
    closed it (EOF) or sent something unasked: reconnect rather than fail mid-request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"
