"""The `gpucloud` command line against the real fleet, through the gateway, as a user walks
it: sign in with a TOTP prompt, top up through the sandbox provider, launch --wait to
running, ps/get against the API, release and see the balance move, bad input and its exit
codes, a service account's API key (issue, sign in, re-mint, revoke), an expired and a
reused refresh token, and once the installed `gpucloud` script as a real process.

Commands run in-process with click's CliRunner (fast); each --json answer is checked to be
exactly one JSON document valid against the CLI's published schema (gpucloud_cli.schemas).
The tests of the class run in order on one tenant (its set-up is `sign_up` in conftest).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from click.testing import CliRunner, Result

from gpucloud_cli.config import Store
from gpucloud_cli.main import cli
from gpucloud_cli.schemas import document_schema

from .conftest import Person, bearer, gpuaas_sees_balance, sign_up
from .conftest import until as _until

pytestmark = pytest.mark.e2e

PASSWORD = "cli-" + uuid.uuid4().hex
TOP_UP = "2.50"
TOP_UP_MICROS = 2_500_000
MIG = ("h100-80gb", "1g.10gb")


def _document_name(args: tuple[str, ...]) -> str:
    words = [a for a in args if not a.startswith("-")]
    if words[:2] == ["app", "key"]:
        return " ".join(words[:3])
    if words[0] in ("keys", "service-accounts", "ssh-keys", "audit", "app", "bundle"):
        return " ".join(words[:2])
    if words[0] == "ssh" and "--config" in args:
        return "ssh --config"
    if words[0] == "use" and len(words) == 1:
        return "use (no argument)"
    return words[0]


class Cli:
    """`gpucloud` with its own config directory, against the fleet's gateway."""

    def __init__(self, config_dir: Path, gateway: str) -> None:
        self.config_dir, self.gateway = config_dir, gateway
        self.env = {"GPUCLOUD_CONFIG_DIR": str(config_dir), "GPUCLOUD_GATEWAY": gateway}
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, expect: int = 0) -> Result:
        result = self.runner.invoke(cli, list(args), input=input, env=self.env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == expect, (args, result.exit_code, result.output)
        return result

    def json(self, *args: str, input: str | None = None, expect: int = 0) -> dict[str, Any]:
        # before a `--`: what follows it is another program's (ssh's) arguments
        at = args.index("--") if "--" in args else len(args)
        result = self(*args[:at], "--json", *args[at:], input=input, expect=expect)
        document = json.loads(result.stdout)  # one document, nothing else on stdout
        schema = document_schema("error" if expect else _document_name(args))
        errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]
        assert not errors, errors
        return document

    def error(self, *args: str, expect: int, input: str | None = None) -> dict[str, Any]:
        return self.json(*args, input=input, expect=expect)["error"]

    @property
    def store(self) -> Store:
        return Store(self.config_dir)

    def session(self) -> Any:
        state = self.store.load()
        return state.sessions[state.context().session]

    def api(self, path: str) -> Any:
        """The API itself, with the token the CLI holds."""
        with httpx.Client(base_url=self.gateway, timeout=15) as client:
            response = client.get(path, headers=bearer(self.session().access_token))
        assert response.status_code == 200, response.text
        return response.json()

    def expire_access_token(self, refresh_token: str | None = None) -> None:
        with self.store.edit() as state:
            session = state.sessions[state.context().session]
            session.access_expires_at = 0
            if refresh_token is not None:
                session.refresh_token = refresh_token


@pytest.fixture(scope="module")
def tenant(fleet) -> dict[str, Any]:
    with fleet.client() as gateway:
        body, owner = sign_up(gateway, "cli", PASSWORD)
        owner.activate_totp(gateway, body["tenant"]["slug"])
    return {"body": body, "owner": owner, "scratch": {}}


@pytest.fixture(scope="module")
def gpucloud(fleet, tmp_path_factory) -> Cli:
    return Cli(tmp_path_factory.mktemp("gpucloud-config"), fleet.gateway)


class TestCli:
    def test_login_asks_for_the_second_factor(self, gpucloud: Cli, tenant) -> None:
        owner: Person = tenant["owner"]
        slug = tenant["body"]["tenant"]["slug"]
        refused = gpucloud.error(
            "login", "--email", owner.email, "--password-stdin", input=f"{PASSWORD}\n", expect=3
        )
        assert refused["title"] == "mfa_required" and "--otp" in refused["hint"]

        # the interactive way: the password and then the TOTP code at their prompts
        signed_in = gpucloud(
            "login", "--email", owner.email, input=f"{PASSWORD}\n{owner.next_code()}\n"
        )
        assert "TOTP code" in signed_in.output and "second factor" in signed_in.stderr
        assert (gpucloud.config_dir.stat().st_mode & 0o777) == 0o700
        for name in ("config.json", "credentials.json"):
            assert ((gpucloud.config_dir / name).stat().st_mode & 0o777) == 0o600

        me = gpucloud.json("whoami")
        assert me["context"]["name"] == f"{slug}/default" and me["context"]["current"]
        assert me["me"]["amr"] == ["pwd", "otp"] and "owner" in me["me"]["roles"]
        assert me["session"]["email"] == owner.email
        used = gpucloud.json("use", f"{slug}/Default")  # a project by name
        assert used["context"]["project_id"] == tenant["body"]["project"]["id"]
        assert gpucloud.json("use")["current"] == f"{slug}/default"

    def test_an_app_from_init_to_a_signed_promoted_release(
        self, gpucloud: Cli, tenant, tmp_path
    ) -> None:
        folder = tmp_path / "hello"
        gpucloud.json("app", "init", "hello", "--dir", str(folder))
        (folder / "gpucloud.yaml").write_text(
            (folder / "gpucloud.yaml").read_text().replace("port: 8000", "port: 70000")
        )
        invalid = gpucloud.error("app", "validate", str(folder), expect=5)
        assert invalid["errors"] == [{"field": "ports[0].port", "message": "must be <= 65535"}]
        (folder / "gpucloud.yaml").write_text(
            (folder / "gpucloud.yaml").read_text().replace("port: 70000", "port: 8000")
        )
        assert gpucloud.json("app", "validate", str(folder))["name"] == "hello"

        key_file = tmp_path / "publisher.key"
        made = gpucloud.json("app", "key", "create", "--out", str(key_file), "--name", "ci")
        assert (key_file.stat().st_mode & 0o777) == 0o600
        assert made["key"]["key_id"] == made["key_id"]

        # unsigned: published, not promotable; signed: promoted to dev
        published = gpucloud.json("app", "publish", str(folder))
        assert published["app_created"] and not published["signed"]
        assert published["release"]["bundle"]["app_manifest"]["name"] == "hello"
        refused = gpucloud.error("app", "promote", "hello", "0.1.0", "--to", "dev", expect=5)
        assert refused["errors"][0]["message"] == "unsigned"
        signed = gpucloud.json("app", "publish", str(folder), "--key", str(key_file))
        assert signed["signed"] and signed["digest"] == published["digest"]
        assert not signed["app_created"] and signed["blobs_uploaded"] == 0
        promoted = gpucloud.json("app", "promote", "hello", "0.1.0", "--to", "dev")
        assert promoted["release"]["channels"] == ["dev"]
        assert promoted["release"]["bundle"]["manifest_digest"] == published["digest"]

    def test_top_up_settles_through_the_sandbox(self, gpucloud: Cli, fleet) -> None:
        # billing learns of the tenant from iam's event: wait until it answers for it
        _until("billing knows the tenant", lambda: _balance_known(gpucloud))
        paid = gpucloud.json("top-up", TOP_UP, "-y")
        assert paid["payment"]["status"] == "settled"
        assert paid["payment"]["amount_micros"] == TOP_UP_MICROS
        assert paid["balance"]["available_micros"] == TOP_UP_MICROS
        # gpuaas's money gate fails closed: the next tests' launches wait for its projection.
        seen = gpuaas_sees_balance(fleet, paid["tenant_id"], TOP_UP_MICROS)
        _until("gpuaas sees the top-up", seen)

    def test_launch_waits_until_running_and_ps_matches_the_api(self, gpucloud: Cli, tenant) -> None:
        sku, profile = MIG
        launched = gpucloud.json("launch", "--sku", sku, "--mig", profile, "--wait", "-y")
        allocation = launched["allocation"]
        assert allocation["state"] == "running" and launched["history"][-1]["state"] == "running"
        assert allocation["instances"][0]["memory_slices"] == 1
        # the plan's price is the price book's
        book = gpucloud.api("/v1/billing/prices")
        listed = [p for p in book if p["price_key"] == allocation["price_key"]]
        quoted = launched["plan"]["price"]["micros_per_gpu_hour"]
        assert quoted in {p["micros_per_gpu_hour"] for p in listed}
        tenant["scratch"]["allocation"] = allocation

        scope = f"/v1/gpu/tenants/{allocation['tenant_id']}/projects/{allocation['project_id']}"
        api = gpucloud.api(f"{scope}/allocations")["items"]
        shown = gpucloud.json("ps")["allocations"]
        moving = {"updated_at", "last_active_at"}  # the agent's activity reports move them
        assert [{k: v for k, v in a.items() if k not in moving} for a in shown] == [
            {k: v for k, v in a.items() if k not in moving}
            for a in api
            if a["state"] not in ("released", "rejected")
        ]
        short = allocation["id"].replace("-", "")[-8:]
        assert gpucloud.json("get", short)["allocation"]["id"] == allocation["id"]
        assert short in gpucloud("ps").stdout

    def test_a_terminal_in_a_pty_types_resizes_reattaches_and_exits(
        self, gpucloud: Cli, tenant
    ) -> None:
        """`gpucloud terminal` as a person uses it: the installed script in tmux (a real
        pty), keys sent and the screen read back; terminal-gateway restarts under it (the
        connection is lost) and it reattaches to the same shell."""
        from devstack import stack

        allocation = tenant["scratch"]["allocation"]
        short = allocation["id"].replace("-", "")[-8:]
        script = Path(sys.executable).with_name("gpucloud")
        # without a terminal (a pipe): input passed through, its end ends the shell, --json
        # puts the shell's output on stderr and one document on stdout
        piped = subprocess.run(
            [str(script), "terminal", short, "--json"], input='echo "piped-$((1+2))"\n',
            env={**os.environ, **gpucloud.env}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        assert "piped-3" in piped.stderr
        document = json.loads(piped.stdout)
        errors = jsonschema_rs.validator_for(document_schema("terminal")).iter_errors(document)
        assert not [str(e) for e in errors]
        assert (document["exit_code"], document["reason"]) == (0, "exited")
        assert document["session"]["allocation_id"] == allocation["id"]
        with Tmux(gpucloud.env, f"{script} terminal {short}; echo cli-exit=$?; sleep 60") as tty:
            tty.type('echo "hello-$((6*7))"')
            tty.until("hello-42")
            tty.type("stty size")
            tty.until("40 120")
            tty.resize(100, 30)  # SIGWINCH: the CLI sends the new size
            tty.type("stty size")
            tty.until("30 100")
            tty.type("export MARK=kept")
            stack.restart("terminal-gateway")
            tty.until("reattached", within=60)
            tty.type('echo "again-$MARK"')  # the same shell, not a new one
            tty.until("again-kept")
            tty.type("exit 7")
            tty.until("cli-exit=7")
        path = f"/v1/terminal/tenants/{allocation['tenant_id']}/sessions"
        session, _piped = gpucloud.api(f"{path}?allocation_id={allocation['id']}")  # newest first
        assert (session["state"], session["reason"]) == ("closed", "exited")
        assert session["attachments"] >= 2 and session["recording_digest"].startswith("sha256:")

    def test_ssh_and_ssh_config_with_a_registered_key(self, gpucloud: Cli, tenant, tmp_path):
        allocation = tenant["scratch"]["allocation"]
        short = allocation["id"].replace("-", "")[-8:]
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        added = gpucloud.json("ssh-keys", "add", f"{key}.pub", "--name", "e2e")["key"]
        listed = gpucloud.json("ssh-keys", "list")["keys"]
        assert [k["fingerprint"] for k in listed] == [added["fingerprint"]]
        own = ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-F", "/dev/null"]

        def ssh(argv: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

        # `gpucloud ssh ID -- ...`: the ssh command, with the host key pinned
        planned = gpucloud.json("ssh", short, "--", *own, "echo ssh-$((2+3)); id -u")
        assert planned["argv"][:3] == ["ssh", "-p", str(planned["endpoint"]["port"])]
        pinned = Path(planned["known_hosts_file"]).read_text()
        assert planned["endpoint"]["host_keys"][0] in pinned
        # the projection of the key in terminal-gateway may take a moment
        done = _until("ssh signs in", lambda: (r := ssh(planned["argv"])).returncode == 0 and r)
        assert done.stdout.splitlines()[0] == "ssh-5"
        assert int(done.stdout.splitlines()[1]) >= 3_000_000  # the allocation's own user

        # `ssh --config`: an entry any ssh uses; the rest of the file is kept
        config = tmp_path / "ssh_config"
        config.write_text("Host elsewhere\n    HostName example.test\n")
        written = gpucloud.json("ssh", "--config", short, "--config-file", str(config))
        [host] = written["hosts"]
        assert host["alias"] == f"gpucloud-{short}" and host["user"] == allocation["id"]
        entry = ssh(["ssh", "-F", str(config), *own[:6], host["alias"], "echo cfg-$((3+4))"])
        assert entry.returncode == 0, entry.stderr
        assert entry.stdout.strip() == "cfg-7"
        again = gpucloud.json("ssh", "--config", "--config-file", str(config))  # all running
        assert [h["alias"] for h in again["hosts"]] == [host["alias"]]
        text = config.read_text()
        assert text.startswith("Host elsewhere") and text.count(f"Host {host['alias']}") == 1

        gpucloud.json("ssh-keys", "revoke", added["fingerprint"], "-y")
        _until("a revoked key signs in no more", lambda: ssh(planned["argv"]).returncode == 255)

    def test_release_and_the_balance_after_usage(self, gpucloud: Cli, tenant) -> None:
        allocation = tenant["scratch"]["allocation"]
        released = gpucloud.json("release", allocation["id"], "--wait")
        assert released["allocation"]["state"] == "released"
        assert released["allocation"]["reason"] == "user_release"
        # no shell on a released allocation: terminal-gateway refuses to mint (409), and
        # ssh is not even attempted
        refused = gpucloud.error("terminal", allocation["id"], expect=6)
        assert refused["status"] == 409 and refused["class"] == "conflict"
        assert "released" in gpucloud.error("ssh", allocation["id"], expect=10)["detail"]

        # the closing usage interval is rated: the balance goes down by what usage says it
        # cost (read together until both show it: rating may land between two reads)
        def spent_as_charged() -> int | None:
            available = gpucloud.json("balance")["balance"]["available_micros"]
            usage = gpucloud.json("usage", "--since", "1h")["usage"]["items"]
            charged = sum(
                u["net_micros"] for u in usage if u["price_key"] == allocation["price_key"]
            )
            spent = TOP_UP_MICROS - available
            return spent if spent > 0 and spent == charged else None

        assert _until("usage rated, balance and usage agreeing", spent_as_charged) > 0
        month = time.strftime("%Y-%m", time.gmtime())
        lines = gpucloud.json("statement", month)["statement"]["lines"]
        assert {line["kind"] for line in lines} >= {"top_up", "usage"}

    def test_audit_verify_proves_the_trail_and_catches_a_withheld_record(
        self, gpucloud: Cli
    ) -> None:
        """The tenant's own trail (its sign-up, top-up and allocations are recorded) is
        downloaded with proofs and verified outside the platform; the checkpoint is pinned
        and the next run must extend it; a trail shorter than one seen before is refused."""

        def covered() -> dict[str, Any] | None:  # the released allocation's records signed
            doc = gpucloud.json("audit", "verify")
            actions = {
                item["record"]["action"]
                for item in gpucloud.api(
                    f"/v1/audit/tenants/{doc['tenant_id']}/records"
                    f"?size={doc['checkpoint']['size']}&limit=1000"
                )["items"]
            }
            return doc if "gpuaas.allocation.released" in actions else None

        first = _until("the tenant's released allocation under a checkpoint", covered)
        assert first["verified"] and first["finding"] is None
        assert first["records"] == first["checked"] > 0
        assert first["last_tenant_seq"] == first["records"]  # a new tenant: 1..n, no gap
        again = gpucloud.json("audit", "verify")
        assert again["verified"] and again["pinned_before"] == first["checkpoint"]["size"]
        assert again["checkpoint"]["size"] >= first["checkpoint"]["size"]
        # registry witnesses audit's checkpoints from Kafka; the verifier compares them
        witnessed = _until(
            "registry witnessed a checkpoint", lambda: gpucloud.json("audit", "verify")["witness"]
        )
        assert witnessed == {"service": "registry", "size": witnessed["size"], "agrees": True}

        # this machine saw more of the trail before than the log serves now: withheld
        (pin_file,) = (gpucloud.config_dir / "audit").glob("*.json")
        assert oct(pin_file.stat().st_mode & 0o777) == "0o600"
        pin = json.loads(pin_file.read_text())
        pin["tenant_seq"] = {k: v + 5 for k, v in pin["tenant_seq"].items()}
        pin_file.write_text(json.dumps(pin))
        error = gpucloud.error("audit", "verify", expect=12)
        assert error["class"] == "unverified" and error["finding"]["kind"] == "withheld"
        assert error["verified"] is False
        # a key other than the pinned one is refused before anything is fetched
        pin["tenant_seq"] = {k: v - 5 for k, v in pin["tenant_seq"].items()}
        pin_file.write_text(json.dumps(pin))
        changed = gpucloud.error("audit", "verify", "--key", "log+00000000+AQ==", expect=5)
        assert changed["errors"][0]["field"] == "key"
        assert gpucloud.json("audit", "verify")["verified"]

    def test_down_releases_everything_of_the_project(self, gpucloud: Cli) -> None:
        sku, profile = MIG
        started = gpucloud.json("launch", "--sku", sku, "--mig", profile, "-y")["allocation"]
        down = gpucloud.json("down", "-y", "--wait")
        assert [a["id"] for a in down["released"]] == [started["id"]]
        assert down["released"][0]["state"] == "released" and down["failed"] == []
        assert gpucloud.json("ps")["allocations"] == []

    def test_bad_input_gets_its_exit_code_and_names_the_field(self, gpucloud: Cli) -> None:
        unknown = gpucloud.error("launch", "--sku", "h100-99gb", "-y", expect=5)
        assert unknown["errors"][0]["field"] == "sku" and "h100-80gb" in unknown["detail"]
        wrong = gpucloud.error("launch", "--sku", "h100-80gb", "--mig", "9g.99gb", "-y", expect=5)
        assert wrong["errors"][0]["field"] == "mig_profile" and "1g.10gb" in wrong["detail"]
        # refused by gpuaas itself: its problem+json, passed on
        short = gpucloud.error("launch", "--sku", "h100-80gb", "--idle-stop", "30s", "-y", expect=5)
        assert short["status"] == 400 and short["errors"][0]["field"] == "idle_stop_after_s"
        missing = gpucloud.error("get", str(uuid.uuid4()), expect=4)
        assert missing["status"] == 404 and missing["class"] == "not_found"
        human = gpucloud("launch", "--sku", "h100-99gb", "-y", expect=5)
        assert "sku" in human.stderr and human.stdout == ""

    def test_a_service_account_signs_in_with_its_api_key(
        self, gpucloud: Cli, tmp_path, fleet
    ) -> None:
        created = gpucloud.json("service-accounts", "create", f"ci-{uuid.uuid4().hex[:6]}")
        account = created["service_account"]
        issued = gpucloud.json("keys", "create", account["name"], "--expires-in-days", "1")
        assert issued["api_key"].startswith("gck_")
        listed = gpucloud.json("keys", "list", "-s", account["id"])["keys"]
        assert [k["id"] for k in listed] == [issued["key"]["id"]]

        robot = Cli(tmp_path / "robot", fleet.gateway)
        login = robot.json("login", "--api-key", "--password-stdin", input=issued["api_key"] + "\n")
        assert login["session"]["kind"] == "service_account"
        assert login["context"]["project_id"] == account["project_id"]
        assert robot.json("ps")["allocations"] == []
        before = robot.session().access_token
        robot.expire_access_token()
        robot.json("ps")  # re-minted from the API key
        assert robot.session().access_token != before

        gpucloud.json("keys", "revoke", issued["key"]["id"], "-y")
        # every service refuses the key's tokens within seconds; a new one cannot be minted
        error = _until("revoked key refused", lambda: _refused(robot))
        assert error["class"] == "auth" and "gpucloud login" in error["detail"]

    def test_the_installed_script_as_a_real_process(self, gpucloud: Cli) -> None:
        script = Path(sys.executable).with_name("gpucloud")
        done = subprocess.run(
            [str(script), "ps", "--json"],
            env={**os.environ, **gpucloud.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["allocations"] == []

    def test_an_expired_login_is_refreshed_and_a_replayed_one_is_refused(
        self, gpucloud: Cli
    ) -> None:
        first = gpucloud.session().refresh_token
        gpucloud.expire_access_token()
        gpucloud.json("ps")  # refreshed transparently; iam rotated the refresh token
        rotated = gpucloud.session().refresh_token
        assert rotated and rotated != first
        # presenting the spent one again: iam revokes the whole session (reuse detection)
        gpucloud.expire_access_token(refresh_token=first)
        error = gpucloud.error("ps", expect=3)
        assert error["title"] == "Session expired" and "gpucloud login" in error["detail"]
        gpucloud.expire_access_token(refresh_token=rotated)
        assert gpucloud.error("balance", expect=3)["class"] == "auth"
        assert "signed_out" in gpucloud.json("logout")
        assert gpucloud.error("ps", expect=3)["title"] == "Not signed in"


class Tmux:
    """One tmux server of its own running `command` in a 120x40 window (a real pty)."""

    def __init__(self, env: dict[str, str], command: str) -> None:
        self.socket = f"gpucloud-e2e-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **env, "TERM": "xterm-256color"}
        self.command = command

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env, capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return done.stdout

    def __enter__(self) -> "Tmux":
        self.tmux("new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40", self.command)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            print(self.screen())
        self.tmux("kill-server")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-S", "-200", "-t", "e2e")

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "e2e", "-l", line)
        self.tmux("send-keys", "-t", "e2e", "Enter")

    def resize(self, cols: int, rows: int) -> None:
        self.tmux("resize-window", "-t", "e2e", "-x", str(cols), "-y", str(rows))

    def until(self, needle: str, within: float = 20.0) -> None:
        _until(f"{needle!r} on the screen", lambda: needle in self.screen(), within=within)


def _balance_known(gpucloud: Cli) -> bool:
    return gpucloud.runner.invoke(cli, ["balance", "--json"], env=gpucloud.env).exit_code == 0


def _refused(robot: Cli) -> dict[str, Any] | None:
    result = robot.runner.invoke(cli, ["ps", "--json"], env=robot.env)
    return json.loads(result.stdout)["error"] if result.exit_code == 3 else None
