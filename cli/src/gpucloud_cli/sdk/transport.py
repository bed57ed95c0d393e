"""httpx, made cheap to start, for the SDK's httpx path (a proxy from the environment, or a
caller's transport: gpucloud_cli.sdk.wire). Without those the SDK imports no httpx at all.

Two things cost most of `gpucloud ps --json` before a byte is sent (`just bench cli`):

1. `import httpx` also imports `httpx._main` (httpx's own command line), which, when click
   and rich are installed (they are), imports click, rich.console, rich.progress,
   rich.syntax and pygments. Registering an empty `httpx._main` first skips it;
   `httpx.main` then raises instead of starting httpx's CLI.
2. `httpx.Client()` builds httpcore's transport, which imports httpcore's sync and async
   stacks, h11, anyio and more: about as much again as httpx itself. `StdlibTransport`
   is an `httpx.BaseTransport` over the standard library's `http.client` instead: HTTP/1.1,
   one kept-alive connection per origin, TLS verified against certifi's bundle (httpx's
   default; `SSL_CERT_FILE` / `SSL_CERT_DIR` override it). Proxies from the environment
   are still honoured: httpx mounts its own (httpcore) transport for proxied URLs.

Everything above the transport is httpx's: its Client, Request/Response, timeouts, errors
(`httpx.ConnectError`, `httpx.TimeoutException`, ...), and MockTransport in tests.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _stub = types.ModuleType("httpx._main")

    def _no_cli() -> None:
        raise RuntimeError("httpx's command line is not loaded inside gpucloud")

    _stub.main = _no_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stub

import http.client
import socket
import ssl

import httpx

from gpucloud_cli.sdk.wire import idle_and_open, tls_context

if TYPE_CHECKING:
    from collections.abc import Iterable

# hop-by-hop or computed by http.client itself
_SKIPPED_HEADERS = frozenset({"host", "connection", "content-length", "transfer-encoding"})


class StdlibTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._tls: ssl.SSLContext | None = None

    def _connection(self, url: httpx.URL, timeout: float | None) -> http.client.HTTPConnection:
        port = url.port or (443 if url.scheme == "https" else 80)
        key = (url.scheme, url.host, port)
        found = self._connections.get(key)
        if found is not None and (found.sock is None or not idle_and_open(found.sock)):
            found.close()  # closed by the server while idle, or never opened
            found = None
        if found is None:
            if url.scheme == "https":
                self._tls = self._tls or tls_context()
                found = http.client.HTTPSConnection(
                    url.host, port, timeout=timeout, context=self._tls
                )
            elif url.scheme == "http":
                found = http.client.HTTPConnection(url.host, port, timeout=timeout)
            else:
                raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
            self._connections[key] = found
        found.timeout = timeout
        if found.sock is not None:
            found.sock.settimeout(timeout)
        return found

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("read") or timeouts.get("connect")
        connection = self._connection(request.url, timeout)
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower().decode("latin-1") not in _SKIPPED_HEADERS | {"accept-encoding"}
        ]
        headers.append(("Accept-Encoding", "identity"))  # small answers; nothing to decode
        body = request.read()
        try:
            connection.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=False,
                skip_accept_encoding=True,
            )
            for name, value in headers:
                connection.putheader(name, value)
            if body or request.method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            answer = connection.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except (ConnectionRefusedError, socket.gaierror) as exc:
            connection.close()
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise httpx.RemoteProtocolError(
                str(exc) or type(exc).__name__, request=request
            ) from exc
        if answer.will_close:
            connection.close()
        return httpx.Response(
            status_code=answer.status,
            headers=_pairs(answer.getheaders()),
            content=content,
            request=request,
            extensions={"reason_phrase": answer.reason.encode("latin-1", "replace")},
        )

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def _pairs(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    # http.client has undone the chunking; a content-encoding, if any, httpx decodes
    return [(k, v) for k, v in items if k.lower() != "transfer-encoding"]


__all__ = ["StdlibTransport", "httpx"]
