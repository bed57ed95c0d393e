"""iam: tenants, projects, users, memberships, service accounts, MFA, signing keys."""

__version__ = "0.1.0"
