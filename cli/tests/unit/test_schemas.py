"""The --json documents' schema: committed, complete, and what the code prints."""

import time

import click
import jsonschema_rs
import pytest

from gpucloud_cli import schemas
from gpucloud_cli.commands.session import context_json, session_json
from gpucloud_cli.config import Context, Session
from gpucloud_cli.main import COMMANDS, cli
from gpucloud_cli.sdk.errors import InvalidInput, Unfinished, from_answer


def _valid(command: str, document: dict) -> None:
    validator = jsonschema_rs.validator_for(schemas.document_schema(command))
    errors = [str(e) for e in validator.iter_errors(document)]
    assert not errors, errors


def test_the_committed_schema_is_the_generated_one() -> None:
    """Regenerate with `uv run python -m gpucloud_cli.schemas --write`."""
    assert schemas.SCHEMA_FILE.read_text() == schemas.rendered()


def test_it_is_a_valid_json_schema() -> None:
    jsonschema_rs.validator_for(schemas.schema())
    for command in schemas.DOCUMENTS:
        jsonschema_rs.validator_for(schemas.document_schema(command))


def _leaves(group: click.Group, ctx: click.Context, prefix: str) -> set[str]:
    names = set()
    for sub in group.list_commands(ctx):
        command = group.get_command(ctx, sub)
        if isinstance(command, click.Group):  # e.g. `app key create`
            names |= _leaves(command, ctx, f"{prefix} {sub}")
        else:
            names.add(f"{prefix} {sub}")
    return names


def _leaf_commands() -> set[str]:
    ctx = click.Context(cli)
    names = set()
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            names |= _leaves(command, ctx, name)
        else:
            names.add(name)
    return names


def test_every_command_has_a_document() -> None:
    extra = {"use (no argument)", "ssh --config", "error"}  # variants of a command
    assert _leaf_commands() == set(schemas.DOCUMENTS) - extra


def test_errors_of_every_kind_fit_the_error_document() -> None:
    problem = from_answer(
        400,
        {},
        b'{"type":"x/validation","title":"t","status":400,"errors":[{"field":"sku",'
        b'"message":"m"}]}',
    )
    for error in (problem, InvalidInput("sku", "m"), Unfinished("x", document={"a": 1})):
        _valid("error", {"error": error.to_json()})


def test_the_context_and_session_objects_fit() -> None:
    session = Session(
        "k",
        "http://127.0.0.1:8080",
        "user",
        "u1",
        "t1",
        "acme",
        "at",
        time.time(),
        "gcr",
        None,
        "o@acme.test",
        ["pwd", "otp"],
    )
    context = Context("acme/default", session.gateway, "k", "t1", "acme", "p1", "default")
    _valid(
        "whoami",
        {
            "context": context_json(context, "acme/default"),
            "session": session_json(session),
            "me": {
                "subject": "u1",
                "kind": "user",
                "tenant_id": "t1",
                "roles": ["owner"],
                "project_roles": {},
                "amr": ["pwd", "otp"],
            },
        },
    )
    with pytest.raises(AssertionError):
        _valid("whoami", {"context": context_json(context, None)})
