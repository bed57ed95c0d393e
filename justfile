# gpucloud: the GPU cloud control plane. `just --list` shows every target.
set shell := ["bash", "-euo", "pipefail", "-c"]

export UV_FROZEN := "1"

# Start the whole platform locally (Kafka, PostgreSQL, every service, the gateway) with a demo tenant
up *ARGS:
    uv sync --quiet
    uv run --quiet devstack up {{ARGS}}

# Stop every process the local stack started (state is kept under .state/)
down:
    uv run --quiet devstack down

# Show what runs and whether it is healthy
status:
    uv run --quiet devstack status

# The mail the local SMTP sink received (verification and invitation links): just mail --to a@b.c
mail *ARGS:
    uv run --quiet devstack mail {{ARGS}}

# Follow one process's log: just logs iam
logs SERVICE:
    uv run --quiet devstack logs {{SERVICE}}

# Lint, contract drift checks, then the whole test suite on real Kafka and PostgreSQL
test *ARGS: lint deploy-check
    uv run --quiet pytest {{ARGS}}

# Regenerate payload types from contracts/asyncapi and the committed OpenAPI documents
contracts:
    uv run --quiet python tools/contracts/generate.py
    uv run --quiet python tools/contracts/app_manifest_schema.py

# ruff, import layering, AsyncAPI validation, drift of every generated contract, the portal's vendored assets
lint:
    uv sync --quiet
    uv run --quiet ruff check .
    uv run --quiet lint-imports
    uv run --quiet python tools/contracts/generate.py --check
    uv run --quiet python tools/contracts/app_manifest_schema.py --check
    uv run --quiet python -m portal.vendor check

# Chaos run on an isolated stack (own home, ports + 1000): just chaos --seed 1 --cycles 100
chaos *ARGS:
    uv sync --quiet
    uv run --quiet python -m chaos {{ARGS}}

# Benchmarks: just bench outbox
bench *ARGS:
    uv run --quiet python -m bench {{ARGS}}

# Helm lint, template and schema validation of the chart; compose.yaml check
deploy-check:
    bash deploy/check.sh
