"""A fake Azure Key Vault (secrets data plane) over HTTPS on 127.0.0.1.

Speaks what `azure.keyvault.secrets.aio.SecretClient.get_secret` needs:

* `GET /secrets/{name}` and `/secrets/{name}/` and `/secrets/{name}/{version}` with
  `?api-version=...`;
* without a bearer token: 401 with the Key Vault challenge
  (`WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"`);
* with a token the fake identity endpoint issued: the secret bundle
  `{"value", "id", "attributes"}`, or 404 `SecretNotFound` for an unknown name.

Faults, set on the instance: `stop()` / `start()` (connection refused on the same port),
`throttle(retry_after)` (429 + Retry-After), `fail_status = 500`, `delay_seconds` (slow).
`reads[name]` counts authorised secret reads (what "one vault call" means in tests);
`requests` counts every request, including challenges and faults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Callable

from aiohttp import web

from tests.certs import SelfSignedCert

TENANT = "00000000-0000-0000-0000-00000000feed"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
    'resource="https://vault.azure.net"'
)


class FakeKeyVault:
    def __init__(self, cert: SelfSignedCert, token_valid: Callable[[str], bool]) -> None:
        self._cert = cert
        self._token_valid = token_valid
        self.secrets: dict[str, tuple[str, str]] = {}
        self.fail_status: int | None = None
        self.retry_after: str | None = None
        self.delay_seconds: float = 0.0
        self.requests = 0
        self.challenges = 0
        self.reads: Counter[str] = Counter()
        self.faults = 0
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"FakeKeyVault(port={self.port}, names={sorted(self.secrets)})"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def set_secret(self, name: str, value: str) -> str:
        """Create or rotate a secret; returns the new version id."""
        version = uuid.uuid4().hex
        self.secrets[name] = (value, version)
        return version

    def throttle(self, retry_after: str | None = "30") -> None:
        self.fail_status = 429
        self.retry_after = retry_after

    def heal(self) -> None:
        self.fail_status = None
        self.retry_after = None
        self.delay_seconds = 0.0

    def total_reads(self) -> int:
        return sum(self.reads.values())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/secrets/{name}", self._get)
        app.router.add_get("/secrets/{name}/", self._get)
        app.router.add_get("/secrets/{name}/{version}", self._get)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port or 0, ssl_context=self._cert.server_context()
        )
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the listener and every connection: clients see refused connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not request.query.get("api-version"):
            return _error(400, "BadParameter", "api-version is required")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self.challenges += 1
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer token."}},
                status=401,
                headers={"WWW-Authenticate": CHALLENGE},
            )
        if not self._token_valid(auth.removeprefix("Bearer ")):
            return _error(401, "Unauthorized", "AKV10032: Invalid issuer.")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.fail_status is not None:
            self.faults += 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            code = "Throttled" if self.fail_status == 429 else "InternalServerError"
            return _error(self.fail_status, code, "Injected fault.", headers)
        name = request.match_info["name"]
        self.reads[name] += 1
        if name not in self.secrets:
            return _error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        value, version = self.secrets[name]
        wanted = request.match_info.get("version")
        if wanted and wanted != version:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name}/{wanted} was not found.")
        now = int(time.time())
        return web.json_response(
            {
                "value": value,
                "id": f"{self.url}/secrets/{name}/{version}",
                "attributes": {
                    "enabled": True,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
                "tags": {},
            }
        )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)
