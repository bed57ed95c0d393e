"""`Client`: typed calls to the platform's public HTTP API, through the gateway.

    from gpucloud_cli.sdk import Client
    with Client.from_config() as gc:            # the current `gpucloud` context
        for a in gc.list_allocations(gc.tenant_id, gc.project_id):
            print(a.id, a.state)

Every error answer raises a typed `ApiError` (gpucloud_cli.sdk.errors). Reads, and writes
that carry an Idempotency-Key or are idempotent by nature (release), are retried on a
network error or a 502/503/504 with the same key; the token endpoint never is (a refresh
token presented twice revokes its session). A 401 makes the client renew its token once
(refresh / re-mint) and repeat the call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gpucloud_cli import __version__
from gpucloud_cli.sdk import models as m
from gpucloud_cli.sdk.credentials import StaticToken, StoredSession, TokenSource
from gpucloud_cli.sdk.errors import (
    ApiError,
    NetworkError,
    NotSignedIn,
    ProtocolError,
    StepUpRequired,
    from_answer,
)
from gpucloud_cli.sdk.wire import Answer, Http, HttpxHttp, TransportError, proxied

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_DELAYS_S = (0.2, 0.6)


def _seg(value: str) -> str:
    """One path segment: whatever a user typed stays inside it."""
    return quote(str(value), safe="")


def new_idempotency_key() -> str:
    import uuid

    return str(uuid.uuid4())


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying it: for display and for choosing a
    context only. Authorization is the services' job; they verify every token."""
    import base64

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"the access token is not a JWT ({exc})") from None
    if not isinstance(claims, dict):
        raise ProtocolError("the access token's claims are not an object")
    return claims


class Client:
    def __init__(
        self,
        gateway: str,
        credentials: TokenSource | str | None = None,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        tenant_id: str | None = None,
        project_id: str | None = None,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.credentials = StaticToken(credentials) if isinstance(credentials, str) else credentials
        self.tenant_id, self.project_id = tenant_id, project_id
        headers = {"User-Agent": f"gpucloud-cli/{__version__}"}
        # The standard library unless httpx adds something: a proxy, a caller's transport.
        self._http: Http | HttpxHttp = (
            HttpxHttp(self.gateway, timeout=timeout, headers=headers, transport=transport)
            if transport is not None or proxied()
            else Http(self.gateway, timeout=timeout, headers=headers)
        )

    @classmethod
    def from_config(cls, context: str | None = None, **kwargs: Any) -> Client:
        """A client for a context of the config directory (the current one by default)."""
        from gpucloud_cli.config import Store

        store = Store()
        state = store.load()
        found = state.context(context)
        if found is None:
            raise NotSignedIn("no context: run `gpucloud login`")
        client = cls(found.gateway, None, tenant_id=found.tenant_id, project_id=found.project_id)
        client.credentials = client.stored_session(store, found.session)
        return client

    def stored_session(self, store: Any, session_key: str) -> StoredSession:
        return StoredSession(
            store,
            session_key,
            refresh=self.refresh_token_grant,
            mint=self.client_credentials_grant,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the one place requests go out

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        authenticated: bool = True,
        retry: bool | None = None,
        content: bytes | None = None,
    ) -> Answer:
        headers: dict[str, str] = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retry = (method == "GET" or idempotency_key is not None) if retry is None else retry
        renewed = False
        attempt = 0
        while True:
            if authenticated:
                if self.credentials is None:
                    raise NotSignedIn("not signed in: run `gpucloud login`")
                headers["Authorization"] = f"Bearer {self.credentials.token()}"
            try:
                extra = {} if content is None else {"content": content}
                response = self._http.request(
                    method, path, json=json, data=data, params=params, headers=headers, **extra
                )
            except TransportError as exc:
                if retry and attempt < len(RETRY_DELAYS_S):
                    time.sleep(RETRY_DELAYS_S[attempt])
                    attempt += 1
                    continue
                raise NetworkError(f"{self.gateway}: {exc or type(exc).__name__}") from None
            if response.status_code < 400:
                return response
            if retry and response.status_code in RETRY_STATUSES and attempt < len(RETRY_DELAYS_S):
                time.sleep(RETRY_DELAYS_S[attempt])
                attempt += 1
                continue
            error = from_answer(
                response.status_code,
                response.headers,
                response.content,
                response.reason_phrase,
            )
            if (
                response.status_code == 401
                and authenticated
                and not renewed
                and not isinstance(error, StepUpRequired)
                and self.credentials is not None
                and self.credentials.renew()
            ):
                renewed = True
                continue
            raise error

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProtocolError(f"{method} {path}: the answer is not JSON") from None

    # iam: tokens

    def password_grant(
        self, username: str, password: str, tenant: str | None = None, otp: str | None = None
    ) -> m.Token:
        form = {"grant_type": "password", "username": username, "password": password}
        if tenant:
            form["tenant"] = tenant
        if otp:
            form["otp"] = otp
        return self._token(form)

    def refresh_token_grant(self, refresh_token: str) -> m.Token:
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def client_credentials_grant(self, api_key: str) -> m.Token:
        return self._token({"grant_type": "client_credentials", "client_secret": api_key})

    def _token(self, form: dict[str, str]) -> m.Token:
        body = self._json("POST", "/v1/iam/token", data=form, authenticated=False, retry=False)
        return m.Token.from_api(body)

    # iam: who and where

    def whoami(self) -> m.Me:
        return m.Me.from_api(self._json("GET", "/v1/iam/me"))

    def get_tenant(self, tenant_id: str) -> m.Tenant:
        return m.Tenant.from_api(self._json("GET", f"/v1/iam/tenants/{_seg(tenant_id)}"))

    def list_projects(self, tenant_id: str) -> list[m.Project]:
        return m.Project.many(self._json("GET", f"/v1/iam/tenants/{_seg(tenant_id)}/projects"))

    def get_project(self, tenant_id: str, project_id: str) -> m.Project:
        path = f"/v1/iam/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}"
        return m.Project.from_api(self._json("GET", path))

    # iam: the caller's SSH keys (for `ssh` into allocations)

    def list_ssh_keys(self) -> list[m.SshKey]:
        return m.SshKey.many(self._json("GET", "/v1/iam/me/ssh-keys"))

    def add_ssh_key(self, public_key: str, name: str | None = None) -> m.SshKey:
        body: dict[str, Any] = {"public_key": public_key}
        if name:
            body["name"] = name
        return m.SshKey.from_api(self._json("POST", "/v1/iam/me/ssh-keys", json=body))

    def revoke_ssh_key(self, key_id: str) -> None:
        self.request("DELETE", f"/v1/iam/me/ssh-keys/{_seg(key_id)}", retry=True)

    # iam: service accounts and their API keys

    def _accounts(self, tenant_id: str, project_id: str) -> str:
        return f"/v1/iam/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}/service-accounts"

    def list_service_accounts(self, tenant_id: str, project_id: str) -> list[m.ServiceAccount]:
        return m.ServiceAccount.many(self._json("GET", self._accounts(tenant_id, project_id)))

    def create_service_account(
        self, tenant_id: str, project_id: str, name: str, role: str = "member"
    ) -> m.ServiceAccount:
        body = self._json(
            "POST", self._accounts(tenant_id, project_id), json={"name": name, "role": role}
        )
        return m.ServiceAccount.from_api(body)

    def list_api_keys(
        self, tenant_id: str, project_id: str, service_account_id: str
    ) -> list[m.ApiKey]:
        path = f"{self._accounts(tenant_id, project_id)}/{_seg(service_account_id)}/keys"
        return m.ApiKey.many(self._json("GET", path))

    def issue_api_key(
        self,
        tenant_id: str,
        project_id: str,
        service_account_id: str,
        *,
        expires_in_days: int = 90,
        replaces: str | None = None,
        overlap_hours: int = 24,
    ) -> m.IssuedApiKey:
        path = f"{self._accounts(tenant_id, project_id)}/{_seg(service_account_id)}/keys"
        body: dict[str, Any] = {"expires_in_days": expires_in_days, "overlap_hours": overlap_hours}
        if replaces:
            body["replaces"] = replaces
        return m.IssuedApiKey.from_api(self._json("POST", path, json=body))

    def revoke_api_key(
        self, tenant_id: str, project_id: str, service_account_id: str, key_id: str
    ) -> None:
        account = f"{self._accounts(tenant_id, project_id)}/{_seg(service_account_id)}"
        path = f"{account}/keys/{_seg(key_id)}"
        self.request("DELETE", path, retry=True)  # revoking twice changes nothing

    # gpuaas

    def list_skus(self) -> list[m.Sku]:
        return m.Sku.many(self._json("GET", "/v1/gpu/skus"))

    def _allocations(self, tenant_id: str, project_id: str) -> str:
        return f"/v1/gpu/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}/allocations"

    def create_allocation(
        self,
        tenant_id: str,
        project_id: str,
        sku: str,
        *,
        mig_profile: str | None = None,
        count: int = 1,
        idle_stop_after_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.Allocation:
        body: dict[str, Any] = {"sku": sku, "count": count}
        if mig_profile is not None:
            body["mig_profile"] = mig_profile
        if idle_stop_after_s is not None:
            body["idle_stop_after_s"] = idle_stop_after_s
        answer = self._json(
            "POST",
            self._allocations(tenant_id, project_id),
            json=body,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return m.Allocation.from_api(answer)

    def iter_allocations(self, tenant_id: str, project_id: str) -> Iterator[m.Allocation]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if after:
                params["after"] = after
            page = self._json("GET", self._allocations(tenant_id, project_id), params=params)
            yield from m.Allocation.many(page.get("items"))
            after = page.get("next_after")
            if not after:
                return

    def list_allocations(self, tenant_id: str, project_id: str) -> list[m.Allocation]:
        return list(self.iter_allocations(tenant_id, project_id))

    def get_allocation(self, tenant_id: str, project_id: str, allocation_id: str) -> m.Allocation:
        path = f"{self._allocations(tenant_id, project_id)}/{_seg(allocation_id)}"
        return m.Allocation.from_api(self._json("GET", path))

    def release_allocation(
        self, tenant_id: str, project_id: str, allocation_id: str
    ) -> m.Allocation:
        path = f"{self._allocations(tenant_id, project_id)}/{_seg(allocation_id)}/release"
        return m.Allocation.from_api(self._json("POST", path, retry=True))

    # billing

    def list_prices(self) -> list[m.Price]:
        """The public price book and the caller's tenant's own prices."""
        return m.Price.many(self._json("GET", "/v1/billing/prices"))

    def get_balance(self, tenant_id: str) -> m.Balance:
        return m.Balance.from_api(
            self._json("GET", f"/v1/billing/tenants/{_seg(tenant_id)}/balance")
        )

    def get_usage(
        self, tenant_id: str, since: str | None = None, until: str | None = None
    ) -> m.UsageReport:
        params = {k: v for k, v in (("since", since), ("until", until)) if v}
        path = f"/v1/billing/tenants/{_seg(tenant_id)}/usage"
        return m.UsageReport.from_api(self._json("GET", path, params=params))

    def create_payment(
        self, tenant_id: str, amount_micros: int, idempotency_key: str | None = None
    ) -> m.Payment:
        answer = self._json(
            "POST",
            f"/v1/billing/tenants/{_seg(tenant_id)}/payments",
            json={"amount_micros": amount_micros},
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return m.Payment.from_api(answer)

    def get_payment(self, tenant_id: str, payment_id: str) -> m.Payment:
        path = f"/v1/billing/tenants/{_seg(tenant_id)}/payments/{_seg(payment_id)}"
        return m.Payment.from_api(self._json("GET", path))

    def get_statement(self, tenant_id: str, month: str) -> m.Statement:
        path = f"/v1/billing/tenants/{_seg(tenant_id)}/statements/{_seg(month)}"
        return m.Statement.from_api(self._json("GET", path))

    def get_statement_csv(self, tenant_id: str, month: str) -> str:
        path = f"/v1/billing/tenants/{_seg(tenant_id)}/statements/{_seg(month)}"
        return self.request("GET", path, params={"format": "csv"}).text

    # audit: the verifiable log (raw documents: the verifier checks their bytes itself)

    def audit_log_key(self) -> dict[str, Any]:
        """The log's origin and note verifier key (public)."""
        return self._json("GET", "/v1/audit/log/key", authenticated=False)

    def audit_checkpoint(self) -> dict[str, Any]:
        return self._json("GET", "/v1/audit/log/checkpoint")

    def audit_consistency(self, first: int, second: int) -> dict[str, Any]:
        params = {"first": first, "second": second}
        return self._json("GET", "/v1/audit/log/consistency", params=params)

    def witnessed_checkpoint(self, origin: str) -> dict[str, Any] | None:
        """The largest checkpoint of the log `origin` that registry witnessed; None before
        the first."""
        from gpucloud_cli.sdk.errors import NotFound

        try:
            return self._json("GET", "/v1/registry/witness/checkpoint", params={"origin": origin})
        except NotFound:
            return None

    def audit_tenant_records(self, tenant_id: str, size: int) -> Iterator[dict[str, Any]]:
        """Every record of the tenant's trail below the checkpoint of tree `size`, each with
        its inclusion proof in that tree, oldest first."""
        after = 0
        path = f"/v1/audit/tenants/{_seg(tenant_id)}/records"
        while True:
            params = {"proofs": "true", "size": size, "after": after, "limit": 1000}
            page = self._json("GET", path, params=params)
            yield from page["items"]
            if page.get("next_after") is None:
                return
            after = page["next_after"]

    # terminal-gateway

    def open_terminal_session(
        self, allocation_id: str, idempotency_key: str | None = None
    ) -> m.TerminalConnect:
        """A new session on a running allocation and its connect token. Retried with the
        same key: terminal-gateway answers the same (unused) session with a fresh token."""
        answer = self._json(
            "POST",
            "/v1/terminal/sessions",
            json={"allocation_id": allocation_id},
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return m.TerminalConnect.from_api(answer)

    def attach_terminal_session(self, session_id: str) -> m.TerminalConnect:
        """A fresh connect token for one's own open or detached session (a reattach). Safe
        to retry: each answer replaces the previous token."""
        path = f"/v1/terminal/sessions/{_seg(session_id)}/attach"
        return m.TerminalConnect.from_api(self._json("POST", path, retry=True))

    def get_terminal_session(self, session_id: str) -> m.TerminalSession:
        path = f"/v1/terminal/sessions/{_seg(session_id)}"
        return m.TerminalSession.from_api(self._json("GET", path))

    def terminal_connect_url(self, session_id: str) -> str:
        """The session's WebSocket on this client's gateway (ws:// for http://, wss:// for
        https://): the connect token goes where the access token goes, nowhere else."""
        scheme, rest = self.gateway.split("://", 1)
        ws = "wss" if scheme == "https" else "ws"
        return f"{ws}://{rest}/v1/terminal/sessions/{_seg(session_id)}/connect"

    def ssh_endpoint(self) -> m.SshEndpoint:
        """Where the SSH endpoint is and its host key (public)."""
        answer = self._json("GET", "/v1/terminal/ssh", authenticated=False)
        return m.SshEndpoint.from_api(answer)

    # registry: publisher keys, apps, bundles, releases

    def _registry_apps(self, tenant_id: str, project_id: str) -> str:
        return f"/v1/registry/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}/apps"

    def trust_publisher_key(self, tenant_id: str, public_key_pem: str, name: str) -> Any:
        """Have registry trust an Ed25519 publisher key for the tenant (owner/admin, step-up).
        The key's PEM makes the Idempotency-Key: asking twice trusts it once."""
        import hashlib

        digest = hashlib.sha256(public_key_pem.encode()).hexdigest()[:32]
        return self._json(
            "POST",
            f"/v1/registry/tenants/{_seg(tenant_id)}/keys",
            json={"public_key": public_key_pem, "name": name},
            idempotency_key=f"cli-key-{digest}",
        )

    def list_publisher_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's publisher keys as registry holds them (every status)."""
        return self._json("GET", f"/v1/registry/tenants/{_seg(tenant_id)}/keys")["items"]

    def create_app(self, tenant_id: str, project_id: str, name: str) -> bool:
        """Create the app in the project; False when it already exists."""
        try:
            self._json(
                "POST",
                self._registry_apps(tenant_id, project_id),
                json={"name": name},
                idempotency_key=new_idempotency_key(),
            )
        except ApiError as exc:
            if exc.status == 409:  # app-exists
                return False
            raise
        return True

    def upload_blob(
        self, tenant_id: str, project_id: str, app: str, digest: str, content: bytes
    ) -> bool:
        """Store one content-addressed blob of a bundle; False when registry had it."""
        path = f"{self._registry_apps(tenant_id, project_id)}/{_seg(app)}/blobs/{_seg(digest)}"
        # content-addressed: a retried upload stores nothing twice
        return self.request("PUT", path, content=content, retry=True).status_code == 201

    def publish_version(
        self, tenant_id: str, project_id: str, app: str, version: str, manifest: bytes
    ) -> Any:
        """Publish a version from its uploaded blobs and OCI manifest (raw bytes)."""
        import base64
        import hashlib

        digest = hashlib.sha256(manifest).hexdigest()
        return self._json(
            "POST",
            f"{self._registry_apps(tenant_id, project_id)}/{_seg(app)}/versions",
            json={"version": version, "manifest": base64.b64encode(manifest).decode()},
            idempotency_key=f"cli-publish-{app}-{version}-{digest}",
        )

    def add_statement(
        self, tenant_id: str, project_id: str, app: str, version: str, envelope: str, key: str
    ) -> Any:
        """Attach a signed in-toto statement (a DSSE envelope's JSON) to a version."""
        base = f"{self._registry_apps(tenant_id, project_id)}/{_seg(app)}"
        return self._json(
            "POST",
            f"{base}/versions/{_seg(version)}/statements",
            json={"envelope": envelope},
            idempotency_key=key,
        )

    def promote(self, tenant_id: str, project_id: str, app: str, version: str, channel: str) -> Any:
        base = f"{self._registry_apps(tenant_id, project_id)}/{_seg(app)}"
        return self._json(
            "POST",
            f"{base}/versions/{_seg(version)}/promotions",
            json={"channel": channel},
            idempotency_key=f"cli-promote-{app}-{version}-{channel}",
        )

    # appplatform: the catalog and app instances

    def _instances(self, tenant_id: str, project_id: str) -> str:
        return f"/v1/apps/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}/instances"

    def app_catalog(self, q: str | None = None) -> list[dict[str, Any]]:
        params = {"q": q} if q else None
        return self._json("GET", "/v1/apps/catalog", params=params)["items"]

    def launch_instance(
        self, tenant_id: str, project_id: str, app: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        path = f"/v1/apps/tenants/{_seg(tenant_id)}/projects/{_seg(project_id)}/apps/{_seg(app)}"
        return self._json(
            "POST", f"{path}/instances", json=body, idempotency_key=new_idempotency_key()
        )

    def list_instances(self, tenant_id: str, project_id: str) -> list[dict[str, Any]]:
        path = self._instances(tenant_id, project_id)
        return self._json("GET", path, params={"limit": 500})["items"]

    def get_instance(self, tenant_id: str, project_id: str, instance_id: str) -> dict[str, Any]:
        return self._json("GET", f"{self._instances(tenant_id, project_id)}/{_seg(instance_id)}")

    def stop_instance(self, tenant_id: str, project_id: str, instance_id: str) -> dict[str, Any]:
        path = f"{self._instances(tenant_id, project_id)}/{_seg(instance_id)}/stop"
        return self._json("POST", path, retry=True)  # stopping twice changes nothing

    def instance_logs(
        self,
        tenant_id: str,
        project_id: str,
        instance_id: str,
        *,
        follow: bool = False,
        replica: str | None = None,
    ) -> Iterator[bytes]:
        """A replica's stdout and stderr as they come (`follow` keeps the stream open)."""
        path = f"{self._instances(tenant_id, project_id)}/{_seg(instance_id)}/logs"
        params: dict[str, Any] = {"follow": "true"} if follow else {}
        if replica:
            params["replica"] = replica
        if not follow:
            yield self.request("GET", path, params=params or None).content
            return
        import httpx

        if self.credentials is None:
            raise NotSignedIn("not signed in: run `gpucloud login`")
        headers = {"Authorization": f"Bearer {self.credentials.token()}"}
        try:
            with httpx.stream(
                "GET",
                self.gateway + path,
                params=params,
                headers=headers,
                timeout=httpx.Timeout(15.0, read=None),  # a followed log may idle for long
            ) as answer:
                if answer.status_code >= 400:
                    body = answer.read()
                    raise from_answer(answer.status_code, dict(answer.headers), body)
                yield from answer.iter_raw()
        except httpx.TransportError as exc:
            raise NetworkError(f"{self.gateway}: {exc or type(exc).__name__}") from None
