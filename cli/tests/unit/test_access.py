"""terminal / ssh / ssh-keys pieces that need no server: the pinned known_hosts, the
ssh_config section, refusals as exit codes, reading a public key, the connect URL."""

import stat

import pytest

from gpucloud_cli.commands import access
from gpucloud_cli.config import Store
from gpucloud_cli.exit_codes import ExitCode
from gpucloud_cli.sdk.client import Client
from gpucloud_cli.sdk.errors import InvalidInput
from gpucloud_cli.sdk.models import SshEndpoint

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEsRGRrHyhXdHLIfVrK3nPjojr3kCYsEL0cpfgQNAwFG"
A1 = "0190a0b0-0000-7000-8000-00000000aaaa"
A2 = "0190a0b0-0000-7000-8000-00000000bbbb"


def _endpoint(port: int = 2222, key: str = KEY) -> SshEndpoint:
    name = f"[ssh.example.test]:{port}"
    return SshEndpoint("ssh.example.test", port, [key], [f"{name} {key}"])


def test_the_host_key_is_pinned_in_a_private_file_replacing_the_old_pin(tmp_path) -> None:
    store = Store(tmp_path / "config")
    path = access._pin_host_keys(store, _endpoint(key="ssh-ed25519 OLD"))
    path.write_text(path.read_text() + "[other.test]:22 ssh-ed25519 KEEP\n")
    access._pin_host_keys(store, _endpoint())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(path.read_text().splitlines()) == sorted(
        ["[other.test]:22 ssh-ed25519 KEEP", f"[ssh.example.test]:2222 {KEY}"]
    )
    on_22 = access._pin_host_keys(store, _endpoint(port=22))
    assert f"ssh.example.test {KEY}" in on_22.read_text().splitlines()


def _section(text: str, context: str = "acme/default") -> tuple[str, str, str]:
    return access._split_section(text, access.BEGIN.format(context), access.END.format(context))


def test_a_context_section_is_found_and_the_rest_kept() -> None:
    begin, end = access.BEGIN.format("acme/default"), access.END.format("acme/default")
    block = access._host_block(A1, _endpoint(), access.Path("/k"))
    text = f"Host mine\n  HostName a\n{begin}\n{block}{end}\nHost after\n"
    before, section, after = _section(text)
    assert (before, section, after) == ("Host mine\n  HostName a\n", block, "Host after\n")
    assert _section("Host mine") == ("Host mine\n", "", "")  # no section yet: appended
    assert _section(text, "other/default") == (text, "", "")


def test_host_blocks_are_read_back_by_their_allocation() -> None:
    blocks = [access._host_block(a, _endpoint(), access.Path("/k h")) for a in (A1, A2)]
    assert access._blocks("".join(blocks)) == {A1: blocks[0], A2: blocks[1]}
    assert blocks[0].startswith(f"Host gpucloud-0000aaaa gpucloud-{A1}\n")
    assert '    UserKnownHostsFile "/k h"\n' in blocks[0]
    assert "    StrictHostKeyChecking yes\n" in blocks[0]


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [(4401, ExitCode.AUTH), (4403, ExitCode.AUTH), (4404, ExitCode.NOT_FOUND),
     (4409, ExitCode.CONFLICT)],
)  # fmt: skip
def test_a_refused_connect_is_its_problem_class(code: int, exit_code: ExitCode) -> None:
    outcome = access.Outcome()
    outcome.close_code, outcome.close_reason = code, "why"
    refused = access._refusal(outcome)
    assert refused is not None and refused.exit_code == exit_code and refused.detail == "why"


def test_an_ending_with_a_reason_or_a_normal_close_is_no_refusal() -> None:
    outcome = access.Outcome()
    outcome.close_code, outcome.reason = 1000, "allocation_released"
    assert access._refusal(outcome) is None
    outcome.reason = None
    assert access._refusal(outcome) is None


def test_a_public_key_is_one_line_never_a_private_key(tmp_path) -> None:
    public = tmp_path / "id.pub"
    public.write_text(KEY + " me@laptop\n")
    assert access._read_public_key(str(public)) == KEY + " me@laptop"
    private = tmp_path / "id"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n")
    with pytest.raises(InvalidInput, match="private key"):
        access._read_public_key(str(private))
    with pytest.raises(InvalidInput, match="no such file"):
        access._read_public_key(str(tmp_path / "missing.pub"))
    two = tmp_path / "two.pub"
    two.write_text(f"{KEY}\n{KEY}\n")
    with pytest.raises(InvalidInput, match="one OpenSSH public key line"):
        access._read_public_key(str(two))


@pytest.mark.parametrize(
    ("gateway", "url"),
    [("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/terminal/sessions/s%2F1/connect"),
     ("https://gpucloud.example/api", "wss://gpucloud.example/api/v1/terminal/sessions/s%2F1/connect")],
)  # fmt: skip
def test_the_connect_url_is_on_the_clients_own_gateway(gateway: str, url: str) -> None:
    with Client(gateway) as client:
        assert client.terminal_connect_url("s/1") == url
