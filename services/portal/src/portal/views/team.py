"""Projects, members (tenant and project), quotas, service accounts and their API keys.
Granting and revoking roles, creating service accounts and issuing keys are step-up actions
in iam: they run through `run_guarded`, so a 401 insufficient_user_authentication becomes
the confirmation prompt and the action runs again after it."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post

from portal.api import ApiError, seg
from portal.views.common import (
    form_of,
    gpu_base,
    items,
    ok,
    projects_of,
    run_guarded,
    step_up_action,
    tenant_base,
    user_session,
)
from portal.web import FormErrors, api_of, redirect, render

TENANT_ROLES = ("owner", "admin", "member", "viewer", "billing")
PROJECT_ROLES = ("admin", "member", "viewer")


@get("/projects", name="projects")
async def projects(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _projects_page(request, FormErrors(), {}, 200)


async def _projects_page(request, errors: FormErrors, values: dict[str, str], status: int):
    session = user_session(request)
    found = await projects_of(api_of(request), session)
    return render(
        request, "projects.html", status_code=status, items=found, errors=errors, values=values
    )


@post("/projects", name="create_project")
async def create_project(request: Request[Any, Any, Any]) -> Response[Any]:
    session = user_session(request)
    form = await form_of(request)
    body = {"name": form.get("name", "").strip(), "slug": form.get("slug", "").strip()}
    try:
        created = await api_of(request).post(f"{tenant_base(session)}/projects", body)
    except ApiError as exc:
        return await _projects_page(request, FormErrors.of(exc), form, exc.status)
    return redirect(f"/projects/{seg(created['id'])}")


async def _project_page(
    request: Request[Any, Any, Any],
    project_id: str,
    *,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
    form_name: str = "",
) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    base = f"{tenant_base(session)}/projects/{seg(project_id)}"
    project = await api.get(base)  # 404 for another tenant's project: the 404 page
    members, quota, accounts = await api.many(
        api.get(f"{base}/members"),
        api.get(f"{gpu_base(session, project_id)}/quota"),
        api.get(f"{base}/service-accounts"),
    )
    return render(
        request,
        "project.html",
        status_code=status,
        project=project,
        members=items(members) if ok(members) else None,
        members_error=None if ok(members) else members,
        quota=quota if ok(quota) else None,
        accounts=items(accounts) if ok(accounts) else None,
        accounts_error=None if ok(accounts) else accounts,
        roles=PROJECT_ROLES,
        errors=errors or FormErrors(),
        form_name=form_name,
        values=values or {},
    )


@get("/projects/{project_id:str}", name="project")
async def project(request: Request[Any, Any, Any], project_id: str) -> Response[Any]:
    session = user_session(request)
    session.project_id = project_id
    return await _project_page(request, project_id)


@step_up_action("grant_project_role")
async def _grant_project_role(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    project_id = form["project_id"]
    body = {"email": form.get("email", "").strip(), "role": form.get("role", "")}
    path = f"{tenant_base(session)}/projects/{seg(project_id)}/members"
    try:
        await api_of(request).post(path, body)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _project_page(
            request,
            project_id,
            errors=FormErrors.of(exc),
            values=form,
            status=exc.status,
            form_name="member",
        )
    return redirect(f"/projects/{seg(project_id)}")


@post("/projects/{project_id:str}/members", name="grant_project_role")
async def grant_project_role(request: Request[Any, Any, Any], project_id: str) -> Response[Any]:
    form = await form_of(request) | {"project_id": project_id}
    return await run_guarded(request, "grant_project_role", form)


@step_up_action("revoke_project_role")
async def _revoke_project_role(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    project_id = form["project_id"]
    path = f"{tenant_base(session)}/projects/{seg(project_id)}/members/{seg(form['membership_id'])}"
    await api_of(request).delete(path)
    return redirect(f"/projects/{seg(project_id)}")


@post("/projects/{project_id:str}/members/{membership_id:str}/revoke", name="revoke_project_role")
async def revoke_project_role(
    request: Request[Any, Any, Any], project_id: str, membership_id: str
) -> Response[Any]:
    form = {"project_id": project_id, "membership_id": membership_id}
    return await run_guarded(request, "revoke_project_role", form)


@step_up_action("create_service_account")
async def _create_service_account(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    project_id = form["project_id"]
    body = {"name": form.get("name", "").strip(), "role": form.get("role") or "member"}
    path = f"{tenant_base(session)}/projects/{seg(project_id)}/service-accounts"
    try:
        created = await api_of(request).post(path, body)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _project_page(
            request,
            project_id,
            errors=FormErrors.of(exc),
            values=form,
            status=exc.status,
            form_name="account",
        )
    return redirect(f"/projects/{seg(project_id)}/service-accounts/{seg(created['id'])}")


@post("/projects/{project_id:str}/service-accounts", name="create_service_account")
async def create_service_account(request: Request[Any, Any, Any], project_id: str) -> Response[Any]:
    form = await form_of(request) | {"project_id": project_id}
    return await run_guarded(request, "create_service_account", form)


async def _keys_page(
    request: Request[Any, Any, Any],
    project_id: str,
    account_id: str,
    *,
    issued: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    base = f"{tenant_base(session)}/projects/{seg(project_id)}"
    project, accounts, keys = await asyncio.gather(
        api.get(base),
        api.get(f"{base}/service-accounts"),
        api.get(f"{base}/service-accounts/{seg(account_id)}/keys"),
    )
    account = next((a for a in items(accounts) if a["id"] == account_id), None)
    return render(
        request,
        "service_account.html",
        status_code=status,
        project=project,
        account=account or {"id": account_id, "name": account_id},
        keys=items(keys),
        issued=issued,
        errors=errors or FormErrors(),
    )


@get("/projects/{project_id:str}/service-accounts/{account_id:str}", name="service_account")
async def service_account(
    request: Request[Any, Any, Any], project_id: str, account_id: str
) -> Response[Any]:
    return await _keys_page(request, project_id, account_id)


@step_up_action("issue_api_key")
async def _issue_api_key(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    project_id, account_id = form["project_id"], form["account_id"]
    try:
        days = int(form.get("expires_in_days") or "90")
    except ValueError:
        return await _keys_page(
            request,
            project_id,
            account_id,
            errors=FormErrors.field("expires_in_days", "a whole number of days"),
            status=400,
        )
    path = (
        f"{tenant_base(session)}/projects/{seg(project_id)}/service-accounts/{seg(account_id)}/keys"
    )
    try:
        issued = await api_of(request).post(path, {"expires_in_days": days})
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _keys_page(
            request, project_id, account_id, errors=FormErrors.of(exc), status=exc.status
        )
    # The secret is on this page once: iam stores only its digest.
    return await _keys_page(request, project_id, account_id, issued=issued, status=201)


@post("/projects/{project_id:str}/service-accounts/{account_id:str}/keys", name="issue_api_key")
async def issue_api_key(
    request: Request[Any, Any, Any], project_id: str, account_id: str
) -> Response[Any]:
    form = await form_of(request) | {"project_id": project_id, "account_id": account_id}
    return await run_guarded(request, "issue_api_key", form)


@post(
    "/projects/{project_id:str}/service-accounts/{account_id:str}/keys/{key_id:str}/revoke",
    name="revoke_api_key",
)
async def revoke_api_key(
    request: Request[Any, Any, Any], project_id: str, account_id: str, key_id: str
) -> Response[Any]:
    session = user_session(request)
    path = (
        f"{tenant_base(session)}/projects/{seg(project_id)}/service-accounts/"
        f"{seg(account_id)}/keys/{seg(key_id)}"
    )
    await api_of(request).delete(path)
    return redirect(f"/projects/{seg(project_id)}/service-accounts/{seg(account_id)}")


# Tenant members and MFA policy


async def _members_page(request, *, errors=None, values=None, status=200) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    members, policy = await asyncio.gather(
        api.get(f"{tenant_base(session)}/members"),
        api.get(f"{tenant_base(session)}/mfa-policy"),
    )
    return render(
        request,
        "members.html",
        status_code=status,
        members=items(members),
        policy=policy,
        roles=TENANT_ROLES,
        errors=errors or FormErrors(),
        values=values or {},
    )


@get("/members", name="members")
async def members(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _members_page(request)


@step_up_action("grant_tenant_role")
async def _grant_tenant_role(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    body = {"email": form.get("email", "").strip(), "role": form.get("role", "")}
    try:
        await api_of(request).post(f"{tenant_base(session)}/members", body)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _members_page(
            request, errors=FormErrors.of(exc), values=form, status=exc.status
        )
    return redirect("/members")


@post("/members", name="grant_tenant_role")
async def grant_tenant_role(request: Request[Any, Any, Any]) -> Response[Any]:
    return await run_guarded(request, "grant_tenant_role", await form_of(request))


@step_up_action("revoke_tenant_role")
async def _revoke_tenant_role(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    await api_of(request).delete(f"{tenant_base(session)}/members/{seg(form['membership_id'])}")
    return redirect("/members")


@post("/members/{membership_id:str}/revoke", name="revoke_tenant_role")
async def revoke_tenant_role(request: Request[Any, Any, Any], membership_id: str) -> Response[Any]:
    return await run_guarded(request, "revoke_tenant_role", {"membership_id": membership_id})


@step_up_action("set_mfa_policy")
async def _set_mfa_policy(request: Request[Any, Any, Any], form: dict[str, str]):
    session = user_session(request)
    wanted = form.get("require_mfa_for_admins") == "true"
    await api_of(request).put(
        f"{tenant_base(session)}/mfa-policy", {"require_mfa_for_admins": wanted}
    )
    return redirect("/members")


@post("/members/mfa-policy", name="set_mfa_policy")
async def set_mfa_policy(request: Request[Any, Any, Any]) -> Response[Any]:
    return await run_guarded(request, "set_mfa_policy", await form_of(request))


ROUTES = [
    projects,
    create_project,
    project,
    grant_project_role,
    revoke_project_role,
    create_service_account,
    service_account,
    issue_api_key,
    revoke_api_key,
    members,
    grant_tenant_role,
    revoke_tenant_role,
    set_mfa_policy,
]
