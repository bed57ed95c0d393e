"""Apps (docs/appplatform.md): the catalog of apps the tenant can launch (its own and the
platform's), launching an instance from a catalog entry, the instances of a project, and an
instance's page (desired and observed state, replicas, conditions, recent logs, stop).

Everything is appplatform's public API through the gateway with the user's token: the
catalog is any signed-in caller's; launching needs `workload.manage` in the project, reading
instances `workload.read` (a lower role's 403 and another tenant's 404 are their pages)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post

from portal.api import Api, ApiError, seg
from portal.sessions import Session
from portal.views.common import form_of, projects_of, user_session
from portal.web import FormErrors, api_of, redirect, render

# appplatform's final instance states: nothing changes any more, the page stops polling.
FINAL_STATES = ("stopped", "failed")
STOPPABLE_STATES = ("pending", "provisioning", "starting", "ready", "degraded")
CHANNELS = ("stable", "staging", "dev")
# Replica states whose output appplatform reads from the node (its connect.LOG_STATES).
LOG_STATES = ("running", "ready", "unready", "stopping")
LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024


def apps_base(session: Session, project_id: str) -> str:
    return f"/v1/apps/tenants/{seg(session.tenant_id)}/projects/{seg(project_id)}"


def instance_href(project_id: str, instance_id: str) -> str:
    return f"/projects/{seg(project_id)}/instances/{seg(instance_id)}"


def _entry(app: dict[str, Any]) -> dict[str, Any]:
    """A catalog app as the page shows it: its newest version per channel and that
    version's manifest summary (the stable one when there is one)."""
    channels = {c["channel"]: c["versions"] for c in app.get("channels") or [] if c["versions"]}
    newest = {name: versions[0] for name, versions in channels.items()}
    shown = next((newest[c] for c in CHANNELS if c in newest), None)
    return {
        **app,
        "newest": newest,
        "channel_names": [c for c in CHANNELS if c in newest],
        "shown": shown,
        "summary": (shown or {}).get("manifest") or {},
        "launch_href": "/apps/launch?"
        + urlencode({"app": app["app"], "namespace": app["namespace"]}),
    }


async def catalog(api: Api, q: str | None = None) -> list[dict[str, Any]]:
    found = await api.get("/v1/apps/catalog", q=q or None)
    return [_entry(a) for a in found["items"]]


def resources_label(resources: dict[str, Any]) -> str:
    what = resources.get("sku") or ""
    memory = resources.get("gpu_memory_gb")
    if not what and memory:
        what = f"a GPU with {memory['min']}" + (f"-{memory['max']}" if memory.get("max") else "+")
        what += " GB"
    if resources.get("mig_profile"):
        what += f" MIG {resources['mig_profile']}"
    count = resources.get("count") or 1
    return f"{count} x {what.strip() or 'any GPU'}"


@get("/apps", name="apps_catalog")
async def apps_catalog(request: Request[Any, Any, Any], q: str | None = None) -> Response[Any]:
    user_session(request)
    apps = await catalog(api_of(request), (q or "").strip())
    return render(
        request, "apps.html", apps=apps, q=(q or "").strip(), resources_label=resources_label
    )


def _find(apps: list[dict[str, Any]], name: str, namespace: str | None) -> dict[str, Any] | None:
    for app in apps:
        if app["app"] == name and (not namespace or app["namespace"] == namespace):
            return app
    return None


async def _launch_page(
    request: Request[Any, Any, Any],
    app: dict[str, Any],
    values: dict[str, str],
    errors: FormErrors,
    status_code: int = 200,
) -> Response[Any]:
    session = user_session(request)
    projects = await projects_of(api_of(request), session)
    env_fields = [
        {"name": f"env.{e['name']}", "label": e["name"], "hint": e.get("description")}
        for e in app["summary"].get("env_required_at_launch") or []
    ]
    versions = sorted(
        {v["version"] for c in app.get("channels") or [] for v in c["versions"]}, reverse=True
    )
    return render(
        request,
        "app_launch.html",
        status_code=status_code,
        app=app,
        values=values,
        errors=errors,
        env_fields=env_fields,
        channel_choices=[(c, c) for c in app["channel_names"]],
        version_choices=[("", "newest of the channel"), *((v, v) for v in versions)],
        project_choices=[(p["id"], p["name"]) for p in projects],
        # a fresh key per drawing of the form (as the launch page: a refused request's key
        # is not used again with a corrected body)
        idempotency_key=str(uuid.uuid4()),
        resources_label=resources_label,
    )


async def _catalog_app(request: Request[Any, Any, Any], name: str, namespace: str | None):
    apps = await catalog(api_of(request), name)
    app = _find(apps, name, namespace)
    if app is None:
        raise ApiError(404, "No such app", f"{name} is not in the catalog of apps you can launch.")
    return app


@get("/apps/launch", name="app_launch_page")
async def app_launch_page(
    request: Request[Any, Any, Any], app: str = "", namespace: str | None = None
) -> Response[Any]:
    session = user_session(request)
    found = await _catalog_app(request, app, namespace)
    values = {
        "name": found["app"],
        "project_id": session.project_id or "",
        "channel": (found["channel_names"] or ["stable"])[0],
        "version": "",
        "replicas": str(found["summary"].get("replicas") or 1),
    }
    return await _launch_page(request, found, values, FormErrors())


def _body(form: dict[str, str], namespace: str) -> tuple[dict[str, Any], FormErrors]:
    body: dict[str, Any] = {"name": form.get("name", "").strip(), "namespace": namespace}
    if form.get("version"):
        body["version"] = form["version"]
    else:
        body["channel"] = form.get("channel") or "stable"
    env = {k[4:]: v for k, v in form.items() if k.startswith("env.") and v != ""}
    body["env"] = env
    raw = form.get("replicas", "").strip()
    if raw:
        if not raw.isdigit():
            return body, FormErrors.field("replicas", "a whole number from 1 to 16")
        body["replicas"] = int(raw)
    return body, FormErrors()


@post("/apps/launch", name="app_launch")
async def app_launch(request: Request[Any, Any, Any]) -> Response[Any]:
    session = user_session(request)
    raw = await request.form()
    form = await form_of(request)
    key = str(raw.get("_idempotency_key") or uuid.uuid4())
    name, namespace = form.get("app", ""), form.get("namespace") or "tenant"
    found = await _catalog_app(request, name, namespace)
    project_id = form.get("project_id", "")
    body, errors = _body(form, namespace)
    status = 400
    if not errors:
        path = f"{apps_base(session, project_id)}/apps/{seg(name)}/instances"
        try:
            created = await api_of(request).post(path, body, key=key)
        except ApiError as exc:
            if exc.status == 404 and not exc.errors:
                raise  # another tenant's project: the 404 page
            errors, status = FormErrors.of(exc), exc.status
        else:
            session.project_id = project_id
            return redirect(instance_href(project_id, created["id"]))
    return await _launch_page(request, found, form, errors, status)


def _row(instance: dict[str, Any]) -> dict[str, Any]:
    status, spec = instance["status"], instance["spec"]
    return {
        **instance,
        "state": status["state"],
        "reason": status.get("reason"),
        "ready": status.get("ready_replicas", 0),
        "desired": spec.get("replicas", 0),
        "href": instance_href(instance["project_id"], instance["id"]),
    }


@get("/instances", name="instances")
async def instances(request: Request[Any, Any, Any], project: str | None = None) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    projects = await projects_of(api, session)
    ids = [p["id"] for p in projects]
    project_id = project or (session.project_id if session.project_id in ids else None)
    project_id = project_id or (ids[0] if ids else None)
    rows: list[dict[str, Any]] = []
    after = None
    while project_id:
        page = await api.get(f"{apps_base(session, project_id)}/instances", limit=500, after=after)
        rows += [_row(i) for i in page["items"]]
        after = page.get("next_after")
        if not after:
            break
    rows.sort(key=lambda r: r["created_at"], reverse=True)
    return render(request, "instances.html", projects=projects, project_id=project_id, rows=rows)


async def _logs(api: Api, path: str) -> tuple[str | None, str | None]:
    """The first running replica's recent output (its last lines), or why there is none."""
    try:
        response = await api.request("GET", f"{path}/logs")
    except ApiError as exc:
        return None, exc.detail or exc.title
    text = response.content[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:]), None


async def _instance(
    request: Request[Any, Any, Any], project_id: str, instance_id: str, *, logs: bool
) -> dict[str, Any]:
    session = user_session(request)
    api = api_of(request)
    path = f"{apps_base(session, project_id)}/instances/{seg(instance_id)}"
    instance = await api.get(path)  # another tenant's: 404, a lower role: 403 (their pages)
    row = _row(instance)
    log_text, log_problem = (None, None)
    if (
        logs
        and row["state"] not in FINAL_STATES
        and any(r.get("state") in LOG_STATES for r in instance["status"].get("replicas") or [])
    ):
        log_text, log_problem = await _logs(api, path)
    return {
        "i": row,
        "project_id": project_id,
        "final": row["state"] in FINAL_STATES,
        "stoppable": row["state"] in STOPPABLE_STATES
        and instance["spec"].get("desired_state") != "stopped",
        "logs": log_text,
        "logs_problem": log_problem,
    }


@get("/projects/{project_id:str}/instances/{instance_id:str}", name="instance")
async def instance_page(
    request: Request[Any, Any, Any], project_id: str, instance_id: str
) -> Response[Any]:
    context = await _instance(request, project_id, instance_id, logs=True)
    return render(request, "instance.html", **context)


@get("/projects/{project_id:str}/instances/{instance_id:str}/live", name="instance_live")
async def instance_live(
    request: Request[Any, Any, Any], project_id: str, instance_id: str
) -> Response[Any]:
    """The instance's status panel, polled by htmx until the state is final."""
    context = await _instance(request, project_id, instance_id, logs=False)
    return render(request, "_instance_live.html", **context)


@post("/projects/{project_id:str}/instances/{instance_id:str}/stop", name="stop_instance")
async def stop_instance(
    request: Request[Any, Any, Any], project_id: str, instance_id: str
) -> Response[Any]:
    session = user_session(request)
    path = f"{apps_base(session, project_id)}/instances/{seg(instance_id)}/stop"
    await api_of(request).post(path)
    return redirect(instance_href(project_id, instance_id))


ROUTES = [
    apps_catalog,
    app_launch_page,
    app_launch,
    instances,
    instance_page,
    instance_live,
    stop_instance,
]
