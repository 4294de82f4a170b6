"""A fake App Service managed identity endpoint (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`).

Speaks the 2019-08-01 protocol azure-identity uses when both variables are set:
`GET <endpoint>?api-version=2019-08-01&resource=<resource>[&client_id=...]` with header
`X-IDENTITY-HEADER: <secret>`, answered with
`{"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type"}`.
Plain HTTP on 127.0.0.1, like the real endpoint inside an App Service sandbox.
"""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

API_VERSION = "2019-08-01"
PATH = "/msi/token"


# Settings azure-identity (and proxies) would pick up from the developer's environment: tests
# that drive the real credentials against the fakes remove them first.
AZURE_CREDENTIAL_ENV = (
    "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_AUTHORITY_HOST", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "WEBSITE_INSTANCE_ID", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


class FakeIdentityEndpoint:
    def __init__(self, *, header_secret: str = "fake-identity-header", lifetime_seconds: int = 3600) -> None:
        self.header_secret = header_secret
        self.lifetime_seconds = lifetime_seconds
        self.refresh_in: int | None = None
        """When set, sent as `refresh_in`: 0 defeats azure-identity's own token cache."""
        self.fail_status: int | None = None
        self.requests = 0
        self.by_resource: Counter[str] = Counter()
        self.client_ids: list[str | None] = []
        self.issued: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def env(self) -> dict[str, str]:
        """The app settings App Service sets for its managed identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header_secret}

    def valid(self, token: str) -> bool:
        return token in self.issued

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(PATH, self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _token(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("X-IDENTITY-HEADER") != self.header_secret:
            return web.json_response({"error": "invalid_request", "error_description": "bad header"}, status=401)
        if request.query.get("api-version") != API_VERSION or not request.query.get("resource"):
            return web.json_response({"error": "invalid_request", "error_description": "bad query"}, status=400)
        if self.fail_status is not None:
            return web.json_response({"error": "unavailable"}, status=self.fail_status)
        resource = request.query["resource"]
        self.by_resource[resource] += 1
        self.client_ids.append(request.query.get("client_id"))
        token = f"fake-access-token-{self.requests}"
        self.issued.add(token)
        body = {
            "access_token": token,
            "expires_on": str(int(time.time()) + self.lifetime_seconds),
            "resource": resource,
            "token_type": "Bearer",
        }
        if self.refresh_in is not None:
            body["refresh_in"] = self.refresh_in  # a number, as Entra sends it
        return web.json_response(body)
