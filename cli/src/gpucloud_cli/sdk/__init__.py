"""The gpucloud Python SDK: `Client` (typed calls to the public API through the gateway),
its models (`gpucloud_cli.sdk.models`) and typed errors (`gpucloud_cli.sdk.errors`).

Names are resolved on first use, so importing the package costs nothing until a client
is made (the CLI's `--help` imports neither httpx nor the models)."""

from typing import Any

_EXPORTS = {
    "Client": "gpucloud_cli.sdk.client",
    "StaticToken": "gpucloud_cli.sdk.credentials",
    "StoredSession": "gpucloud_cli.sdk.credentials",
    "ApiError": "gpucloud_cli.sdk.errors",
    "AuthError": "gpucloud_cli.sdk.errors",
    "Conflict": "gpucloud_cli.sdk.errors",
    "GpucloudError": "gpucloud_cli.sdk.errors",
    "MfaRequired": "gpucloud_cli.sdk.errors",
    "NetworkError": "gpucloud_cli.sdk.errors",
    "NotFound": "gpucloud_cli.sdk.errors",
    "NotSignedIn": "gpucloud_cli.sdk.errors",
    "PaymentRequired": "gpucloud_cli.sdk.errors",
    "ServerError": "gpucloud_cli.sdk.errors",
    "SessionExpired": "gpucloud_cli.sdk.errors",
    "StepUpRequired": "gpucloud_cli.sdk.errors",
    "Throttled": "gpucloud_cli.sdk.errors",
    "ValidationFailed": "gpucloud_cli.sdk.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpucloud_cli.sdk' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
