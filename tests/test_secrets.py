"""Provider keys: app settings, Key Vault through managed identity, Entra ID tokens.

The real `SecretClient` and the real azure-identity credentials talk to fakes on 127.0.0.1
(tests/fakes/keyvault.py over HTTPS with a throwaway certificate, tests/fakes/identity.py).
Caches and backoff run on an injected clock: no test sleeps for a TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.secrets import (
    EntraTokenProvider,
    EnvSecretProvider,
    KeyVaultSecretProvider,
    RedactingFilter,
    SecretRegistry,
    SecretsConfigError,
    SecretsSettings,
    SecretUnavailable,
    TokenUnavailable,
    build_secret_provider,
    redact,
)
from shared.secrets.keyvault import retry_after_seconds
from tests.certs import make_self_signed
from tests.fakes.identity import AZURE_CREDENTIAL_ENV, FakeIdentityEndpoint
from tests.fakes.keyvault import FakeKeyVault

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary-Zq7xW2-do-not-leak-5e1f0c9b8a7d"
AZURE_ENV = AZURE_CREDENTIAL_ENV
VAULT_RESOURCE = "https://vault.azure.net"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("kv-tls"))


@pytest.fixture
async def identity(monkeypatch):
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    fake = FakeIdentityEndpoint()
    await fake.start()
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    yield fake
    await fake.stop()


@pytest.fixture
async def vault(cert, identity):
    fake = FakeKeyVault(cert, identity.valid)
    fake.set_secret("openai-key", CANARY)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def make_kv(vault, cert, clock):
    from azure.identity.aio import ManagedIdentityCredential

    made: list[KeyVaultSecretProvider] = []

    def make(**kwargs) -> KeyVaultSecretProvider:
        kwargs.setdefault("ttl", 300)
        kwargs.setdefault("max_stale", 3600)
        kwargs.setdefault("clock", clock)
        provider = KeyVaultSecretProvider(
            vault.url,
            ManagedIdentityCredential(),
            verify_challenge_resource=False,
            client_kwargs={"connection_verify": str(cert.cert_path)},
            owns_credential=True,
            **kwargs,
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


# -- Key Vault: cache, single flight ---------------------------------------------------------


async def test_first_read_answers_challenge_then_cache_hit_makes_no_vault_call(make_kv, vault, identity, clock):
    kv = make_kv()
    assert await kv.get("openai-key") == CANARY
    assert vault.challenges == 1 and vault.reads["openai-key"] == 1
    assert identity.by_resource[VAULT_RESOURCE] == 1
    requests = vault.requests
    for _ in range(20):
        clock.advance(10)
        assert await kv.get("openai-key") == CANARY
    assert vault.requests == requests
    st = kv.status()["openai-key"]
    assert st["cached"] and st["fresh"] and st["age_seconds"] == 200 and st["last_error"] is None


async def test_fifty_concurrent_misses_make_one_vault_read(make_kv, vault):
    kv = make_kv()
    values = await asyncio.gather(*(kv.get("openai-key") for _ in range(50)))
    assert values == [CANARY] * 50
    assert vault.reads["openai-key"] == 1


async def test_expired_entry_is_read_again(make_kv, vault, clock):
    kv = make_kv(ttl=60)
    await kv.get("openai-key")
    clock.advance(61)
    await asyncio.gather(*(kv.get("openai-key") for _ in range(10)))
    assert vault.reads["openai-key"] == 2


# -- Key Vault: failures, staleness, backoff ---------------------------------------------------


async def test_vault_down_keeps_serving_cached_value_and_backs_off(make_kv, vault, clock):
    kv = make_kv(ttl=60, backoff_initial=2)
    await kv.get("openai-key")
    await vault.stop()
    clock.advance(61)
    assert await kv.get("openai-key") == CANARY  # stale, from memory
    st = kv.status()["openai-key"]
    assert st["cached"] and not st["fresh"] and st["last_error"]["type"]
    assert st["backoff_seconds"] == 2

    await vault.start()  # same port: any call now would be counted
    requests = vault.requests
    clock.advance(1)
    assert await kv.get("openai-key") == CANARY
    assert vault.requests == requests  # backing off: no call
    clock.advance(2)
    await kv.get("openai-key")
    assert vault.reads["openai-key"] == 2
    assert kv.status()["openai-key"]["last_error"] is None


@pytest.mark.parametrize(
    "status, retry_after, first_wait, second_wait",
    [(429, "30", 30, 30), (503, "30", 30, 30), (500, None, 1, 2)],
)
async def test_vault_throttling_serves_cached_value_and_backs_off(
    make_kv, vault, clock, status, retry_after, first_wait, second_wait
):
    kv = make_kv(ttl=60, backoff_initial=1)
    await kv.get("openai-key")
    vault.fail_status, vault.retry_after = status, retry_after
    clock.advance(61)
    assert await kv.get("openai-key") == CANARY
    assert vault.faults == 1
    assert kv.status()["openai-key"]["backoff_seconds"] == first_wait
    clock.advance(first_wait - 0.5)
    for _ in range(10):
        assert await kv.get("openai-key") == CANARY
    assert vault.faults == 1  # no vault call while backing off
    clock.advance(1)
    assert await kv.get("openai-key") == CANARY
    assert vault.faults == 2
    assert kv.status()["openai-key"]["backoff_seconds"] == second_wait  # Retry-After, or doubled
    vault.heal()
    clock.advance(31)
    await kv.get("openai-key")
    assert vault.reads["openai-key"] == 2
    assert kv.status()["openai-key"]["backoff_seconds"] == 0


async def test_retry_after_is_capped(make_kv, vault, clock):
    kv = make_kv(ttl=60, retry_after_max=120)
    await kv.get("openai-key")
    vault.throttle(retry_after="7200")
    clock.advance(61)
    await kv.get("openai-key")
    assert kv.status()["openai-key"]["backoff_seconds"] == 120


async def test_max_stale_exceeded_fails_closed(make_kv, vault, clock):
    kv = make_kv(ttl=10, max_stale=100)
    await kv.get("openai-key")
    await vault.stop()
    clock.advance(50)
    assert await kv.get("openai-key") == CANARY
    clock.advance(60)  # age 110 > max_stale; backoff long over
    with pytest.raises(SecretUnavailable) as err:
        await kv.get("openai-key")
    assert "openai-key" in str(err.value) and "max_stale" in str(err.value)
    assert kv.status()["openai-key"]["cached"] is False


async def test_never_resolved_secret_fails_closed_when_vault_down(make_kv, vault):
    kv = make_kv()
    await vault.stop()
    with pytest.raises(SecretUnavailable) as err:
        await kv.get("openai-key")
    assert err.value.name == "openai-key" and "vault read failed" in err.value.reason


async def test_unknown_secret_fails_closed_and_is_not_hammered(make_kv, vault, clock):
    kv = make_kv(refresh_min_interval=5)
    with pytest.raises(SecretUnavailable, match="not found"):
        await kv.get("missing-key")
    with pytest.raises(SecretUnavailable):
        await kv.get("missing-key")
    assert vault.reads["missing-key"] == 1
    clock.advance(6)
    vault.set_secret("missing-key", "now-it-exists-123")
    assert await kv.get("missing-key") == "now-it-exists-123"


async def test_deleted_secret_drops_cached_value(make_kv, vault, clock):
    kv = make_kv(ttl=10)
    await kv.get("openai-key")
    del vault.secrets["openai-key"]
    clock.advance(11)
    with pytest.raises(SecretUnavailable, match="not found"):
        await kv.get("openai-key")
    assert kv.status()["openai-key"]["cached"] is False


@pytest.mark.parametrize("bad", ["   ", "changeme", "<your-openai-key>"])
async def test_placeholder_in_vault_fails_closed(make_kv, vault, bad):
    vault.set_secret("openai-key", bad)
    kv = make_kv()
    with pytest.raises(SecretUnavailable, match="rejected"):
        await kv.get("openai-key")


async def test_slow_vault_times_out_into_stale_value(make_kv, vault, clock):
    kv = make_kv(ttl=10, call_timeout=0.1)
    await kv.get("openai-key")
    vault.delay_seconds = 0.4
    clock.advance(11)
    started = time.monotonic()
    assert await kv.get("openai-key") == CANARY
    assert time.monotonic() - started < 0.35
    assert kv.status()["openai-key"]["last_error"]["type"] == "TimeoutError"


# -- rotation ------------------------------------------------------------------------------


async def test_refresh_returns_rotated_value_and_a_burst_makes_one_read(make_kv, vault, clock):
    kv = make_kv(ttl=300, refresh_min_interval=5)
    assert await kv.get("openai-key") == CANARY
    old_version = kv.status()["openai-key"]["version"]
    vault.set_secret("openai-key", "rotated-value-0123456789")
    clock.advance(6)
    assert await kv.get("openai-key") == CANARY  # still fresh: the cache does not know yet
    values = await asyncio.gather(*(kv.refresh("openai-key") for _ in range(30)))
    assert set(values) == {"rotated-value-0123456789"}
    assert vault.reads["openai-key"] == 2
    for _ in range(30):  # stragglers of the same burst of 401s
        await kv.refresh("openai-key")
    assert vault.reads["openai-key"] == 2
    assert await kv.get("openai-key") == "rotated-value-0123456789"
    assert kv.status()["openai-key"]["version"] != old_version
    clock.advance(6)
    await kv.refresh("openai-key")
    assert vault.reads["openai-key"] == 3


async def test_refresh_while_vault_down_serves_cached_value(make_kv, vault, clock):
    kv = make_kv()
    await kv.get("openai-key")
    await vault.stop()
    clock.advance(6)
    assert await kv.refresh("openai-key") == CANARY


# -- settings and building ---------------------------------------------------------------------


def test_settings_from_config_section_and_app_settings():
    s = SecretsSettings.from_config(
        {"source": "keyvault", "managed_identity_client_id": "cid", "cache_ttl_seconds": 60},
        {"LLM_KEYVAULT_URL": "https://kv-x.vault.azure.net", "AZURE_CLIENT_ID": "other"},
    )
    assert (s.source, s.vault_url, s.client_id, s.cache_ttl_seconds) == (
        "keyvault", "https://kv-x.vault.azure.net", "cid", 60.0)
    assert s.max_stale_seconds == 86400 and s.refresh_min_interval_seconds == 5 and not s.insecure_dev_mode
    s = SecretsSettings.from_config(None, {"LLM_KEYVAULT_URL": "https://a.vault.azure.net", "AZURE_CLIENT_ID": "u"})
    assert (s.source, s.client_id) == ("keyvault", "u")
    assert SecretsSettings.from_config(None, {}).source == "env"


@pytest.mark.parametrize(
    "section, env, needle",
    [
        ({"source": "keyvault"}, {}, "LLM_KEYVAULT_URL"),
        ({"source": "vault"}, {}, "'vault'"),
        ({"vault_url": "http://kv.vault.azure.net"}, {}, "https://"),
        ({"source": "env", "cache_ttl_seconds": "soon"}, {}, "'soon'"),
        ({"source": "env", "cache_ttl_seconds": 600, "max_stale_seconds": 60}, {}, "max_stale_seconds"),
        ({"source": "env", "vault": "x"}, {}, "unknown key"),
        ({"vault_url": "https://kv.vault.azure.net"}, {"LLM_KEYVAULT_INSECURE_DEV_MODE": "1"}, "loopback"),
        ({"vault_url": "https://127.0.0.1:1"}, {"LLM_KEYVAULT_INSECURE_DEV_MODE": "1", "WEBSITE_INSTANCE_ID": "i"},
         "refused on Azure"),
    ],
)
def test_settings_errors_name_the_setting(section, env, needle):
    with pytest.raises(SecretsConfigError) as err:
        SecretsSettings.from_config(section, env)
    assert needle in str(err.value)


async def test_build_env_provider():
    provider = build_secret_provider(SecretsSettings.from_config({"source": "env"}, {}), {"OPENAI_KEY": "sk-abcdef"})
    assert isinstance(provider, EnvSecretProvider)
    assert await provider.get("openai-key") == "sk-abcdef"


async def test_build_keyvault_provider_end_to_end_in_dev_mode(vault, cert, identity, clock):
    env = {
        "LLM_KEYVAULT_URL": vault.url,
        "LLM_KEYVAULT_INSECURE_DEV_MODE": "1",
        "LLM_KEYVAULT_CA_BUNDLE": str(cert.cert_path),
    }
    provider = build_secret_provider(SecretsSettings.from_config({"cache_ttl_seconds": 60}, env), env, clock=clock)
    try:
        assert isinstance(provider, KeyVaultSecretProvider)
        assert await provider.get("openai-key") == CANARY  # DefaultAzureCredential -> managed identity
        assert identity.by_resource[VAULT_RESOURCE] == 1
    finally:
        await provider.close()


async def test_challenge_resource_is_verified_without_dev_mode(vault, cert, clock):
    env = {"LLM_KEYVAULT_URL": vault.url, "LLM_KEYVAULT_CA_BUNDLE": str(cert.cert_path)}
    provider = build_secret_provider(SecretsSettings.from_config(None, env), env, clock=clock)
    try:
        with pytest.raises(SecretUnavailable, match="openai-key"):
            await provider.get("openai-key")
        assert vault.reads["openai-key"] == 0
    finally:
        await provider.close()


async def test_user_assigned_identity_sends_client_id(vault, cert, identity, clock):
    env = {"LLM_KEYVAULT_URL": vault.url, "LLM_KEYVAULT_INSECURE_DEV_MODE": "1",
           "LLM_KEYVAULT_CA_BUNDLE": str(cert.cert_path), "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}
    provider = build_secret_provider(SecretsSettings.from_config(None, env), env, clock=clock)
    try:
        assert await provider.get("openai-key") == CANARY
        assert identity.client_ids == ["11111111-2222-3333-4444-555555555555"]
    finally:
        await provider.close()


async def test_closed_provider_fails_closed(make_kv, vault):
    kv = make_kv(ttl=10)
    await kv.close()
    with pytest.raises(SecretUnavailable, match="closed"):
        await kv.get("openai-key")
    assert vault.reads["openai-key"] == 0


def test_importing_the_package_imports_no_azure_sdk():
    code = (
        "import sys, shared.secrets, shared.secrets.settings;"
        "bad=[m for m in sys.modules if m.startswith(('azure', 'aiohttp'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


# -- environment provider ----------------------------------------------------------------------


async def test_env_exact_name_then_upper_snake():
    provider = EnvSecretProvider({"azure-openai-key": "exact-123456", "MISTRAL_API_KEY": "snake-123456"})
    assert await provider.get("azure-openai-key") == "exact-123456"
    assert await provider.get("mistral-api-key") == "snake-123456"
    assert await provider.refresh("mistral-api-key") == "snake-123456"
    assert provider.status()["mistral-api-key"]["setting"] == "MISTRAL_API_KEY"


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "no app setting"),
        ("", "empty"),
        ("   \t", "empty"),
        ("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/openai-key/)", "Key Vault reference"),
        ("@Microsoft.KeyVault(VaultName=kv;SecretName=openai-key)", "Key Vault reference"),
        ("<your-openai-key>", "placeholder"),
        ("changeme", "placeholder"),
        ("CHANGEME", "placeholder"),
        ("${OPENAI_KEY}", "placeholder"),
    ],
)
async def test_env_fails_closed(value, reason):
    env = {} if value is None else {"OPENAI_KEY": value}
    provider = EnvSecretProvider(env)
    with pytest.raises(SecretUnavailable) as err:
        await provider.get("openai-key")
    assert "openai-key" in str(err.value) and reason in str(err.value)
    assert provider.status()["openai-key"]["cached"] is False


# -- Entra ID tokens ----------------------------------------------------------------------------


@pytest.fixture
async def entra(identity):
    from azure.identity.aio import ManagedIdentityCredential

    identity.refresh_in = 0  # switch off azure-identity's own cache: count OUR caching
    wall = FakeClock(time.time())
    provider = EntraTokenProvider(ManagedIdentityCredential(), clock=wall, owns_credential=True)
    yield provider, wall
    await provider.close()


async def test_entra_token_cached_and_refreshed_before_expiry(entra, identity):
    provider, wall = entra
    resource = "https://cognitiveservices.azure.com"
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    tokens += [await provider.token() for _ in range(20)]
    assert len(set(tokens)) == 1 and identity.by_resource[resource] == 1
    wall.advance(3600 - 301)  # 301 s before expiry: still cached
    assert await provider.token() == tokens[0] and identity.by_resource[resource] == 1
    wall.advance(2)  # 299 s before expiry: refreshed
    fresh = await asyncio.gather(*(provider.token() for _ in range(10)))
    assert identity.by_resource[resource] == 2 and set(fresh) != {tokens[0]} and len(set(fresh)) == 1


class _FlakyCredential:
    """A credential double for failure paths (azure-identity would retry with real sleeps)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.calls, self.fail = clock, 0, False

    async def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import ClientAuthenticationError

        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("identity endpoint unavailable")
        return AccessToken(f"{CANARY}-token-{self.calls}", int(self.clock() + 3600))


async def test_entra_refresh_failure_serves_valid_token_then_fails_closed(caplog):
    caplog.set_level(logging.DEBUG)
    wall = FakeClock(1_700_000_000)
    cred = _FlakyCredential(wall)
    provider = EntraTokenProvider(cred, clock=wall, retry_interval=10)
    first = await provider.token()
    cred.fail = True
    wall.advance(3600 - 100)  # inside the refresh margin, token still valid
    assert await provider.token() == first
    assert await provider.token() == first and cred.calls == 2  # no retry within retry_interval
    wall.advance(11)
    assert await provider.token() == first and cred.calls == 3
    wall.advance(100)  # expired
    with pytest.raises(TokenUnavailable) as err:
        await provider.token()
    assert "cognitiveservices" in str(err.value) and CANARY not in str(err.value)
    assert CANARY not in repr(provider) + json.dumps(provider.status()) + caplog.text


# -- redaction and the canary ---------------------------------------------------------------------


def test_redacting_filter_masks_registered_values():
    registry = SecretRegistry()
    registry.add("sk-live-abcdef123456")
    registry.add("abc")  # too short to register
    assert redact("key=sk-live-abcdef123456 abc", registry) == "key=*** abc"
    logger = logging.getLogger("tests.redact")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter(registry))
    logger.addHandler(handler)
    try:
        logger.warning("sending %s", "Bearer sk-live-abcdef123456")
        try:
            raise RuntimeError("bad key sk-live-abcdef123456")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "sending Bearer ***"
    assert "sk-live" not in "".join(records) and "RuntimeError: bad key ***" in records[1]
    assert "sk-live" not in repr(registry)


async def test_canary_value_never_leaks(make_kv, vault, identity, clock, caplog):
    """Every path: success, cache, refresh, throttled, down, stale, max_stale, not found, env."""
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "azure.core", "azure.identity", "azure.keyvault", "shared.secrets"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []
    kv = make_kv(ttl=10, max_stale=100)

    async def attempt(coro):
        try:
            return await coro
        except SecretUnavailable as exc:
            seen.extend([str(exc), repr(exc), exc.reason])
            return None

    assert await attempt(kv.get("openai-key")) == CANARY
    await attempt(kv.get("openai-key"))
    vault.set_secret("openai-key", CANARY + "-v2")
    clock.advance(6)
    await attempt(kv.refresh("openai-key"))
    vault.throttle("20")
    clock.advance(11)
    await attempt(kv.get("openai-key"))
    vault.fail_status = 500
    clock.advance(30)
    await attempt(kv.get("openai-key"))
    vault.heal()
    await vault.stop()
    clock.advance(60)
    await attempt(kv.get("openai-key"))
    clock.advance(60)
    await attempt(kv.get("openai-key"))  # max_stale exceeded
    await vault.start()
    await attempt(kv.get("no-such-secret"))
    for bad in ("", f"@Microsoft.KeyVault(SecretUri=https://kv/secrets/{CANARY})", f"<{CANARY}>"):
        await attempt(EnvSecretProvider({"OPENAI_KEY": bad}).get("openai-key"))
    env_provider = EnvSecretProvider({"OPENAI_KEY": CANARY})
    await attempt(env_provider.get("openai-key"))

    assert len(seen) >= 3 and caplog.records
    seen += [json.dumps(kv.status()), repr(kv), json.dumps(env_provider.status()), repr(env_provider)]
    seen += [repr(e) for e in kv._entries.values()]
    handler_text = [logging.Formatter().format(r) for r in caplog.records]
    assert any(r.name.startswith("azure") for r in caplog.records)
    for text in seen + handler_text:
        assert CANARY not in text, text


def test_retry_after_headers():
    class R:
        def __init__(self, headers):
            self.headers = headers

    assert retry_after_seconds(R({"Retry-After": "12"})) == 12
    assert retry_after_seconds(R({"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(R({"x-ms-retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(R({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), now=lambda: 1445412480 - 30) == 30
    assert retry_after_seconds(R({"Retry-After": "soon"})) is None
    assert retry_after_seconds(R({})) is None
    assert retry_after_seconds(None) is None
