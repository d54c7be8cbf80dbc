"""The registry interface. Every backend (SQLite, PostgreSQL) implements exactly this."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from methodhub.calls.history import HistoryRow
from methodhub.calls.jobs import Job, JobStatus, JobType
from methodhub.calls.queued import CallFilters, CallState, CallUpdate, QueuedCall
from methodhub.query import Query
from methodhub.registry.model import (
    AccessPolicy,
    CertificateAuthority,
    Change,
    DeviceAuth,
    Identity,
    Right,
    SymmetricKeys,
)
from methodhub.registry.products import ProductDevice
from methodhub.registry.twins import Twin

T = TypeVar("T")

LIVE_CALL_STATES = "SELECT state, COUNT(*) FROM calls WHERE state IN ('queued', 'sent') GROUP BY state"
"""Both backends' :meth:`Registry.live_call_states` (the ``calls_due`` index answers it)."""


class Registry(ABC):
    """Identities, keys, access policies, persisted MQTT sessions and the change feed.

    Errors are :class:`~methodhub.errors.HubError`: ``DEVICE_ALREADY_EXISTS`` /
    ``MODULE_ALREADY_EXISTS``, ``DEVICE_NOT_FOUND`` / ``MODULE_NOT_FOUND``, ``PRECONDITION_FAILED``
    (etag mismatch), ``INVALID_ARGUMENT`` (bad id, status or key), ``SERVICE_UNAVAILABLE`` (the
    store cannot be reached right now, e.g. PostgreSQL is down; the same object works again once it
    is back).
    """

    timed: Callable[[str, float], None] | None = None
    """Told ``(operation kind, time.perf_counter() at its start)`` as each database operation ends
    (kinds: ``read``, ``write``): the hub's ``methodhub_registry_operation_duration_seconds``."""

    async def _timed(self, kind: str, operation: Awaitable[T]) -> T:
        """Await ``operation`` (a hop to the database thread or pool), telling :attr:`timed`."""
        started = time.perf_counter()
        try:
            return await operation
        finally:
            if self.timed is not None:
                self.timed(kind, started)

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply schema migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Write queued session changes (:meth:`flush_sessions`) and disconnect."""

    # -- identities ---------------------------------------------------------------------------------

    @abstractmethod
    async def get_identity(self, device_id: str, module_id: str | None = None) -> Identity | None: ...

    @abstractmethod
    async def create_identity(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        keys: SymmetricKeys | None = None,
        status: str = "enabled",
        status_reason: str | None = None,
        iot_edge: bool = False,
        auth: DeviceAuth | None = None,
    ) -> Identity:
        """Register a device (or a module of an existing device); keys are generated if None;
        ``auth`` None is SAS (``INVALID_ARGUMENT`` for bad thumbprints, or keys with X.509)."""

    @abstractmethod
    async def update_identity(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        etag: str | None = None,
        keys: SymmetricKeys | None = None,
        status: str | None = None,
        status_reason: str | None = None,
        auth: DeviceAuth | None = None,
    ) -> Identity:
        """Change keys, status and/or authentication (None keeps it; see
        :func:`~methodhub.registry.rules.apply_update`); ``etag`` None or ``"*"`` means
        unconditionally."""

    @abstractmethod
    async def delete_identity(
        self, device_id: str, module_id: str | None = None, *, etag: str | None = None
    ) -> None:
        """Delete an identity; deleting a device deletes its modules and persisted sessions."""

    @abstractmethod
    async def list_identities(
        self, device_id: str | None = None, *, limit: int = 1000, after: str | None = None
    ) -> list[Identity]:
        """Devices (``device_id`` None) or the modules of ``device_id``, ordered by id, after ``after``."""

    @abstractmethod
    async def count_devices(self) -> int: ...

    # -- queued calls (see calls.queued; registry.calls has the statements) ----------------------------

    @abstractmethod
    async def create_call(self, call: QueuedCall) -> tuple[QueuedCall, bool]: ...

    @abstractmethod
    async def create_calls(self, calls: Sequence[QueuedCall]) -> list[QueuedCall]: ...

    @abstractmethod
    async def get_call(self, call_id: str) -> QueuedCall | None: ...

    @abstractmethod
    async def list_calls(
        self,
        *,
        device_id: str | None = None,
        state: CallState | None = None,
        job_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
        filters: CallFilters | None = None,
    ) -> list[QueuedCall]: ...

    @abstractmethod
    async def record_history(self, rows: Sequence[HistoryRow]) -> None: ...

    @abstractmethod
    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int: ...

    @abstractmethod
    async def claim_call(self, target: str, owner: str, now: float, lease: float) -> QueuedCall | None: ...

    @abstractmethod
    async def claim_calls(
        self, targets: Sequence[str], owner: str, now: float, lease: float
    ) -> list[QueuedCall | None]: ...

    @abstractmethod
    async def update_call(self, call: QueuedCall, expect: CallState, owner: str | None = None) -> bool: ...

    @abstractmethod
    async def update_calls(self, updates: Sequence[CallUpdate]) -> list[bool]: ...

    @abstractmethod
    async def due_calls(self, now: float, limit: int = 500) -> list[QueuedCall]: ...

    @abstractmethod
    async def queued_targets(self, limit: int = 1000) -> list[str]: ...

    @abstractmethod
    async def live_call_states(self) -> dict[str, int]:
        """How many stored calls are ``queued`` and ``sent`` (the ``methodhub_queued_calls`` gauge)."""

    @abstractmethod
    async def query_twins(
        self, query: Query, *, offset: int = 0, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[Any]:
        """One page of ``query`` (FROM devices or devices.modules) evaluated in the database:
        result rows as IoT Hub returns them (registry.twin_query says what a twin document holds).
        ``after``: ``(deviceId, moduleId or "")`` of the previous page's last row: the page starts
        after it (found by index, where ``offset`` re-reads every row before it; rows are in that
        order; not with TOP, GROUP BY or aggregates: ``ValueError``)."""

    # -- jobs (see calls.jobs; registry.jobs has the statements) ----------------------------------------

    @abstractmethod
    async def create_job(self, job: Job) -> bool: ...

    @abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    async def list_jobs(
        self,
        *,
        type: JobType | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]: ...

    @abstractmethod
    async def claim_job(self, owner: str, now: float) -> Job | None: ...

    @abstractmethod
    async def update_job(self, job: Job, expect: JobStatus) -> bool: ...

    @abstractmethod
    async def running_jobs(self) -> list[Job]: ...

    @abstractmethod
    async def job_call_states(self, job_id: str) -> dict[str, int]: ...

    # -- twins (see registry.twins) -----------------------------------------------------------------

    @abstractmethod
    async def get_twin(self, device_id: str, module_id: str | None = None) -> Twin | None:
        """The identity's twin (:func:`~methodhub.registry.twins.empty_twin` until it first
        changes), or None when the identity does not exist."""

    @abstractmethod
    async def update_twin(
        self,
        device_id: str,
        module_id: str | None,
        change: Callable[[Twin], Twin],
        *,
        etag: str | None = None,
    ) -> Twin:
        """Store ``change(current twin)`` in one transaction and return it; ``etag`` None or
        ``"*"`` means unconditionally, else it must be the current twin's (``PRECONDITION_FAILED``).
        ``change`` is a pure function (it may run again if the transaction is retried) and may raise
        ``HubError`` (``INVALID_ARGUMENT``), which nothing is stored for. Raises
        ``DEVICE_NOT_FOUND`` / ``MODULE_NOT_FOUND``. A change of the desired properties is recorded
        in the change feed (kind ``twin``) for the nodes holding the device."""

    # -- Alibaba Cloud products (see registry.products) ------------------------------------------------

    @abstractmethod
    async def create_product_device(
        self,
        product_key: str,
        device_name: str,
        *,
        device_secret: str | None = None,
        status: str = "enabled",
    ) -> ProductDevice:
        """Register device ``device_name`` of product ``product_key`` (the product is created with
        its first device): one identity with id ``product_device_id(pk, dn)``, Azure keys generated,
        and ``device_secret`` (generated if None). One transaction; raises ``DEVICE_ALREADY_EXISTS``
        if the identity exists (whether or not it has Alibaba names), ``INVALID_ARGUMENT`` for bad
        names or secret."""

    @abstractmethod
    async def get_product_device(self, product_key: str, device_name: str) -> ProductDevice | None:
        """The device registered as ``(product_key, device_name)``, or None."""

    @abstractmethod
    async def find_product_device(self, device_id: str) -> ProductDevice | None:
        """The Alibaba names of device ``device_id``, or None if it has none (or does not exist)."""

    @abstractmethod
    async def list_product_devices(
        self, product_key: str, *, limit: int = 100, offset: int = 0
    ) -> list[ProductDevice]:
        """The devices of product ``product_key``, newest first (creation time, then device id, both
        descending, as Alibaba's ``QueryDevice`` lists them), ``offset`` of them skipped."""

    @abstractmethod
    async def count_product_devices(self, product_key: str) -> int: ...

    @abstractmethod
    async def set_product_tsl(self, product_key: str, tsl: str, function_block_id: str = "") -> None:
        """Store (or replace) the thing model of product ``product_key``'s module
        ``function_block_id`` ('' the default module) as text; the product is created if it has no
        device yet. The caller validates the text (:mod:`methodhub.dialects.aliyun.thing_model`);
        raises ``INVALID_ARGUMENT`` for a bad ProductKey."""

    @abstractmethod
    async def get_product_tsl(self, product_key: str, function_block_id: str = "") -> str | None:
        """The thing model stored for the product's module, or None."""

    # -- access policies ----------------------------------------------------------------------------

    @abstractmethod
    async def get_policy(self, name: str) -> AccessPolicy | None: ...

    @abstractmethod
    async def list_policies(self) -> list[AccessPolicy]: ...

    @abstractmethod
    async def ensure_default_policies(self) -> bool:
        """Create Azure's five default policies if there are none; True if it did (first start)."""

    @abstractmethod
    async def create_policy(
        self, name: str, rights: frozenset[Right], keys: SymmetricKeys | None = None
    ) -> AccessPolicy:
        """Add a custom policy with these rights (keys generated if None); raises ``CONFLICT`` if
        the name is taken, ``INVALID_ARGUMENT`` for a name Azure refuses, no rights or bad keys."""

    @abstractmethod
    async def update_policy(
        self, name: str, *, keys: SymmetricKeys | None = None, rights: frozenset[Right] | None = None
    ) -> AccessPolicy:
        """Replace a policy's keys and/or rights (None keeps them); raises ``NOT_FOUND``."""

    @abstractmethod
    async def delete_policy(self, name: str) -> None:
        """Remove a policy (tokens signed with its keys stop working); raises ``NOT_FOUND``."""

    # -- certificate authorities (see registry.authorities) ---------------------------------------------

    @abstractmethod
    async def add_authority(self, name: str, certificate: str, thumbprint: str) -> CertificateAuthority:
        """Register CA ``name`` (PEM ``certificate``, its SHA-256 ``thumbprint``) unverified, with a
        new verification code; ``CONFLICT`` if the name is taken, ``INVALID_ARGUMENT`` for a bad
        name. The caller has checked the certificate."""

    @abstractmethod
    async def list_authorities(self) -> list[CertificateAuthority]:
        """Every registered CA, verified or not, by name."""

    @abstractmethod
    async def set_authority_verified(self, name: str) -> CertificateAuthority:
        """Mark CA ``name`` verified (its proof of possession was checked); ``NOT_FOUND``."""

    @abstractmethod
    async def remove_authority(self, name: str) -> None:
        """Forget CA ``name`` (its devices stop authenticating); ``NOT_FOUND``."""

    # -- change feed ----------------------------------------------------------------------------------

    @abstractmethod
    async def changes_since(self, seq: int) -> tuple[list[Change], int]:
        """Changes after ``seq``, oldest first, and the sequence number to ask from next."""

    @abstractmethod
    async def last_change_seq(self) -> int: ...

    @abstractmethod
    async def prune_changes(self, keep_seconds: float) -> None:
        """Forget changes older than ``keep_seconds``."""

    # -- persisted MQTT sessions ----------------------------------------------------------------------

    # Session changes go through a write-behind (registry.sessions): save/delete return once the
    # change is queued, load sees queued changes, flush_sessions waits until they are written.

    @abstractmethod
    async def load_session(self, client_id: str) -> dict[str, int] | None:
        """The subscriptions (filter → granted QoS) of a persistent session, or None; a change
        queued by this object and not written yet counts."""

    @abstractmethod
    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        """Queue storing a copy of a persistent session's subscriptions; written within a few
        milliseconds, batched with other changes (see :meth:`flush_sessions`)."""

    @abstractmethod
    def delete_session(self, client_id: str) -> None:
        """Queue deleting a persistent session (like :meth:`save_session`)."""

    @abstractmethod
    async def flush_sessions(self) -> None:
        """Write every queued session change now; returns once they are written. Raises if they
        cannot be written now (``SERVICE_UNAVAILABLE``: the store is unreachable); they stay queued
        and are retried in the background."""

    # -- replay protection ----------------------------------------------------------------------------

    @abstractmethod
    async def use_nonce(self, key: str, expires_at: float, now: float) -> bool:
        """Record the signature nonce ``key`` until ``expires_at`` (epoch seconds); False if it is
        recorded and unexpired already (a replay). Shared by every process using this registry, so a
        request replayed to another worker or node is refused too. Expired nonces are forgotten."""

    # -- hub-wide settings ----------------------------------------------------------------------------

    @abstractmethod
    async def get_setting(self, name: str) -> str | None:
        """A setting every node and CLI shares (``"hostname"``: the hub's name), or None."""

    @abstractmethod
    async def set_setting(self, name: str, value: str) -> None: ...
