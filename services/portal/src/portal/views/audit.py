"""The tenant's audit trail (docs/audit.md): audit's records of the signed-in user's tenant,
below the log's latest signed checkpoint, filtered by actor, action (the event type),
target and time range, a page at a time (audit's cursor: `after` = the next record's index
in the fleet log, `next_after` on a full page). Owners and admins read it; audit answers a
lower role 403, shown as the 403 page (the nav shows the link to the readers only).

Actors are shown by email where they are members of the tenant (iam's member list), and an
actor filter takes a member's email or any subject id."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get

from portal.api import Api, ApiError, seg
from portal.sessions import Session
from portal.views.common import items, ok, tenant_base, user_session
from portal.web import FormErrors, api_of, render

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 50
FILTERS = ("actor", "action", "target", "since", "until")


def _utc(raw: str) -> str:
    """A datetime-local value (no zone: read as UTC) or an ISO 8601 time, as audit's query
    parameter (ISO 8601 with its offset)."""
    moment = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _size(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and int(raw) in PAGE_SIZES else DEFAULT_PAGE_SIZE


async def _nothing() -> None:
    return None


async def _members(api: Api, session: Session) -> list[dict[str, Any]]:
    found = (await api.many(api.get(f"{tenant_base(session)}/members")))[0]
    return items(found) if ok(found) else []


def _rows(page: dict[str, Any], emails: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for item in page.get("items") or []:
        record = item.get("record") or {}
        actor = record.get("actor") or {}
        target = record.get("target") or {}
        details = dict(record.get("details") or {})
        subject = actor.get("subject") or ""
        rows.append(
            {
                "index": item.get("index"),
                "seq": details.pop("tenant_seq", None),
                "time": record.get("time"),
                "actor": subject,
                "actor_label": emails.get(subject) or subject or "-",
                "actor_kind": actor.get("kind") or "",
                "action": record.get("action") or record.get("event_type") or "",
                "target_kind": target.get("kind") or "",
                "target_id": target.get("id") or "",
                "outcome": record.get("outcome") or "",
                "client_address": record.get("client_address") or "",
                "service": record.get("service") or "",
                "details": json.dumps(details, indent=2, sort_keys=True) if details else "",
            }
        )
    return rows


def _query(values: dict[str, str], **changes: Any) -> str:
    merged = {**values, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})


@get("/audit", name="audit")
async def audit_page(
    request: Request[Any, Any, Any],
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    limit: str | None = None,
) -> Response[Any]:
    session = user_session(request)
    api = api_of(request)
    raw = {"actor": actor, "action": action, "target": target, "since": since, "until": until}
    values = {k: (v or "").strip() for k, v in raw.items()}
    size = _size(limit)
    errors = FormErrors()
    query: dict[str, Any] = {"limit": size}
    for name in ("action", "target"):
        query[name] = values[name] or None
    for name in ("since", "until"):
        if values[name]:
            try:
                query[name] = _utc(values[name])
            except ValueError:
                errors = FormErrors.field(name, "a date and time, such as 2025-01-31T18:30")
    if after and after.isdigit():
        query["after"] = int(after)
    records_path = f"/v1/audit/tenants/{seg(session.tenant_id)}/records"
    wanted = values["actor"]
    found: Any = None
    if "@" in wanted:  # a member's email: its subject id first
        members = await _members(api, session)
    else:  # the trail and the member list (for the emails) at once
        query["actor"] = wanted or None
        listed, found = await api.many(
            api.get(f"{tenant_base(session)}/members"),
            api.get(records_path, **query) if not errors else _nothing(),
        )
        members = items(listed) if ok(listed) else []
    emails = {m["principal_id"]: m["email"] for m in members if m.get("email")}
    if "@" in wanted:
        by_email = {email.lower(): subject for subject, email in emails.items()}
        if wanted.lower() not in by_email:
            errors = FormErrors.field("actor", "no member of this tenant has this email")
        elif not errors:
            query["actor"] = by_email[wanted.lower()]
            found = (await api.many(api.get(records_path, **query)))[0]
    page: dict[str, Any] = {}
    status = 400 if errors else 200
    if isinstance(found, BaseException):
        if not isinstance(found, ApiError) or found.status not in (400, 422):
            raise found  # 403 for a lower role, 404 another tenant: their pages
        errors, status = FormErrors.of(found), 400
    elif found is not None:
        page = found
    rows = _rows(page, emails)
    next_after = page.get("next_after")
    base = {**values, "limit": str(size) if size != DEFAULT_PAGE_SIZE else ""}
    return render(
        request,
        "audit.html",
        status_code=status,
        values=values,
        errors=errors,
        rows=rows,
        checkpoint=page.get("checkpoint"),
        size=size,
        sizes=[(str(n), f"{n} a page") for n in PAGE_SIZES],
        member_emails=sorted(emails.values()),
        actions=sorted({r["action"] for r in rows if r["action"]}),
        filtered=any(values.values()),
        first_href=_query(base) if after else None,
        next_href=_query(base, after=next_after) if next_after is not None else None,
        filter_href=lambda **changes: _query(base, **changes),
    )


ROUTES = [audit_page]
