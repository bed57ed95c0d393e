"""portal: the web console. Server-rendered pages (litestar + Jinja + htmx) that reach the
fleet only through the gateway's public API with the signed-in user's token; it owns no
business data and no database (docs/portal.md)."""

__version__ = "0.1.0"
