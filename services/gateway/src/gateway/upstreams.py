"""Where each /v1/<route> prefix goes: GPUCLOUD_UPSTREAMS="iam=http://127.0.0.1:8101,..."."""

import os

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# The WebSocket handshake's own headers: the gateway's client to the upstream makes its own.
WEBSOCKET_OWN = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
# Set by the gateway's own server on the way out; an upstream's copies would repeat them.
RESPONSE_OWN = frozenset({"date", "server", "x-trace-id", "content-encoding"})


def parse_upstreams(raw: str) -> dict[str, str]:
    upstreams: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        route, sep, url = item.partition("=")
        if not sep or not route or not url.startswith(("http://", "https://")):
            raise ValueError(f"GPUCLOUD_UPSTREAMS entry {item!r} is not route=http(s)://host:port")
        upstreams[route.strip()] = url.strip().rstrip("/")
    return upstreams


def upstreams_from_env() -> dict[str, str]:
    return parse_upstreams(os.environ.get("GPUCLOUD_UPSTREAMS", ""))
