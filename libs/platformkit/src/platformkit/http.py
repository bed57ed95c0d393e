"""The HTTP face every service shares: health routes, RFC 9457 errors, tracing, replies.

`build_service_app` turns a ServiceDefinition (platformkit.definition) into a litestar app
whose lifespan builds the service runtime, runs the definition's start-up hooks, starts the
runtime (relay, consumers, feeds, heartbeat, jobs), and on shutdown stops it before the
shutdown hooks. Building the app opens no connection, so the OpenAPI document can be
exported without infrastructure.

Routes answer a use case's `StoredResponse` (an idempotent request's reply, stored or
replayed) with `respond`; `json_reply` and `problem_reply` are the encoders they hand to
`platformkit.idempotency.run_once`.
"""

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from platformkit.auth import provide_principal
from platformkit.caller import caller_middleware
from platformkit.db import Database
from platformkit.definition import ServiceDefinition
from platformkit.errors import PROBLEM_BASE, PROBLEM_JSON, FieldError, Problem, ProblemError
from platformkit.idempotency import StoredResponse
from platformkit.metrics import ServiceMetrics, metrics_middleware, metrics_route
from platformkit.runtime import ServiceRuntime
from platformkit.settings import ServiceSettings
from platformkit.telemetry import configure_tracing, current_trace_id
from platformkit.tokens import verifier_from_settings

log = logging.getLogger(__name__)


def respond(reply: StoredResponse, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """A use case's reply (fresh or replayed) as the HTTP response."""
    return Response(
        reply.body, status_code=reply.status, media_type=reply.media_type, headers=headers
    )


def json_reply(body: Any, status: int = 201) -> StoredResponse:
    """A msgspec-encodable body as a reply."""
    return StoredResponse(status, msgspec.json.encode(body))


def problem_reply(error: ProblemError, instance: str) -> StoredResponse:
    """A problem (e.g. a rejection that was recorded and must replay) as a reply."""
    return StoredResponse(error.status, msgspec.json.encode(error.to_problem(instance)))


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> Response[Any]:
    return Response(
        content=problem, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers
    )


def _on_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[Any]:
    return problem_response(exc.to_problem(request.url.path, current_trace_id()), exc.headers)


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = [
        FieldError(
            field=str(item.get("key") or item.get("source") or "body"),
            message=str(item.get("message", "invalid")),
        )
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or exc.detail
    problem = Problem(
        type=PROBLEM_BASE + "validation",
        title="Request validation failed",
        status=400,
        detail=detail,
        instance=request.url.path,
        errors=errors or None,
        trace_id=current_trace_id(),
    )
    return problem_response(problem)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    problem = Problem(
        type=PROBLEM_BASE + f"http-{exc.status_code}",
        title=exc.detail or "HTTP error",
        status=exc.status_code,
        instance=request.url.path,
        trace_id=current_trace_id(),
    )
    return problem_response(problem, exc.headers)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    problem = Problem(
        type=PROBLEM_BASE + "internal",
        title="Internal error",
        status=500,
        instance=request.url.path,
        trace_id=current_trace_id(),
    )
    return problem_response(problem)


# The problem+json answers the kit's handlers can give any API route: a malformed request
# (400), no or a bad token (401), a role too low (403), a resource that does not exist or
# belongs to another tenant (404), a state conflict (409), a rule or Idempotency-Key
# violation (422), a dependency down (503). Declared once here so every service's OpenAPI
# document says so; a route declaring its own answer for one of these keeps it.
PROBLEM_RESPONSES = {
    400: "Malformed request: the problem names the field",
    401: "Authentication required or the token is not valid",
    403: "The caller's role does not allow this",
    404: "Not found (or not visible to the caller)",
    409: "Conflicts with the current state",
    422: "Breaks a rule of the request, or reuses an Idempotency-Key with another body",
    503: "A dependency is unavailable; retry later",
}


def _problem_spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


def declare_problem_responses(app: Litestar) -> None:
    """Add the kit's problem+json responses to every documented route outside the ops tag
    (whose answers are all declared on the route)."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or "ops" in (handler.tags or ()):
                continue
            declared = dict(handler.responses or {})
            for status, description in PROBLEM_RESPONSES.items():
                declared.setdefault(status, _problem_spec(description))
            handler.responses = declared


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, Any]


@get("/healthz", operation_id="healthz", tags=["ops"], include_in_schema=True, sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    operation_id="readyz",
    tags=["ops"],
    responses={
        503: ResponseSpec(
            Readiness, description="Not ready: the failing checks", generate_examples=False
        )
    },
)
async def readyz(state: State) -> Response[Readiness]:
    runtime: ServiceRuntime | None = getattr(state, "runtime", None)
    if runtime is None:
        return Response(Readiness(ready=False, checks={}), status_code=503)
    readiness = await runtime.readiness()
    return Response(
        Readiness(ready=readiness.ready, checks=readiness.checks),
        status_code=200 if readiness.ready else 503,
    )


@get("/version", operation_id="version", tags=["ops"], sync_to_thread=False)
def version(state: State) -> dict[str, str]:
    settings: ServiceSettings = state.settings
    return {"name": settings.service_name, "version": settings.version, "git_sha": settings.git_sha}


def provide_db(state: State) -> Database:
    db = state.runtime.db
    if db is None:
        raise RuntimeError("this service has no database")
    return db


def provide_runtime(state: State) -> ServiceRuntime:
    return state.runtime


async def _add_trace_header(response: Response[Any]) -> Response[Any]:
    trace_id = current_trace_id()
    if trace_id:
        response.headers["X-Trace-Id"] = trace_id
    return response


def _initial_state(settings: ServiceSettings) -> dict[str, Any]:
    state: dict[str, Any] = {"settings": settings, "metrics": ServiceMetrics(settings.service_name)}
    if settings.jwks_url:
        # iam's access tokens are accepted once the service knows where iam's keys are.
        state["token_verifier"] = verifier_from_settings(
            settings.jwks_url, issuer=settings.token_issuer, audience=settings.token_audience
        )
    return state


def build_service_app(
    definition: ServiceDefinition, settings: ServiceSettings | None = None
) -> Litestar:
    settings = settings or ServiceSettings.from_env(definition.name, definition.version)
    provider = configure_tracing(settings.service_name, settings.version)

    async def start_runtime(app: Litestar) -> None:
        runtime = ServiceRuntime(definition, settings, app.state)
        app.state.runtime = runtime
        verifier = getattr(app.state, "token_verifier", None)
        if verifier is not None and runtime.revocations is not None:
            verifier.revocations = runtime.revocations
        if verifier is not None and runtime.memberships is not None:
            verifier.memberships = runtime.memberships
        await _run_hooks(definition.on_startup, app)
        await runtime.start()

    async def stop_runtime(app: Litestar) -> None:
        runtime: ServiceRuntime | None = getattr(app.state, "runtime", None)
        if runtime is not None:
            await runtime.stop()
        await _run_hooks(definition.on_shutdown, app)

    app = Litestar(
        route_handlers=[healthz, readyz, version, metrics_route, *definition.route_handlers],
        middleware=[metrics_middleware, caller_middleware],
        dependencies={
            "db": Provide(provide_db, sync_to_thread=False),
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "principal": Provide(provide_principal),
            **definition.dependencies,
        },
        state=State(_initial_state(settings)),
        on_startup=[start_runtime],
        on_shutdown=[stop_runtime],
        after_request=_add_trace_header,
        exception_handlers={
            ProblemError: _on_problem,
            ValidationException: _on_validation,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
        plugins=[OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=provider))],
        openapi_config=OpenAPIConfig(
            title=f"gpucloud {definition.name}",
            version=definition.version,
            description=definition.description,
            path="/schema",
        ),
        request_max_body_size=1_048_576,
        logging_config=None,
        debug=False,
    )
    declare_problem_responses(app)
    return app


async def _run_hooks(hooks: Any, app: Litestar) -> None:
    for hook in hooks:
        result = hook(app)
        if inspect.isawaitable(result):
            await result


__all__ = [
    "build_service_app",
    "json_reply",
    "problem_reply",
    "problem_response",
    "respond",
]
