"""completion: click's shell completion scripts for bash, zsh and fish."""

from __future__ import annotations

import click

from gpucloud_cli.app import json_option
from gpucloud_cli.output import emit_json

COMPLETE_VAR = "_GPUCLOUD_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@json_option
def completion(shell: str, as_json: bool) -> None:
    """Print the shell completion script (bash, zsh, fish).

    \b
    bash:  eval "$(gpucloud completion bash)"      (in ~/.bashrc; bash 4.4+)
    zsh:   eval "$(gpucloud completion zsh)"       (in ~/.zshrc)
    fish:  gpucloud completion fish > ~/.config/fish/completions/gpucloud.fish
    """
    from click.shell_completion import get_completion_class

    from gpucloud_cli.main import cli

    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    script = completer(cli, {}, "gpucloud", COMPLETE_VAR).source()
    if as_json:
        emit_json({"shell": shell, "script": script})
        return
    click.echo(script)
