"""The console's navigation, in one place. A later phase adds its page here (apps catalog
and instances: issue 14; SSH keys) and the layout picks it up; the terminal lives on the
allocation page. A link may name the tenant roles it is shown to (the audit trail: owners
and admins); the API still decides, and a lower role that types the address gets its 403."""

from __future__ import annotations

from dataclasses import dataclass

from portal.sessions import Session


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    section: str  # the first path segment it owns, for aria-current
    roles: tuple[str, ...] = ()  # tenant roles it is shown to (none: everyone signed in)


# Who may read the tenant's audit trail (audit's READER_ROLES): the link is theirs only.
AUDIT_READERS = ("owner", "admin")

USER_NAV = (
    Link("Dashboard", "/", ""),
    Link("Launch", "/launch", "launch"),
    Link("Allocations", "/allocations", "allocations"),
    Link("Billing", "/billing", "billing"),
    Link("Projects", "/projects", "projects"),
    Link("Members", "/members", "members"),
    Link("Audit", "/audit", "audit", roles=AUDIT_READERS),
    Link("Account", "/account", "account"),
)

OPERATOR_NAV = (
    Link("Fleet", "/operator/fleet", "operator/fleet"),
    Link("Tenants", "/operator/tenants", "operator/tenants"),
    Link("Prices", "/operator/prices", "operator/prices"),
)

# A token restricted to MFA enrollment (the tenant's policy) reaches only the account page.
ENROLLMENT_NAV = (Link("Account", "/account", "account"),)


def nav_for(session: Session) -> tuple[Link, ...]:
    if not session.signed_in:
        return ()
    if session.operator:
        return OPERATOR_NAV
    if session.restricted:
        return ENROLLMENT_NAV
    held = set(session.roles)
    return tuple(link for link in USER_NAV if not link.roles or held.intersection(link.roles))


def current(link: Link, path: str) -> bool:
    trimmed = path.strip("/")
    if not link.section:
        return trimmed == ""
    return trimmed == link.section or trimmed.startswith(link.section + "/")
