"""The gateway's root route to the portal, against a real portal-like upstream (a tiny
HTTP server on loopback that sets a cookie and echoes what it received)."""

import http.server
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from litestar.testing import TestClient

from gateway.portal import cookie_free_jar


class Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "cookie": self.headers.get("cookie")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("set-cookie", f"gpucloud_session=for-{self.path.strip('/')}; HttpOnly")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def gateway(upstream, monkeypatch_module) -> Iterator[TestClient]:
    monkeypatch_module.setenv("GPUCLOUD_PORTAL_URL", upstream)
    monkeypatch_module.setenv("GPUCLOUD_UPSTREAMS", "")
    from gateway.bootstrap import build_app

    with TestClient(build_app()) as client:
        yield client


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


class TestPortalRoute:
    def test_the_root_and_every_page_go_to_the_portal(self, gateway):
        for path in ("/", "/launch", "/projects/p/allocations/a", "/static/portal.css"):
            response = gateway.get(path)
            assert response.status_code == 200, path
            assert response.json()["path"] == path
            assert response.headers["set-cookie"].startswith("gpucloud_session=")

    def test_api_paths_and_the_gateways_own_routes_stay_the_gateways(self, gateway):
        assert gateway.get("/v1/nothing").status_code == 404
        assert gateway.get("/v1/nothing/here").status_code == 404  # no such API upstream
        assert gateway.get("/healthz").json() == {"status": "ok"}

    def test_one_browsers_cookie_never_goes_out_with_anothers_request(self, gateway):
        gateway.cookies.clear()
        gateway.get("/alice")  # the portal answers with alice's session cookie
        gateway.cookies.clear()  # bob's browser has none
        assert gateway.get("/bob").json()["cookie"] is None

    def test_the_jar_keeps_nothing(self):
        jar = cookie_free_jar()
        client = httpx.Client(cookies=jar)
        response = httpx.Response(
            200,
            headers={"set-cookie": "a=b; Path=/"},
            request=httpx.Request("GET", "http://127.0.0.1/x"),
        )
        client.cookies.extract_cookies(response)
        assert len(jar) == 0
        client.close()
