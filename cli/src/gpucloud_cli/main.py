"""The `gpucloud` command: a click group whose commands are imported only when run.

`SECTIONS` is the registry: section -> name -> ("module:attribute", one-line help). `--help`
prints it without importing any command module (nor httpx, rich or the SDK), which keeps a
cold `gpucloud --help` well under 300 ms. A later issue adds its command in one line (as
the "Access" section did for `terminal`, `ssh` and `ssh-keys`); cli/tests/unit/test_main.py
checks every entry's help against the command's own docstring.

Errors: a `GpucloudError` escaping a command is printed (its title, detail and field
errors; with --json one JSON document `{"error": {...}}` on stdout) and ends the process
with its problem class's exit code (gpucloud_cli.exit_codes, docs/cli.md).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gpucloud_cli import __version__

# section -> command name -> ("module:attribute" under gpucloud_cli.commands, one-line help)
SECTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "Session": {
        "login": ("session:login", "Sign in (password + TOTP, or an API key)."),
        "logout": ("session:logout", "Sign out: forget the current context's session."),
        "whoami": ("session:whoami", "Show who you are signed in as, and where."),
        "use": ("session:use", "Choose the tenant/project commands act in; list contexts."),
    },
    "GPU": {
        "skus": ("gpus:skus", "List GPU SKUs and MIG profiles with what is free."),
        "launch": ("gpus:launch", "Launch GPUs or MIG slices: plan, price, confirm."),
        "ps": ("gpus:ps", "List the project's allocations."),
        "get": ("gpus:get", "Show one allocation."),
        "release": ("gpus:release", "Release one allocation."),
        "down": ("gpus:down", "Release every live allocation of the project."),
    },
    "Billing": {
        "balance": ("billing:balance", "Show the tenant's balance and standing."),
        "usage": ("billing:usage", "Show usage per project and price key."),
        "top-up": ("billing:top_up", "Add credit through the payment provider."),
        "statement": ("billing:statement", "Show the monthly statement (YYYY-MM)."),
    },
    "Key": {
        "keys": ("keys:keys", "API keys of the project's service accounts."),
        "service-accounts": ("keys:service_accounts", "The project's service accounts."),
    },
    "Access": {
        "terminal": (
            "access:terminal",
            "Open a terminal on a running allocation, in this terminal.",
        ),
        "ssh": (
            "access:ssh",
            "SSH into a running allocation, or write ssh_config entries for it.",
        ),
        "ssh-keys": (
            "access:ssh_keys",
            "Your SSH public keys, which `gpucloud ssh` signs in with.",
        ),
    },
    "App": {
        "app": ("apps:app", "Apps: init, validate, publish, promote; launch, ps, get, open, stop."),
        "bundle": (
            "bundle:bundle",
            "Runtime bundles: build, sign, verify here; push and promote through registry.",
        ),
    },
    "Audit": {
        "audit": (
            "audit:audit",
            "Verify the tenant's audit trail against checkpoints pinned here.",
        ),
    },
    "Shell": {
        "completion": ("shell:completion", "Print the shell completion script (bash, zsh, fish)."),
    },
}
COMMANDS: dict[str, tuple[str, str]] = {
    name: entry for commands in SECTIONS.values() for name, entry in commands.items()
}


class LazyGroup(click.Group):
    """A group whose commands come from `COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = entry[0].partition(":")
        command = getattr(importlib.import_module(f"gpucloud_cli.commands.{module}"), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a registry typo
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for section, commands in SECTIONS.items():
            with formatter.section(f"{section} commands"):
                formatter.write_dl([(name, entry[1]) for name, entry in commands.items()])


class RootGroup(LazyGroup):
    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        arguments = list(sys.argv[1:] if args is None else args)
        options = arguments[: arguments.index("--")] if "--" in arguments else arguments
        as_json = "--json" in options  # every command has the flag; errors honour it too
        try:
            result = super().main(
                args=arguments,
                prog_name=prog_name or "gpucloud",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            code = _usage_error(exc, as_json)
        except click.exceptions.Abort:
            code = _report(_aborted(), as_json)
        except KeyboardInterrupt:
            click.echo("", err=True)
            code = 130
        except Exception as exc:
            from gpucloud_cli.sdk.errors import GpucloudError

            if not isinstance(exc, GpucloudError):
                raise
            code = _report(exc, as_json)
        if standalone_mode:
            sys.exit(code)
        return code


def _aborted() -> Any:
    from gpucloud_cli.sdk.errors import GpucloudError

    return GpucloudError("nothing was changed", title="Aborted")


def _report(error: Any, as_json: bool) -> int:
    from gpucloud_cli.output import render_error

    render_error(error, as_json)
    return int(error.exit_code)


def _usage_error(exc: click.ClickException, as_json: bool) -> int:
    if as_json:
        from gpucloud_cli.output import emit_json

        emit_json(
            {
                "error": {
                    "class": "usage",
                    "exit_code": exc.exit_code,
                    "title": "Usage error",
                    "detail": exc.format_message(),
                }
            }
        )
    else:
        exc.show()
    return exc.exit_code


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--gateway",
    envvar="GPUCLOUD_GATEWAY",
    metavar="URL",
    help="The gateway to sign in at [env GPUCLOUD_GATEWAY; default: the context's, "
    "else http://127.0.0.1:8080]. Other commands refuse a context of another gateway.",
)
@click.option(
    "--context",
    "context_name",
    envvar="GPUCLOUD_CONTEXT",
    metavar="NAME",
    help="Act in this context instead of the current one [env GPUCLOUD_CONTEXT].",
)
@click.version_option(__version__, "--version", prog_name="gpucloud")
@click.pass_context
def cli(ctx: click.Context, gateway: str | None, context_name: str | None) -> None:
    """gpucloud: GPUs and MIG slices on demand, from your terminal.

    Sign in with `gpucloud login`, pick a project with `gpucloud use TENANT/PROJECT`, then
    `gpucloud launch --sku h100-80gb --mig 1g.10gb --wait`. Every command takes --json
    (one JSON document on stdout, schemas in docs/cli.md). Config lives in
    $GPUCLOUD_CONFIG_DIR (default ~/.config/gpucloud).
    """
    from gpucloud_cli.app import App

    ctx.obj = App(gateway_option=gateway, context_option=context_name)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    """The `gpucloud` script and `python -m gpucloud_cli`."""
    cli.main()
