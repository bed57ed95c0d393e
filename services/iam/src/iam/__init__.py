"""iam: tenants, projects, users, memberships, service accounts, MFA, signing keys."""

SERVICE = "iam"
__version__ = "0.1.0"
