"""Where each /v1/<route> prefix goes: GPUCLOUD_UPSTREAMS="iam=http://127.0.0.1:8101,..."."""

import dataclasses
import os
import re

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


# PUT .../apps/{app}/blobs/{digest}: registry's content-addressed blob upload, the one route
# whose bodies are bundle layers (registry streams and limits them itself as well).
BLOB_UPLOAD = re.compile(
    r"^/v1/registry/tenants/[^/]+/projects/[^/]+/apps/[^/]+/blobs/sha256:[0-9a-f]{64}$"
)


@dataclasses.dataclass(frozen=True)
class BodyLimits:
    """How many bytes of request body the gateway passes upstream: every route
    `GPUCLOUD_GATEWAY_MAX_BODY_BYTES` (1 MiB, what each service's kit accepts), blob uploads
    `GPUCLOUD_GATEWAY_MAX_UPLOAD_BYTES` (10 GiB, registry's own default)."""

    body: int = 1_048_576
    upload: int = 10 * 1024**3

    def for_request(self, method: str, path: str) -> int:
        return self.upload if method == "PUT" and BLOB_UPLOAD.match(path) else self.body

    @classmethod
    def from_env(cls) -> "BodyLimits":
        def size(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"{name} must be a positive number of bytes, not {raw!r}")
            return int(raw)

        return cls(
            size("GPUCLOUD_GATEWAY_MAX_BODY_BYTES", cls.body),
            size("GPUCLOUD_GATEWAY_MAX_UPLOAD_BYTES", cls.upload),
        )
