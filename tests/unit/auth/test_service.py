"""ServiceAuthenticator against a real SQLite registry: policy tokens as the service SDKs send them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

import methodhub.dialects.azure.service_auth as service_module
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import AccessPolicy, Right, SqliteRegistry, SymmetricKeys
from tests.support import sign

HOST = "myhub.example.com"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    await reg.ensure_default_policies()
    yield reg
    await reg.close()


@pytest.fixture
def auth(registry: SqliteRegistry) -> ServiceAuthenticator:
    return ServiceAuthenticator(registry, HOST)


async def policy(registry: SqliteRegistry, name: str) -> AccessPolicy:
    found = await registry.get_policy(name)
    assert found is not None
    return found


def token_for(p: AccessPolicy, *, resource: str = HOST, ttl: int = 3600, secondary: bool = False) -> str:
    key = p.keys.secondary if secondary else p.keys.primary
    return sign(resource, key, int(time.time()) + ttl, p.name, quoted=False)  # service SDK: quote_plus


def _hmac(sr: str, expiry: int, key: str) -> str:
    digest = hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def refused(auth: ServiceAuthenticator, header: str | None, host: str | None = None) -> str:
    with pytest.raises(HubError) as info:
        await auth.authenticate(header, host, Right.SERVICE_CONNECT)
    assert info.value.kind is ErrorKind.UNAUTHORIZED
    return info.value.message


# -- accepted ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["service", "iothubowner"])
async def test_policy_with_service_connect_is_accepted(
    auth: ServiceAuthenticator, registry: SqliteRegistry, name: str
) -> None:
    header = token_for(await policy(registry, name))
    assert await auth.authenticate(header, HOST, Right.SERVICE_CONNECT) == name


async def test_secondary_key_is_accepted(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"), secondary=True)
    assert await auth.authenticate(header, None, Right.SERVICE_CONNECT) == "service"


async def test_both_sdk_flavours_are_accepted(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    p = await policy(registry, "service")
    expiry = int(time.time()) + 3600
    device_sdk_style = sign(HOST, p.keys.primary, expiry, "service", quoted=True)
    methodhub_style = generate_sas_token(HOST, p.keys.primary, expiry, "service")
    for header in (device_sdk_style, methodhub_style):
        assert await auth.authenticate(header, HOST, Right.SERVICE_CONNECT) == "service"


async def test_audience_is_case_insensitive(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"), resource="MyHub.Example.COM")
    assert await auth.authenticate(header, HOST, Right.SERVICE_CONNECT) == "service"


async def test_hostname_configured_in_mixed_case(registry: SqliteRegistry) -> None:
    auth = ServiceAuthenticator(registry, "MyHub.Example.com")
    header = token_for(await policy(registry, "service"))
    assert await auth.authenticate(header, None, Right.SERVICE_CONNECT) == "service"


@pytest.mark.parametrize("quoter", [quote_plus, lambda s: quote(s, safe=""), lambda s: quote(s).lower()])
async def test_audience_with_the_port_the_client_used(
    auth: ServiceAuthenticator, registry: SqliteRegistry, quoter: object
) -> None:
    p = await policy(registry, "service")
    expiry = int(time.time()) + 3600
    sr = quoter(f"{HOST}:8443")  # type: ignore[operator]
    header = f"SharedAccessSignature sr={sr}&sig={quote(_hmac(sr, expiry, p.keys.primary), safe='')}"
    header += f"&se={expiry}&skn=service"
    assert await auth.authenticate(header, f"{HOST}:8443", Right.SERVICE_CONNECT) == "service"


@pytest.mark.parametrize("port", [443, 80])
async def test_audience_with_a_default_port_that_the_host_header_leaves_out(
    auth: ServiceAuthenticator, registry: SqliteRegistry, port: int
) -> None:
    """azure-iot-hub with HostName=hub:443 signs sr=hub%3A443; requests sends Host: hub."""
    p = await policy(registry, "service")
    expiry = int(time.time()) + 3600
    sr = quote_plus(f"{HOST}:{port}")
    header = f"SharedAccessSignature sr={sr}&sig={quote(_hmac(sr, expiry, p.keys.primary), safe='')}"
    header += f"&se={expiry}&skn=service"
    assert await auth.authenticate(header, HOST, Right.SERVICE_CONNECT) == "service"
    # ...but another port is only accepted when the Host header names it
    sr = quote_plus(f"{HOST}:8443")
    other = f"SharedAccessSignature sr={sr}&sig={quote(_hmac(sr, expiry, p.keys.primary), safe='')}"
    other += f"&se={expiry}&skn=service"
    with pytest.raises(HubError):
        await auth.authenticate(other, HOST, Right.SERVICE_CONNECT)


async def test_header_whitespace_is_tolerated(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"))
    assert await auth.authenticate(f"  {header} ", HOST, Right.SERVICE_CONNECT) == "service"


# -- refused ------------------------------------------------------------------------------------------------


async def test_missing_header(auth: ServiceAuthenticator) -> None:
    assert "No Authorization header" in await refused(auth, None)
    assert "No Authorization header" in await refused(auth, "")


@pytest.mark.parametrize(
    "header",
    ["Bearer abc", "SharedAccessSignature garbage", "SharedAccessSignature sr=h&sig=x&se=²&skn=service"],
)
async def test_malformed_header(auth: ServiceAuthenticator, header: str) -> None:
    assert "not a valid SAS token" in await refused(auth, header)


async def test_policy_without_the_right_is_refused(
    auth: ServiceAuthenticator, registry: SqliteRegistry
) -> None:
    for name in ("registryRead", "registryReadWrite", "device"):
        message = await refused(auth, token_for(await policy(registry, name)))
        assert name in message
        assert "ServiceConnect" in message


async def test_right_is_checked_per_request(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "registryRead"))
    assert await auth.authenticate(header, HOST, Right.REGISTRY_READ) == "registryRead"
    with pytest.raises(HubError) as info:  # now cached; the right still matters
        await auth.authenticate(header, HOST, Right.REGISTRY_WRITE)
    assert info.value.kind is ErrorKind.UNAUTHORIZED
    assert "RegistryWrite" in info.value.message


async def test_unknown_policy_is_refused(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    p = await policy(registry, "service")
    header = sign(HOST, p.keys.primary, int(time.time()) + 3600, "nosuchpolicy", quoted=False)
    assert "No shared access policy named 'nosuchpolicy'" in await refused(auth, header)


async def test_device_token_without_skn_is_refused(
    auth: ServiceAuthenticator, registry: SqliteRegistry
) -> None:
    p = await policy(registry, "service")
    header = sign(HOST, p.keys.primary, int(time.time()) + 3600)
    assert "skn" in await refused(auth, header)


async def test_wrong_key_is_refused(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    owner = await policy(registry, "iothubowner")
    header = sign(HOST, owner.keys.primary, int(time.time()) + 3600, "service", quoted=False)
    assert "signature does not match policy 'service'" in await refused(auth, header)


async def test_tampered_signature_is_refused(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"))
    sig = header.split("sig=")[1].split("&")[0]
    tampered = header.replace(sig, ("B" if sig[0] == "A" else "A") + sig[1:])
    assert "signature does not match" in await refused(auth, tampered)


async def test_expired_token_is_refused(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"), ttl=-1)
    assert "expired" in await refused(auth, header)


@pytest.mark.parametrize(
    ("resource", "host_header"),
    [
        ("otherhub.example.com", HOST),
        (f"{HOST}/devices/dev1", HOST),  # a device-scoped resource is not the hub
        (f"{HOST}:8443", None),  # a port is only accepted when the client used it
        (f"{HOST}:8443", f"{HOST}:9443"),
        ("evil.example.com:8443", "evil.example.com:8443"),  # Host header of another name
    ],
)
async def test_wrong_audience_is_refused(
    auth: ServiceAuthenticator, registry: SqliteRegistry, resource: str, host_header: str | None
) -> None:
    header = token_for(await policy(registry, "service"), resource=resource)
    message = await refused(auth, header, host_header)
    assert f"this hub is '{HOST}'" in message


# -- the cache -----------------------------------------------------------------------------------------------


async def test_cached_after_authentication(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    header = token_for(await policy(registry, "service"))
    assert auth.cached(header, Right.SERVICE_CONNECT) is None
    await auth.authenticate(header, HOST, Right.SERVICE_CONNECT)
    assert auth.cached(header, Right.SERVICE_CONNECT) == "service"
    assert auth.cached(header, Right.REGISTRY_WRITE) is None


async def test_refused_tokens_are_not_cached(auth: ServiceAuthenticator, registry: SqliteRegistry) -> None:
    owner = await policy(registry, "iothubowner")
    forged = sign(HOST, owner.keys.primary, int(time.time()) + 3600, "service", quoted=False)
    await refused(auth, forged)
    assert auth.cached(forged, Right.SERVICE_CONNECT) is None
    await refused(auth, forged)  # still refused the second time


async def test_a_token_refused_for_a_right_still_proves_its_policy(
    auth: ServiceAuthenticator, registry: SqliteRegistry
) -> None:
    header = token_for(await policy(registry, "registryRead"))
    await refused(auth, header)
    assert auth.cached(header, Right.SERVICE_CONNECT) is None
    assert await auth.authenticate(header, HOST, Right.REGISTRY_READ) == "registryRead"


async def test_cache_expires_with_the_token(
    auth: ServiceAuthenticator, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = token_for(await policy(registry, "service"), ttl=60)
    await auth.authenticate(header, HOST, Right.SERVICE_CONNECT)
    later = time.time() + 120
    monkeypatch.setattr(service_module, "time", types.SimpleNamespace(time=lambda: later))
    assert auth.cached(header, Right.SERVICE_CONNECT) is None
    assert "expired" in await refused(auth, header)


async def test_rotated_policy_key_refuses_old_token_once_invalidated(
    auth: ServiceAuthenticator, registry: SqliteRegistry
) -> None:
    old = await policy(registry, "service")
    old_header = token_for(old)
    assert await auth.authenticate(old_header, HOST, Right.SERVICE_CONNECT) == "service"

    # Rotate both keys as another writer would (the Registry interface has no policy update yet).
    new_keys = SymmetricKeys.generate()
    with sqlite3.connect(registry.path) as db:
        db.execute(
            "UPDATE policies SET primary_key = ?, secondary_key = ? WHERE name = 'service'",
            (new_keys.primary, new_keys.secondary),
        )
    db.close()
    assert (await policy(registry, "service")).keys == new_keys

    # Until told, the verified token stays cached (that is what the change feed is for) ...
    assert await auth.authenticate(old_header, HOST, Right.SERVICE_CONNECT) == "service"
    auth.invalidate_policy("service")
    assert auth.cached(old_header, Right.SERVICE_CONNECT) is None
    assert "signature does not match" in await refused(auth, old_header)
    new_header = token_for(AccessPolicy("service", new_keys, old.rights))
    assert await auth.authenticate(new_header, HOST, Right.SERVICE_CONNECT) == "service"


async def test_invalidating_one_policy_keeps_others_cached(
    auth: ServiceAuthenticator, registry: SqliteRegistry
) -> None:
    service = token_for(await policy(registry, "service"))
    owner = token_for(await policy(registry, "iothubowner"))
    await auth.authenticate(service, HOST, Right.SERVICE_CONNECT)
    await auth.authenticate(owner, HOST, Right.SERVICE_CONNECT)
    auth.invalidate_policy("service")
    assert auth.cached(service, Right.SERVICE_CONNECT) is None
    assert auth.cached(owner, Right.SERVICE_CONNECT) == "iothubowner"
