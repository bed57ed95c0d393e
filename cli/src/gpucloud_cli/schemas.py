"""The JSON Schema of every `--json` document the CLI prints: the stable contract scripts
rely on. Built from the SDK models (gpucloud_cli.sdk.models) plus the CLI's own envelopes
below; written to gpucloud_cli/gpucloud-cli.schema.json (in the package) by

    uv run python -m gpucloud_cli.schemas --write

and checked against it by cli/tests/unit/test_schemas.py (drift fails the tests), and the
e2e tests validate what the commands really print against it. Compatible changes only:
a field may be added (documents allow unknown members); none is removed or retyped without
a major version of the CLI.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gpucloud_cli.sdk import models as m

SCHEMA_FILE = Path(__file__).with_name("gpucloud-cli.schema.json")  # shipped in the wheel
SCHEMA_ID = "https://gpucloud.dev/schemas/gpucloud-cli.schema.json"
MODELS: tuple[type[m.Model], ...] = (
    m.Me, m.Tenant, m.Project, m.ServiceAccount, m.ApiKey, m.Profile, m.Sku, m.Instance,
    m.LaunchedBundle,
    m.Allocation, m.Price, m.Grant, m.Balance, m.ProjectUsage, m.UsageReport, m.Payment,
    m.StatementLine, m.Statement, m.SshKey, m.TerminalSession, m.SshEndpoint,
)  # fmt: skip

STRING: dict[str, Any] = {"type": "string"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def obj(properties: dict[str, Any], *, closed: bool = False) -> dict[str, Any]:
    """An object with every property required (the CLI always prints every member, null
    when there is nothing)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"unsupported union {hint}")
        inner = _type_schema(members[0])
        if "$ref" in inner:
            return {"anyOf": [inner, {"type": "null"}]}
        return {**inner, "type": [inner["type"], "null"]}
    if origin is list:
        (item,) = typing.get_args(hint)
        return array(_type_schema(item))
    if origin is dict:
        key, value = typing.get_args(hint)
        if key is not str:
            raise TypeError(f"unsupported mapping {hint}")
        return {"type": "object", "additionalProperties": _type_schema(value)}
    if isinstance(hint, type) and issubclass(hint, m.Model):
        return ref(hint.__name__)
    simple = {str: STRING, int: INTEGER, bool: BOOLEAN, float: {"type": "number"}}
    if hint in simple:
        return dict(simple[hint])
    raise TypeError(f"unsupported type {hint!r}")


def model_schema(cls: type[m.Model]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {name: _type_schema(hints[name]) for name in cls.FIELDS}
    schema = obj(properties)
    if cls.__doc__ and cls.__doc__ is not m.Model.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


# the CLI's own objects

CONTEXT = obj(
    {
        "name": STRING,
        "current": BOOLEAN,
        "gateway": STRING,
        "tenant_id": STRING,
        "tenant_slug": STRING,
        "project_id": NULLABLE_STRING,
        "project_slug": NULLABLE_STRING,
    }
)
SESSION = obj(
    {
        "kind": {"enum": ["user", "service_account"]},
        "subject": STRING,
        "email": NULLABLE_STRING,
        "tenant_id": STRING,
        "tenant_slug": STRING,
        "amr": array(STRING),
        "access_expires_at": STRING,
        "renews_with": {"enum": ["refresh_token", "api_key"]},
    }
)
QUOTE = obj(
    {
        "price_key": STRING,
        "currency": STRING,
        "micros_per_gpu_hour": INTEGER,
        "count": INTEGER,
        "tenant_override": BOOLEAN,
        "hourly_micros": INTEGER,
    }
)
PLAN = obj(
    {
        "context": STRING,
        "tenant_id": STRING,
        "project_id": STRING,
        "sku": STRING,
        "mig_profile": NULLABLE_STRING,
        "count": INTEGER,
        "idle_stop_after_s": {"type": ["integer", "null"]},
        "price_key": STRING,
        "available": INTEGER,
        "price": {"anyOf": [ref("Quote"), {"type": "null"}]},
    }
)
HISTORY_ENTRY = obj({"state": STRING, "reason": NULLABLE_STRING, "seconds": {"type": "number"}})
FIELD_ERROR = obj({"field": STRING, "message": STRING})
ERROR = {
    **obj(
        {
            "class": {
                "enum": [
                    "error", "usage", "auth", "not_found", "validation", "conflict",
                    "payment_required", "server", "network", "unfinished", "throttled",
                    "unverified",
                ]
            },
            "exit_code": INTEGER,
            "title": STRING,
            "detail": NULLABLE_STRING,
        }
    ),
    "description": "Every failure. API problems add status, type, errors (the fields they "
    "name), trace_id; usage errors only class, exit_code, title, detail; `unfinished` adds "
    "the members of the command's own document (e.g. launch's plan, allocation, history).",
}  # fmt: skip
TENANT_SCOPE = {"context": STRING, "tenant_id": STRING}
PROJECT_SCOPE = {**TENANT_SCOPE, "project_id": STRING}

# command -> its document on success (`error`: the document of every failure)
DOCUMENTS: dict[str, dict[str, Any]] = {
    "login": obj(
        {"context": ref("Context"), "session": ref("Session"), "projects": array(ref("Project"))}
    ),
    "logout": obj(
        {
            "signed_out": array(ref("Session")),
            "contexts_removed": array(STRING),
            "revoked_at_iam": BOOLEAN,
            "note": STRING,
        }
    ),
    "whoami": obj({"context": ref("Context"), "session": ref("Session"), "me": ref("Me")}),
    "use": obj({"context": ref("Context")}),
    "use (no argument)": obj({"current": NULLABLE_STRING, "contexts": array(ref("Context"))}),
    "skus": obj({"skus": array(ref("Sku"))}),
    "launch": obj(
        {
            "plan": ref("Plan"),
            "idempotency_key": STRING,
            "waited": BOOLEAN,
            "allocation": ref("Allocation"),
            "history": array(ref("HistoryEntry")),
        }
    ),
    "ps": obj({**PROJECT_SCOPE, "all": BOOLEAN, "allocations": array(ref("Allocation"))}),
    "get": obj({**PROJECT_SCOPE, "allocation": ref("Allocation")}),
    "release": obj(
        {
            **PROJECT_SCOPE,
            "waited": BOOLEAN,
            "allocation": ref("Allocation"),
            "history": array(ref("HistoryEntry")),
        }
    ),
    "down": obj(
        {
            **PROJECT_SCOPE,
            "released": array(ref("Allocation")),
            "failed": array(obj({"id": STRING, "error": ref("Error")})),
        }
    ),
    "balance": obj({**TENANT_SCOPE, "balance": ref("Balance")}),
    "usage": obj({**TENANT_SCOPE, "usage": ref("UsageReport")}),
    "top-up": obj(
        {
            **TENANT_SCOPE,
            "idempotency_key": STRING,
            "payment": ref("Payment"),
            "balance": {"anyOf": [ref("Balance"), {"type": "null"}]},
        }
    ),
    "statement": obj({**TENANT_SCOPE, "statement": ref("Statement")}),
    "keys list": obj({**PROJECT_SCOPE, "keys": array(ref("ApiKey"))}),
    "keys create": obj(
        {
            **PROJECT_SCOPE,
            "service_account": ref("ServiceAccount"),
            "key": ref("ApiKey"),
            "api_key": {**STRING, "description": "The secret, shown this once."},
        }
    ),
    "keys revoke": obj(
        {**PROJECT_SCOPE, "revoked": obj({"id": STRING, "service_account_id": STRING})}
    ),
    "service-accounts list": obj(
        {**PROJECT_SCOPE, "service_accounts": array(ref("ServiceAccount"))}
    ),
    "service-accounts create": obj(
        {**PROJECT_SCOPE, "service_account": ref("ServiceAccount"), "role": STRING}
    ),
    "terminal": obj(
        {
            **PROJECT_SCOPE,
            "allocation_id": STRING,
            "session": ref("TerminalSession"),
            "exit_code": {
                "type": ["integer", "null"],
                "description": "The shell's exit status (null: it did not exit: closed, "
                "taken over)",
            },
            "reason": NULLABLE_STRING,
            "message": NULLABLE_STRING,
            "attachments": {**INTEGER, "description": "How often it attached (1 + reattaches)"},
        }
    ),
    "ssh": obj(
        {
            **PROJECT_SCOPE,
            "allocation_id": STRING,
            "endpoint": ref("SshEndpoint"),
            "known_hosts_file": STRING,
            "argv": {**array(STRING), "description": "The ssh command it would run"},
        }
    ),
    "ssh --config": obj(
        {
            **PROJECT_SCOPE,
            "config_file": STRING,
            "known_hosts_file": STRING,
            "include": {**STRING, "description": "The line to put at the top of ~/.ssh/config"},
            "endpoint": ref("SshEndpoint"),
            "hosts": array(
                obj(
                    {
                        "alias": STRING,
                        "allocation_id": STRING,
                        "host": STRING,
                        "port": INTEGER,
                        "user": STRING,
                    }
                )
            ),
        }
    ),
    "ssh-keys list": obj({"context": STRING, "keys": array(ref("SshKey"))}),
    "ssh-keys add": obj({"context": STRING, "key": ref("SshKey")}),
    "ssh-keys revoke": obj({"context": STRING, "revoked": obj({"id": STRING})}),
    "audit verify": obj(
        {
            "context": STRING,
            "tenant_id": STRING,
            "origin": STRING,
            "pinned_before": {"type": ["integer", "null"]},
            "checkpoint": obj({"size": INTEGER, "root": STRING, "time": NULLABLE_STRING}),
            "records": INTEGER,
            "checked": INTEGER,
            "last_tenant_seq": {"type": ["integer", "null"]},
            "witness": {
                "oneOf": [
                    {"type": "null"},
                    obj({"service": STRING, "size": INTEGER, "agrees": BOOLEAN}),
                ]
            },
            "verified": BOOLEAN,
            "finding": {"type": "null"},
        }
    ),
    "app init": obj({"manifest": STRING, "files": array(STRING)}),
    "app validate": obj(
        {
            "manifest": STRING,
            "valid": BOOLEAN,
            "name": STRING,
            "version": STRING,
            "required_env": array(STRING),
        }
    ),
    "app key create": obj(
        {
            "key_file": {**STRING, "description": "The private key, mode 0600"},
            "key_id": STRING,
            "key": {"type": "object", "description": "registry's trusted key (KeyChanged)"},
        }
    ),
    "app publish": obj(
        {
            "app": STRING,
            "version": STRING,
            "digest": {**STRING, "description": "The bundle's manifest digest"},
            "app_created": BOOLEAN,
            "blobs_uploaded": INTEGER,
            "signed": BOOLEAN,
            "release": {"type": "object", "description": "registry's release document"},
        }
    ),
    "bundle build": obj(
        {
            "layout": {**STRING, "description": "The OCI image layout written"},
            "app": STRING,
            "version": STRING,
            "digest": {**STRING, "description": "The bundle's manifest digest"},
            "blobs": INTEGER,
            "size": {**INTEGER, "description": "Bytes of every blob the manifest names"},
            "signatures": {**INTEGER, "description": "Signatures of this digest kept"},
        }
    ),
    "bundle sign": obj(
        {"layout": STRING, "digest": STRING, "key_id": STRING, "signatures": INTEGER}
    ),
    "bundle verify": obj(
        {
            "layout": STRING,
            "app": STRING,
            "version": STRING,
            "digest": STRING,
            "verified": BOOLEAN,
            "signer_key_ids": array(STRING),
        }
    ),
    "bundle push": obj(
        {
            "app": STRING,
            "version": STRING,
            "digest": STRING,
            "app_created": BOOLEAN,
            "blobs_uploaded": INTEGER,
            "signatures_attached": INTEGER,
            "release": {"type": "object", "description": "registry's release document"},
        }
    ),
    "bundle promote": obj(
        {
            "app": STRING,
            "version": STRING,
            "channel": {"enum": ["dev", "staging", "stable"]},
            "release": {"type": "object", "description": "registry's release document"},
        }
    ),
    "app promote": obj(
        {
            "app": STRING,
            "version": STRING,
            "channel": {"enum": ["dev", "staging", "stable"]},
            "release": {"type": "object", "description": "registry's release document"},
        }
    ),
    "app launch": obj(
        {
            "instance": {"type": "object", "description": "appplatform's instance (InstanceOut)"},
            "waited": BOOLEAN,
        }
    ),
    "app ps": obj({"instances": array({"type": "object"})}),
    "app get": obj({"instance": {"type": "object"}}),
    "app stop": obj({"instance": {"type": "object"}}),
    "app open": obj({"instance_id": STRING, "url": STRING}),
    "app logs": obj({"instance_id": STRING, "replica": NULLABLE_STRING, "logs": STRING}),
    "completion": obj({"shell": {"enum": ["bash", "zsh", "fish"]}, "script": STRING}),
    "error": obj({"error": ref("Error")}),
}


def schema() -> dict[str, Any]:
    """One JSON Schema (2020-12): `$defs` holds every object, `$defs/documents/<command>`
    each command's document (e.g. `#/$defs/documents/ps`)."""
    defs: dict[str, Any] = {cls.__name__: model_schema(cls) for cls in MODELS}
    defs |= {
        "Context": CONTEXT,
        "Session": SESSION,
        "Quote": QUOTE,
        "Plan": PLAN,
        "HistoryEntry": HISTORY_ENTRY,
        "FieldError": FIELD_ERROR,
        "Error": ERROR,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "gpucloud --json documents",
        "description": "What `gpucloud <command> --json` prints: exactly one of "
        "$defs/documents/<command> on success, $defs/documents/error on failure.",
        "$defs": {**dict(sorted(defs.items())), "documents": DOCUMENTS},
    }


def document_schema(command: str) -> dict[str, Any]:
    """The schema of one command's document (`ps`, `keys list`, `error`) on its own."""
    if command not in DOCUMENTS:
        raise KeyError(command)
    return {**schema(), "$ref": f"#/$defs/documents/{quote(command)}"}


def rendered() -> str:
    return json.dumps(schema(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        SCHEMA_FILE.write_text(rendered())
        print(f"wrote {SCHEMA_FILE}")
        return 0
    sys.stdout.write(rendered())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
