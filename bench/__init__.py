"""Benchmarks of the platform's building blocks on real Kafka and PostgreSQL.

Run from the repository root: `just bench outbox` (or `uv run python -m bench outbox`).
See bench/README.md for what each benchmark measures and how to read its figures.
"""
