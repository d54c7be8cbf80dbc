"""Azure connection strings: ``HostName=...;DeviceId=...;SharedAccessKey=...``.

Keys are matched case-insensitively; values are split on the first ``=`` only (base64 keys end in
``=``). The canonical order when printing is HostName, DeviceId, ModuleId, SharedAccessKeyName,
SharedAccessKey, SharedAccessSignature, GatewayHostName.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_KEYS = {
    "hostname": "host_name",
    "deviceid": "device_id",
    "moduleid": "module_id",
    "sharedaccesskeyname": "shared_access_key_name",
    "sharedaccesskey": "shared_access_key",
    "sharedaccesssignature": "shared_access_signature",
    "gatewayhostname": "gateway_host_name",
    "x509": "x509",
}
_NAMES = {
    "host_name": "HostName",
    "device_id": "DeviceId",
    "module_id": "ModuleId",
    "shared_access_key_name": "SharedAccessKeyName",
    "shared_access_key": "SharedAccessKey",
    "shared_access_signature": "SharedAccessSignature",
    "gateway_host_name": "GatewayHostName",
    "x509": "x509",
}


class ConnectionStringError(ValueError):
    """The text is not a usable connection string; the message names the bad or missing key."""


@dataclass(frozen=True, slots=True)
class ConnectionString:
    host_name: str
    device_id: str | None = None
    module_id: str | None = None
    shared_access_key_name: str | None = None
    shared_access_key: str | None = None
    shared_access_signature: str | None = None
    gateway_host_name: str | None = None
    x509: str | None = None

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        values: dict[str, str] = {}
        for part in text.strip().strip(";").split(";"):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            attribute = _KEYS.get(name.strip().lower())
            if not sep or attribute is None:
                raise ConnectionStringError(
                    f"unknown or malformed part {name.strip()!r}; expected keys: {', '.join(_NAMES.values())}"
                )
            if attribute in values:
                raise ConnectionStringError(f"{_NAMES[attribute]} appears twice")
            values[attribute] = value.strip()
        if not values.get("host_name"):
            raise ConnectionStringError("HostName is missing")
        return cls(**values)

    @property
    def is_device(self) -> bool:
        return self.device_id is not None

    @property
    def is_service(self) -> bool:
        return self.device_id is None and self.shared_access_key_name is not None

    def __str__(self) -> str:
        return ";".join(
            f"{_NAMES[f.name]}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        )
