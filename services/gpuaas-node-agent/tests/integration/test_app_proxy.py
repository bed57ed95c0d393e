"""The agent's app proxy and logs (node_agent/app_proxy.py) in front of a real app workload:
a signed bundle whose server echoes what it received, run by the reconciler. With a valid
X-App-Proxy token a request reaches the app (path, query, body), without the caller's
Authorization, cookies or the token itself; each refusal is tested: no token, a wrong typ,
another node, expired, too long-lived, another allocation, an undeclared port, a declared
but unexposed one, a logs token for a port, a port token for the logs, a node without
JWKS; and the logs stream the app's output."""

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gpucloud_contracts.node_sync import (
    BundleKey,
    DesiredAllocation,
    DesiredBundle,
    WorkloadPort,
    WorkloadProbe,
    WorkloadRuntime,
)
from gpucloud_trust import bundle as bundles
from gpucloud_trust import intoto
from gpucloud_trust.keys import SigningKey
from node_agent.app_proxy import TOKEN_TYPE, AppProxy, AppProxyVerifier, app_logs, app_port
from node_agent.reconcile import Reconciler
from platformkit.errors import ProblemError
from platformkit.http import _on_problem  # the kit's problem+json answer
from platformkit.tokens import CallableJwks, JwksCache

from ..conftest import signed_config

pytestmark = pytest.mark.integration
NODE = "node-proxy"
TENANT = uuid.uuid4()
PUBLISHER = SigningKey.generate()
SERVER = """
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = _answer

print("echo server up", flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
"""


class AppsSigner:
    """appplatform's proxy-token key (a stand-in: locally generated, its JWKS served)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from jwt.algorithms import OKPAlgorithm

        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex
        public = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def token(self, allocation: str, *, typ: str = TOKEN_TYPE, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "appplatform", "aud": f"node:{NODE}", "allocation_id": allocation,
            "port": 8080, "jti": str(uuid.uuid4()), "iat": now, "exp": now + 30,
        }  # fmt: skip
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"kid": self.kid, "typ": typ}
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers=headers)


RUNTIME = WorkloadRuntime(
    command=[sys.executable, "-u", "server.py"],
    ports=[WorkloadPort(name="http", port=8080, protocol="http", expose=True),
           WorkloadPort(name="metrics", port=9090, protocol="http", expose=False)],
    probe=WorkloadProbe(port=8080, path="/health", interval_s=0.1, timeout_s=1,
                        initial_delay_s=0, failure_threshold=2),
)  # fmt: skip


def _desired(tmp_path: Path) -> tuple[DesiredAllocation, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "server.py").write_text(SERVER)
    built = bundles.build(src, tmp_path / "staging", config=signed_config(RUNTIME))
    bundle_dir = tmp_path / "bundles"
    bundle_dir.mkdir()
    built.layout.rename(bundle_dir / built.digest.removeprefix("sha256:"))
    statement = intoto.release_statement(
        built.digest, tenant=str(TENANT), app="echo", version="1.0.0"
    )
    desired = DesiredAllocation(
        id=uuid.uuid4(), sku="h100-80gb", mig_profile=None, state="scheduled", instances=[],
        bundle=DesiredBundle(
            tenant_id=TENANT, app="echo", version="1.0.0", digest=built.digest,
            channel="stable", envelopes=[statement.sign([PUBLISHER]).to_json().decode()],
            keys=[BundleKey(public_key=PUBLISHER.public.to_base64(), status="active")],
        ),
        runtime=RUNTIME,
    )  # fmt: skip
    return desired, bundle_dir


@pytest.fixture
async def running(tmp_path):
    desired, bundle_dir = _desired(tmp_path)
    reconciler = Reconciler(tmp_path / "state" / "node.json", bundle_dir=bundle_dir)
    assert reconciler.reconcile([desired])
    aid = str(desired.id)
    deadline = time.monotonic() + 20
    while reconciler.readiness()[0].get(aid) != "ready":
        assert time.monotonic() < deadline, "the app never turned ready"
        await asyncio.sleep(0.05)
    yield reconciler, aid
    reconciler.reconcile([])


def _app(reconciler: Reconciler, signer: AppsSigner | None) -> Litestar:
    verifier = None
    if signer is not None:

        async def jwks():
            return signer.jwks

        verifier = AppProxyVerifier(JwksCache(CallableJwks(jwks)), node_name=NODE)
    app = Litestar(
        route_handlers=[app_port, app_logs],
        exception_handlers={ProblemError: _on_problem},
    )
    app.state.app_proxy = AppProxy(verifier, reconciler)
    return app


async def test_a_valid_token_reaches_the_app_without_the_caller_s_credentials(running):
    reconciler, aid = running
    signer = AppsSigner()
    async with AsyncTestClient(_app(reconciler, signer)) as client:
        reply = await client.post(
            f"/v1/workloads/{aid}/ports/8080/api/echo?x=1&y=two",
            content=b"payload",
            headers={"X-App-Proxy": signer.token(aid), "Authorization": "Bearer user-token",
                     "Cookie": "session=secret", "X-Custom": "kept"},
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        seen = reply.json()
        assert (seen["method"], seen["path"], seen["body"]) == (
            "POST", "/api/echo?x=1&y=two", "payload",
        )  # fmt: skip
        for dropped in ("authorization", "cookie", "x-app-proxy"):
            assert dropped not in seen["headers"]
        assert seen["headers"]["x-custom"] == "kept"
        assert seen["headers"]["x-forwarded-prefix"] == f"/v1/workloads/{aid}/ports/8080"

        # the app's root, with or without the trailing slash (a connect URL ends in `/`)
        for root in (f"/v1/workloads/{aid}/ports/8080/", f"/v1/workloads/{aid}/ports/8080"):
            reply = await client.get(root, headers={"X-App-Proxy": signer.token(aid)})
            assert reply.status_code == 200 and reply.json()["path"] == "/", (root, reply.text)

        logs = await client.get(
            f"/v1/workloads/{aid}/logs",
            headers={"X-App-Proxy": signer.token(aid, port=0, scope="logs")},
        )
        assert logs.status_code == 200 and "echo server up" in logs.text


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("ports/8080/x", lambda s, a: None, 401),
        ("ports/8080/x", lambda s, a: s.token(a, typ="terminal+jwt"), 401),
        ("ports/8080/x", lambda s, a: s.token(a, typ="at+jwt"), 401),
        ("ports/8080/x", lambda s, a: s.token(a, aud="node:another-node"), 401),
        ("ports/8080/x", lambda s, a: s.token(a, iss="terminal-gateway"), 401),
        ("ports/8080/x", lambda s, a: s.token(a, iat=int(time.time()) - 120,
                                              exp=int(time.time()) - 60), 401),
        ("ports/8080/x", lambda s, a: s.token(a, exp=int(time.time()) + 600), 401),
        ("ports/8080/x", lambda s, a: s.token(a, iat=None), 401),
        ("ports/8080/x", lambda s, a: AppsSigner().token(a), 401),  # a key not in the JWKS
        ("ports/8080/x", lambda s, a: s.token(str(uuid.uuid4())), 403),  # another allocation
        ("ports/8080/x", lambda s, a: s.token(a, port=9090), 403),  # another port
        ("ports/8080/x", lambda s, a: s.token(a, port=0, scope="logs"), 403),
        ("ports/7000/x", lambda s, a: s.token(a, port=7000), 404),  # undeclared
        ("ports/9090/x", lambda s, a: s.token(a, port=9090), 404),  # declared, not exposed
        ("logs", lambda s, a: s.token(a), 403),  # a port token for the logs
    ],
    ids=["no-token", "terminal-typ", "access-typ", "other-node", "other-issuer", "expired",
         "too-long-lived", "no-iat", "unknown-key", "other-allocation", "other-port",
         "logs-token-for-a-port", "undeclared-port", "unexposed-port", "port-token-for-logs"],
)  # fmt: skip
async def test_refusals(running, path, token, status):
    reconciler, aid = running
    signer = AppsSigner()
    headers = {}
    if (t := token(signer, aid)) is not None:
        headers["X-App-Proxy"] = t
    async with AsyncTestClient(_app(reconciler, signer)) as client:
        reply = await client.get(f"/v1/workloads/{aid}/{path}", headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "echo" not in reply.text or status != 200


async def test_an_allocation_not_running_here_and_a_node_without_jwks_are_refused(running):
    reconciler, aid = running
    signer = AppsSigner()
    other = str(uuid.uuid4())
    async with AsyncTestClient(_app(reconciler, signer)) as client:
        reply = await client.get(
            f"/v1/workloads/{other}/ports/8080/x", headers={"X-App-Proxy": signer.token(other)}
        )
        assert reply.status_code == 404
    async with AsyncTestClient(_app(reconciler, None)) as client:
        reply = await client.get(
            f"/v1/workloads/{aid}/ports/8080/x", headers={"X-App-Proxy": signer.token(aid)}
        )
        assert reply.status_code == 401
