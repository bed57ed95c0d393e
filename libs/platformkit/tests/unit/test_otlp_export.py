"""Spans leave the process over OTLP/HTTP when (and only when) an endpoint is configured.

A local HTTP server stands in for the collector and decodes what arrives with the OTLP
protobuf schema; the service side runs in a subprocess because the tracer provider is
process-global."""

import http.server
import subprocess
import sys
import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from platformkit.telemetry import otlp_endpoint_configured

SERVICE = """
from platformkit.telemetry import configure_tracing, tracer
provider = configure_tracing("otlp-probe", "1.2.3")
with tracer().start_as_current_span("probe.work"):
    pass
provider.shutdown()  # flushes the batch processor
"""


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _run_service(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVICE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_spans_are_exported_to_the_configured_collector(monkeypatch):
    _Collector.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        import os

        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        }
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        _run_service(env)
    finally:
        server.shutdown()

    assert [path for path, _ in _Collector.received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(_Collector.received[0][1])
    (resource_spans,) = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "otlp-probe"
    assert attributes["service.version"] == "1.2.3"
    names = [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert names == ["probe.work"]


def test_nothing_is_exported_without_an_endpoint():
    assert not otlp_endpoint_configured({})
    assert otlp_endpoint_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert otlp_endpoint_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"})
