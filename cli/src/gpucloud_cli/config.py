"""Local state of the CLI: contexts (like kubectl's) and the credentials behind them.

    $GPUCLOUD_CONFIG_DIR, else $XDG_CONFIG_HOME/gpucloud, else ~/.config/gpucloud   (0700)
        config.json        current context, contexts, default gateway                 (0600)
        credentials.json   one session per (gateway, tenant, subject): tokens, API key (0600)
        .lock              flock'ed around every read-modify-write and every refresh

Files are written whole to a new 0600 file and renamed over the old one, so a reader never
sees half a file and a crash never leaves a token in a file others can read. A session's
tokens are only ever sent to the gateway they were issued by.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpucloud_cli.sdk.errors import GpucloudError

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
CONFIG_FILE = "config.json"
CREDENTIALS_FILE = "credentials.json"
LOCK_FILE = ".lock"
DIR_MODE = 0o700
FILE_MODE = 0o600


def config_dir() -> Path:
    explicit = os.environ.get("GPUCLOUD_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":  # pragma: no cover - documented, not tested here
        return Path(os.environ.get("APPDATA", Path.home())) / "gpucloud"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "gpucloud"


@dataclasses.dataclass
class Session:
    """Who is signed in where. `kind` user: refreshed with `refresh_token` (rotated on every
    use); service_account: re-minted from `api_key` (client credentials)."""

    key: str
    gateway: str
    kind: str
    subject: str
    tenant_id: str
    tenant_slug: str
    access_token: str = dataclasses.field(repr=False)
    access_expires_at: float  # unix time, from the token answer's expires_in
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    email: str | None = None
    amr: list[str] = dataclasses.field(default_factory=list)

    @staticmethod
    def key_for(gateway: str, tenant_id: str, subject: str) -> str:
        return f"{gateway}|{tenant_id}|{subject}"


@dataclasses.dataclass
class Context:
    """A named default for commands: a session plus the project they act in."""

    name: str
    gateway: str
    session: str
    tenant_id: str
    tenant_slug: str
    project_id: str | None = None
    project_slug: str | None = None


@dataclasses.dataclass
class State:
    current_context: str | None = None
    default_gateway: str | None = None
    contexts: dict[str, Context] = dataclasses.field(default_factory=dict)
    sessions: dict[str, Session] = dataclasses.field(default_factory=dict)

    def context(self, name: str | None = None) -> Context | None:
        wanted = name or self.current_context
        return self.contexts.get(wanted) if wanted else None

    def session_of(self, context: Context) -> Session | None:
        return self.sessions.get(context.session)

    def remove_session(self, key: str) -> list[str]:
        """Forget a session and every context on it; the names of those contexts."""
        self.sessions.pop(key, None)
        gone = [name for name, c in self.contexts.items() if c.session == key]
        for name in gone:
            del self.contexts[name]
        if self.current_context in gone:
            self.current_context = None
        return gone


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


class Store:
    """The config directory. Read with `load()`; change with `with store.edit() as state:`
    (locked, written back on success)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_FILE

    @property
    def credentials_path(self) -> Path:
        return self.directory / CREDENTIALS_FILE

    def ensure_directory(self) -> None:
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != DIR_MODE:
            os.chmod(self.directory, DIR_MODE)

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as f:
                if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & 0o077:
                    os.chmod(path, FILE_MODE)  # ours, and it may hold tokens: tighten it
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
        return data if isinstance(data, dict) else {}

    def load(self) -> State:
        config = self._read(self.config_path)
        credentials = self._read(self.credentials_path)
        return State(
            current_context=config.get("current_context"),
            default_gateway=config.get("default_gateway"),
            contexts={
                name: Context(**_known(Context, {**c, "name": name}))
                for name, c in (config.get("contexts") or {}).items()
            },
            sessions={
                key: Session(**_known(Session, {**s, "key": key}))
                for key, s in (credentials.get("sessions") or {}).items()
            },
        )

    def save(self, state: State) -> None:
        self.ensure_directory()
        config = {
            "current_context": state.current_context,
            "default_gateway": state.default_gateway,
            "contexts": {
                name: {k: v for k, v in dataclasses.asdict(c).items() if k != "name"}
                for name, c in sorted(state.contexts.items())
            },
        }
        credentials = {
            "sessions": {
                key: {k: v for k, v in dataclasses.asdict(s).items() if k != "key"}
                for key, s in sorted(state.sessions.items())
            }
        }
        write_private(self.credentials_path, json.dumps(credentials, indent=2) + "\n")
        write_private(self.config_path, json.dumps(config, indent=2) + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the directory, across processes: two commands refreshing
        at once would otherwise both present the same refresh token, and iam answers a
        reused one by revoking the whole session (reuse detection)."""
        self.ensure_directory()
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def edit(self) -> Iterator[State]:
        with self.locked():
            state = self.load()
            yield state
            self.save(state)


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new file of mode 0600 beside `path`, then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, FILE_MODE)
    try:
        if hasattr(os, "fchmod"):  # POSIX: whatever the umask
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class ConfigError(GpucloudError):
    """The config directory holds something the CLI cannot read."""

    title = "Unreadable configuration"
