"""The command registry, lazy imports, errors as exit codes and JSON, completion."""

import inspect
import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from gpucloud_cli.main import COMMANDS, cli


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.setenv("GPUCLOUD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GPUCLOUD_GATEWAY", raising=False)
    monkeypatch.delenv("GPUCLOUD_CONTEXT", raising=False)
    return CliRunner()


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    found = []
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        found.append((name, command))
        if isinstance(command, click.Group):
            found += [
                (f"{name} {s}", command.get_command(ctx, s)) for s in command.list_commands(ctx)
            ]
    return found


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_registry_help_is_the_commands_own(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert " ".join(first_paragraph.split()) == COMMANDS[name][1]


def test_every_command_takes_json() -> None:
    for name, command in _commands():
        if not isinstance(command, click.Group):
            assert "--json" in {o for p in command.params for o in p.opts}, name


def _imported_after(code: str, env: dict[str, str]) -> set[str]:
    script = f"import sys\n{code}\nprint(repr(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    return set(eval(done.stderr.strip().splitlines()[-1]))  # noqa: S307 - our own repr


def test_help_imports_no_command_no_sdk_no_httpx_no_rich(tmp_path) -> None:
    """What keeps `gpucloud --help` fast (just bench cli measures it)."""
    modules = _imported_after(
        "from gpucloud_cli.main import cli\ncli.main(['--help'], standalone_mode=False)",
        {"GPUCLOUD_CONFIG_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert "click" in modules
    heavy = {"httpx", "rich", "gpucloud_cli.sdk.client", "gpucloud_cli.commands.gpus", "msgspec"}
    assert not heavy & modules


def test_json_errors_do_not_load_rich_and_httpx_skips_its_own_cli(tmp_path) -> None:
    modules = _imported_after(
        "from gpucloud_cli.main import cli\ncli.main(['ps', '--json'], standalone_mode=False)\n"
        "import gpucloud_cli.sdk.transport",
        {"GPUCLOUD_CONFIG_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert "httpx" in modules
    assert not {"rich", "pygments", "rich.console"} & modules


def test_a_client_without_proxy_or_transport_imports_no_httpx() -> None:
    """The SDK's default path is the standard library (wire.Http); httpx costs about a
    third of `gpucloud ps --json` (just bench cli). A proxy in the environment brings it."""
    code = "from gpucloud_cli.sdk.client import Client\nClient('http://127.0.0.1:9').close()"
    plain = _imported_after(code, {"PATH": "/usr/bin:/bin"})
    assert "gpucloud_cli.sdk.wire" in plain and "httpx" not in plain
    proxy = _imported_after(code, {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert "httpx" in proxy


def test_not_signed_in_is_an_auth_error_as_one_json_document(runner) -> None:
    result = runner.invoke(cli, ["ps", "--json"])
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["class"] == "auth" and "gpucloud login" in error["detail"]


def test_not_signed_in_for_humans(runner) -> None:
    result = runner.invoke(cli, ["ps"])
    assert result.exit_code == 3 and result.stdout == ""
    assert "Not signed in" in result.stderr


def test_usage_errors_exit_2_and_honour_json(runner) -> None:
    plain = runner.invoke(cli, ["launch"])
    assert plain.exit_code == 2 and "--sku" in plain.stderr
    as_json = runner.invoke(cli, ["launch", "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["class"] == "usage"


def test_a_bad_duration_names_its_option_before_any_request(runner) -> None:
    result = runner.invoke(cli, ["launch", "--sku", "h100-80gb", "--idle-stop", "soon", "--json"])
    assert result.exit_code == 5
    assert json.loads(result.stdout)["error"]["errors"][0]["field"] == "idle_stop"


def test_plain_http_to_another_host_is_refused(runner) -> None:
    result = runner.invoke(cli, ["--gateway", "http://gpucloud.example", "login", "--json"])
    assert result.exit_code == 5
    assert json.loads(result.stdout)["error"]["errors"][0]["field"] == "gateway"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(runner, shell: str) -> None:
    result = runner.invoke(cli, ["completion", shell])
    assert result.exit_code == 0 and "_GPUCLOUD_COMPLETE" in result.stdout


def test_completion_completes_lazy_commands_and_their_options(runner) -> None:
    env = {"_GPUCLOUD_COMPLETE": "bash_complete", "COMP_WORDS": "gpucloud la", "COMP_CWORD": "1"}
    assert "launch" in runner.invoke(cli, [], env=env, prog_name="gpucloud").stdout
    env |= {"COMP_WORDS": "gpucloud launch --m", "COMP_CWORD": "2"}
    assert "--mig" in runner.invoke(cli, [], env=env, prog_name="gpucloud").stdout


def test_version(runner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "gpucloud" in result.stdout
