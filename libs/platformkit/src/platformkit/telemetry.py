"""Tracing and structured logs.

One trace crosses HTTP -> outbox -> Kafka -> consumer: the HTTP span's context is stored
with each outbox row as a W3C traceparent, the relay sends it as a Kafka header, and the
consumer continues the trace from it. Logs are JSON lines carrying the current trace id,
tenant and event id (from context variables), never secrets.

Spans leave the process only when an OTLP endpoint is configured, with the standard
variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, plus
`OTEL_EXPORTER_OTLP_HEADERS` for a collector that wants a token): a batch processor sends
them over OTLP/HTTP. Without one, trace ids still flow through headers, rows and logs.
"""

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
current_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
current_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "event_id", default=None
)


def configure_tracing(service_name: str, version: str) -> TracerProvider:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": version})
    )
    if otlp_endpoint_configured():
        # Imported here: a process that exports nothing never loads the exporter.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def otlp_endpoint_configured(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env  # type: ignore[assignment]
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def tracer() -> trace.Tracer:
    return trace.get_tracer("gpucloud")


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextlib.contextmanager
def continue_trace(name: str, traceparent: str | None, **attributes: str) -> Iterator[Span]:
    """Start a consumer span as a child of the producer's traceparent (if any)."""
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with tracer().start_as_current_span(
            name, kind=trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "trace_id": current_trace_id(),
            "tenant": current_tenant.get(),
            "event_id": current_event_id.get(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


def configure_logging(service_name: str, fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service_name} %(levelname)s %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
