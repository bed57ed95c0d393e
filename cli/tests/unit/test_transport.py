"""The SDK's two HTTP paths against a real HTTP server on loopback (http.server in a
thread): wire.Http (the standard library, the default) and StdlibTransport under httpx."""

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpucloud_cli.sdk.transport import StdlibTransport, httpx
from gpucloud_cli.sdk.wire import Http, TransportError


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body: bytes = b"") -> None:
        Handler.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers),
             "body": body, "peer": self.client_address[1]}
        )  # fmt: skip

    def do_GET(self) -> None:
        self._record()
        if self.path == "/gzip":
            self._answer(200, gzip.compress(b'{"ok": true}'), {"Content-Encoding": "gzip"})
        elif self.path == "/close":
            self._answer(200, b"{}", {"Connection": "close"})
            self.close_connection = True
        else:
            self._answer(200, json.dumps({"path": self.path}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._record(body)
        self._answer(201, body, {"Content-Type": "application/json"})


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, transport=StdlibTransport(), timeout=5)


def test_requests_share_one_kept_alive_connection(server: str) -> None:
    with _client(server) as client:
        assert client.get("/a", params={"x": "1 2"}).json() == {"path": "/a?x=1+2"}
        assert client.get("/b").status_code == 200
    assert Handler.seen[0]["peer"] == Handler.seen[1]["peer"]
    assert Handler.seen[0]["headers"]["Accept-Encoding"] == "identity"


def test_a_body_goes_with_its_length_and_headers(server: str) -> None:
    with _client(server) as client:
        answer = client.post("/x", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert answer.status_code == 201 and answer.json() == {"a": 1}
    assert answer.reason_phrase == "Created"
    sent = Handler.seen[0]
    assert sent["headers"]["Idempotency-Key"] == "k1"
    assert sent["headers"]["Content-Length"] == str(len(sent["body"]))


def test_a_connection_the_server_closed_is_replaced(server: str) -> None:
    with _client(server) as client:
        client.get("/close")
        assert client.get("/after").json() == {"path": "/after"}
    assert Handler.seen[0]["peer"] != Handler.seen[1]["peer"]


def test_an_encoded_answer_is_decoded(server: str) -> None:
    with _client(server) as client:
        assert client.get("/gzip").json() == {"ok": True}


def test_nobody_listening_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _client(f"http://127.0.0.1:{port}") as client, pytest.raises(httpx.ConnectError):
        client.get("/")


def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with httpx.Client(base_url=base, transport=StdlibTransport(), timeout=0.3) as client:
            with pytest.raises(httpx.TimeoutException):
                client.get("/")


def _http(base: str, timeout: float = 5) -> Http:
    return Http(base, timeout=timeout, headers={"User-Agent": "tests"})


def test_wire_requests_share_one_connection_with_query_and_prefix(server: str) -> None:
    http = _http(server + "/api/")
    try:
        answer = http.request("GET", "/a", params={"x": "1 2", "after": None})
        assert answer.json() == {"path": "/api/a?x=1+2&after="}
        assert http.request("GET", "/b").status_code == 200
    finally:
        http.close()
    assert Handler.seen[0]["peer"] == Handler.seen[1]["peer"]
    assert Handler.seen[0]["headers"]["User-Agent"] == "tests"
    assert Handler.seen[0]["headers"]["Accept-Encoding"] == "identity"


def test_wire_json_and_form_bodies(server: str) -> None:
    http = _http(server)
    try:
        answer = http.request("POST", "/x", json={"a": 1}, headers={"Idempotency-Key": "k1"})
        http.request("POST", "/token", data={"grant_type": "password", "p": "a&b"})
    finally:
        http.close()
    assert answer.status_code == 201 and answer.json() == {"a": 1}
    assert answer.reason_phrase == "Created"
    assert answer.headers["content-type"] == "application/json"
    first, second = Handler.seen
    assert first["headers"]["Idempotency-Key"] == "k1"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Content-Length"] == str(len(first["body"]))
    assert second["body"] == b"grant_type=password&p=a%26b"
    assert second["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_wire_replaces_a_closed_connection_and_decodes_gzip(server: str) -> None:
    http = _http(server)
    try:
        http.request("GET", "/close")
        assert http.request("GET", "/after").json() == {"path": "/after"}
        assert http.request("GET", "/gzip").json() == {"ok": True}
    finally:
        http.close()
    assert Handler.seen[0]["peer"] != Handler.seen[1]["peer"]


def test_wire_no_answer_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError):
        _http(f"http://127.0.0.1:{port}").request("GET", "/")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(TransportError):
            _http(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).request("GET", "/")
