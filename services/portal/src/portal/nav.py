"""The console's navigation, in one place. A later phase adds its page here (SSH keys) and
the layout picks it up; the terminal lives on the allocation page. A link may name the
tenant roles it is shown to (the audit trail: owners and admins; apps and instances: who
may read workloads, a role in any project included); the API still decides, and a lower
role that types the address gets its 403."""

from __future__ import annotations

from dataclasses import dataclass

from portal.sessions import Session


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    section: str  # the first path segment it owns, for aria-current
    roles: tuple[str, ...] = ()  # tenant roles it is shown to (none: everyone signed in)
    any_project_role: bool = False  # also shown to whoever holds a role in some project


# Who may read the tenant's audit trail (audit's READER_ROLES): the link is theirs only.
AUDIT_READERS = ("owner", "admin")
# Who may read workloads (`workload.read`: tenant owner, admin, member, viewer; any project
# role): the Apps and Instances links are theirs (a billing-only member's are not).
WORKLOAD_READERS = ("owner", "admin", "member", "viewer")

USER_NAV = (
    Link("Dashboard", "/", ""),
    Link("Launch", "/launch", "launch"),
    Link("Allocations", "/allocations", "allocations"),
    Link("Apps", "/apps", "apps", roles=WORKLOAD_READERS, any_project_role=True),
    Link("Instances", "/instances", "instances", roles=WORKLOAD_READERS, any_project_role=True),
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
    in_a_project = any(session.project_roles.values())
    return tuple(
        link
        for link in USER_NAV
        if not link.roles
        or held.intersection(link.roles)
        or (link.any_project_role and in_a_project)
    )


def current(link: Link, path: str) -> bool:
    trimmed = path.strip("/")
    if not link.section:
        return trimmed == ""
    return trimmed == link.section or trimmed.startswith(link.section + "/")
