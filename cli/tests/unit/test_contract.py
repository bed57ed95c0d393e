"""The SDK's models against the committed OpenAPI documents (contracts/openapi/, generated
from the services' routes): every field the SDK reads exists there with the same JSON type
and nullability, and a field the SDK requires is one the API always sends."""

import json
import typing
from pathlib import Path

import pytest

from gpucloud_cli import schemas
from gpucloud_cli.sdk import models as m

OPENAPI = Path(__file__).resolve().parents[3] / "contracts" / "openapi"
MIRRORED = [cls for cls in schemas.MODELS if cls.API_SCHEMA] + [
    m.Token,
    m.IssuedApiKey,
    m.TerminalConnect,
]


def _component(document: str, name: str) -> dict:
    return json.loads((OPENAPI / f"{document}.json").read_text())["components"]["schemas"][name]


def _shape(schema: dict) -> tuple[frozenset[str], bool]:
    """(JSON types, nullable) of an OpenAPI property; a $ref counts as an object."""
    options = schema.get("oneOf") or schema.get("anyOf") or [schema]
    types, nullable = set(), False
    for option in options:
        kind = "object" if "$ref" in option else option.get("type")
        if kind == "null":
            nullable = True
        elif isinstance(kind, list):
            nullable |= "null" in kind
            types |= {k for k in kind if k != "null"}
        elif kind is None and "enum" in option:
            types.add("string")
        else:
            types.add(kind)
    return frozenset(types), nullable


def _model_shape(hint: typing.Any) -> tuple[frozenset[str], bool]:
    rendered = schemas._type_schema(hint)
    if "anyOf" in rendered:
        return frozenset({"object"}), True
    if "$ref" in rendered:
        return frozenset({"object"}), False
    kind = rendered["type"]
    kinds = kind if isinstance(kind, list) else [kind]
    return frozenset(k for k in kinds if k != "null"), "null" in kinds


@pytest.mark.parametrize("model", MIRRORED, ids=lambda cls: cls.__name__)
def test_model_mirrors_its_api_schema(model: type[m.Model]) -> None:
    document, name = model.API_SCHEMA
    component = _component(document, name)
    properties, required = component["properties"], set(component.get("required", []))
    hints = typing.get_type_hints(model)
    for field in model.FIELDS:
        assert field in properties, f"{name} has no {field!r}"
        assert _model_shape(hints[field]) == _shape(properties[field]), field
        if field in model.REQUIRED:
            assert field in required, f"{name}.{field} is optional in the API"


def test_every_model_but_the_statement_mirrors_an_api_schema() -> None:
    """billing documents its statement route as returning anything (`schema: {}`), so
    Statement and StatementLine follow billing/app/statements.py instead."""
    unmirrored = {cls.__name__ for cls in schemas.MODELS if not cls.API_SCHEMA}
    assert unmirrored == {"Statement", "StatementLine"}


@pytest.mark.parametrize("model", MIRRORED, ids=lambda cls: cls.__name__)
def test_model_carries_every_field_its_api_schema_sends(model: type[m.Model]) -> None:
    """`-o json` prints what the API answered: a field the API gained and the SDK lacks
    would vanish from the CLI's output (the e2e test compares both)."""
    document, name = model.API_SCHEMA
    properties = _component(document, name)["properties"]
    assert set(properties) - set(model.FIELDS) == set(), f"the SDK's {model.__name__} lacks them"
