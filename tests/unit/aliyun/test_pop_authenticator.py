"""PopAuthenticator and NonceStore: the policy, signature, timestamp window, replay and rights checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from methodhub.auth import NonceStore
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.signing import pop_timestamp, sign_pop_request
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import AccessPolicy, Right, SqliteRegistry

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def owner(registry: SqliteRegistry) -> AccessPolicy:
    policy = await registry.get_policy("iothubowner")
    assert policy is not None
    return policy


def signed(
    policy: AccessPolicy, *, key: str | None = None, nonce: str = "n-1", at: float = NOW
) -> dict[str, str]:
    params = {"Action": "RRpc", "Version": "2018-01-20", "ProductKey": "a1PK", "RegionId": "cn-shanghai"}
    return sign_pop_request(
        "POST", params, policy.name, key or policy.keys.primary, nonce=nonce, timestamp=pop_timestamp(at)
    )


async def refused(
    auth: PopAuthenticator, params: dict[str, str], right: Right = Right.SERVICE_CONNECT
) -> HubError:
    with pytest.raises(HubError) as raised:
        await auth.authenticate("POST", params, right)
    return raised.value


async def test_primary_and_secondary_keys_sign(registry: SqliteRegistry, owner: AccessPolicy) -> None:
    auth = PopAuthenticator(registry, clock=Clock())
    assert await auth.authenticate("POST", signed(owner), Right.SERVICE_CONNECT) == "iothubowner"
    assert await auth.authenticate(
        "POST", signed(owner, key=owner.keys.secondary, nonce="n-2"), Right.REGISTRY_WRITE
    )


async def test_signature_covers_method_and_every_parameter(
    registry: SqliteRegistry, owner: AccessPolicy
) -> None:
    auth = PopAuthenticator(registry, clock=Clock())
    error = await refused(auth, signed(owner, key="not-the-key"))
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH
    assert error.message.split(":", 1)[1].startswith("POST&%2F&AccessKeyId%3Diothubowner")
    tampered = {**signed(owner, nonce="n-3"), "ProductKey": "a1Other"}
    assert (await refused(auth, tampered)).kind is ErrorKind.SIGNATURE_MISMATCH
    with pytest.raises(HubError) as raised:
        await auth.authenticate("GET", signed(owner, nonce="n-4"), Right.SERVICE_CONNECT)
    assert raised.value.kind is ErrorKind.SIGNATURE_MISMATCH


async def test_replay_is_refused_until_the_request_expires(
    registry: SqliteRegistry, owner: AccessPolicy
) -> None:
    clock = Clock()
    auth = PopAuthenticator(registry, clock=clock, window=900)
    params = signed(owner)
    await auth.authenticate("POST", params, Right.SERVICE_CONNECT)
    assert (await refused(auth, params)).kind is ErrorKind.REQUEST_REPLAYED
    clock.now += 899
    assert (await refused(auth, params)).kind is ErrorKind.REQUEST_REPLAYED
    clock.now += 2  # the request is now expired: refused as such, and its nonce forgotten
    assert (await refused(auth, params)).kind is ErrorKind.REQUEST_EXPIRED
    # The same nonce under another policy is another nonce.
    service = await registry.get_policy("service")
    assert service is not None
    assert await auth.authenticate("POST", signed(service, at=clock.now), Right.SERVICE_CONNECT) == "service"


async def test_a_request_replayed_to_another_worker_is_refused(tmp_path: Path, owner: AccessPolicy) -> None:
    """Two processes (``--workers 2``) have their own memory but share the registry's nonces."""
    workers = [SqliteRegistry(tmp_path / "registry.db") for _ in range(2)]
    for reg in workers:
        await reg.open()
    try:
        first, second = (PopAuthenticator(reg, clock=Clock()) for reg in workers)
        params = signed(owner, nonce="shared-1")
        assert await first.authenticate("POST", params, Right.SERVICE_CONNECT) == "iothubowner"
        assert (await refused(second, params)).kind is ErrorKind.REQUEST_REPLAYED
    finally:
        for reg in workers:
            await reg.close()


@pytest.mark.parametrize("skew", [-901, 901])
async def test_timestamp_window(registry: SqliteRegistry, owner: AccessPolicy, skew: float) -> None:
    auth = PopAuthenticator(registry, clock=Clock(), window=900)
    error = await refused(auth, signed(owner, at=NOW + skew))
    assert error.kind is ErrorKind.REQUEST_EXPIRED
    assert ("ahead of" if skew > 0 else "behind") in error.message
    assert await auth.authenticate("POST", signed(owner, at=NOW - 899, nonce="n-5"), Right.SERVICE_CONNECT)


async def test_form_checks(registry: SqliteRegistry, owner: AccessPolicy) -> None:
    auth = PopAuthenticator(registry, clock=Clock())
    for name in (
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "Timestamp",
        "SignatureMethod",
        "SignatureVersion",
    ):
        params = signed(owner)
        del params[name]
        error = await refused(auth, params)
        assert error.kind is ErrorKind.MISSING_ARGUMENT and f'"{name}"' in error.message
    for name, value in (
        ("SignatureMethod", "HMAC-SHA256"),
        ("SignatureVersion", "2.0"),
        ("Timestamp", "2027-01-15 08:00:00"),
        ("SignatureNonce", "x" * 129),
    ):
        assert (await refused(auth, {**signed(owner), name: value})).kind is ErrorKind.MALFORMED_REQUEST


async def test_unknown_access_key_and_missing_right(registry: SqliteRegistry, owner: AccessPolicy) -> None:
    auth = PopAuthenticator(registry, clock=Clock())
    stranger = AccessPolicy("stranger", owner.keys, owner.rights)
    assert (await refused(auth, signed(stranger))).kind is ErrorKind.UNAUTHORIZED
    reader = await registry.get_policy("registryRead")
    assert reader is not None
    error = await refused(auth, signed(reader), Right.SERVICE_CONNECT)
    assert error.kind is ErrorKind.ACCESS_DENIED and "ServiceConnect" in error.message


async def test_policies_are_cached_until_invalidated(registry: SqliteRegistry, owner: AccessPolicy) -> None:
    auth = PopAuthenticator(registry, clock=Clock())
    params = signed(owner)
    assert auth.cached_policy(params) is None
    await auth.authenticate("POST", params, Right.SERVICE_CONNECT)
    cached = auth.cached_policy(params)
    assert cached == owner
    assert (
        await auth.verify("POST", signed(owner, nonce="n-6"), Right.SERVICE_CONNECT, cached) == "iothubowner"
    )
    auth.invalidate_policy("iothubowner")
    assert auth.cached_policy(params) is None


def test_nonce_store_remembers_until_expiry_and_refuses_when_full() -> None:
    store = NonceStore(max_entries=2)
    assert store.use("a", expires_at=10, now=0)
    assert not store.use("a", expires_at=10, now=5)
    assert store.use("b", expires_at=20, now=5)
    with pytest.raises(HubError) as raised:
        store.use("c", expires_at=20, now=5)
    assert raised.value.kind is ErrorKind.SERVICE_UNAVAILABLE
    assert store.use("c", expires_at=30, now=10)  # "a" expired and made room
    assert store.use("a", expires_at=30, now=20)  # ... and may be used again ("b" expired too)
    assert len(store) == 2
