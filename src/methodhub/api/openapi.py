"""The OpenAPI 3.1 document for methodhub's HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from methodhub import __version__
from methodhub.config import CONNECT_TIMEOUT_RANGE, MAX_METHOD_PAYLOAD, RESPONSE_TIMEOUT_RANGE

_ERROR = {"$ref": "#/components/responses/Error"}
_API_VERSION = {
    "name": "api-version",
    "in": "query",
    "required": False,
    "description": "Azure REST API version (e.g. 2021-04-12). Accepted and ignored: "
    "methodhub serves one version.",
    "schema": {"type": "string"},
}
_DEVICE_ID = {
    "name": "deviceId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 128},
}
_MODULE_ID = {
    "name": "moduleId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 128},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'The etag to match (quoted), or "*" for any version.',
    "schema": {"type": "string"},
}

_POP_PARAMETERS = [
    {"name": name, "in": "query", "required": required, "description": text, "schema": {"type": "string"}}
    for name, required, text in (
        ("Action", True, "The action, e.g. RRpc or QueryDevice; docs/aliyun-compatibility.md lists them."),
        ("Version", True, "2018-01-20."),
        ("AccessKeyId", True, "A shared access policy's name."),
        ("Signature", True, "base64 HMAC-SHA1 of the string to sign, keyed with the policy key + '&'."),
        ("SignatureMethod", True, "HMAC-SHA1."),
        ("SignatureVersion", True, "1.0."),
        ("SignatureNonce", True, "Unique per request; a reused nonce is refused (SignatureNonceUsed)."),
        ("Timestamp", True, "YYYY-MM-DDThh:mm:ssZ, within 15 minutes of the hub's clock."),
        ("Format", False, "JSON (the only format)."),
    )
]
_POP_OPERATION = {
    "summary": "Alibaba Cloud IoT Platform API (POP RPC style, version 2018-01-20)",
    "description": "Parameters in the query and/or an application/x-www-form-urlencoded body, signed as "
    "aliyun-python-sdk-core signs them. Action parameters (ProductKey, DeviceName, IotId, Timeout, "
    "RequestBase64Byte, Topic, Identifier, Args) as Alibaba documents them; see "
    "docs/aliyun-compatibility.md.",
    "tags": ["alibaba cloud"],
    "parameters": _POP_PARAMETERS,
    "responses": {
        "200": {
            "description": "The action's answer, or an IoT error with Success false, in Alibaba's shapes.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": {"description": "A POP gateway error: {RequestId, HostId, Code, Message, Recommend}."},
        "403": {"description": "The policy lacks the right the action needs (Forbidden.RAM)."},
        "404": {"description": "Unknown AccessKeyId or Action."},
    },
}


def _invoke(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": ["direct methods"],
            "security": [{"sas": []}],
            "parameters": [*params, _API_VERSION],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CloudToDeviceMethod"}}
                },
            },
            "responses": {
                "200": {
                    "description": "The device answered.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CloudToDeviceMethodResult"}
                        }
                    },
                },
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "404": _ERROR,
                "413": _ERROR,
                "502": _ERROR,
                "503": _ERROR,
                "504": _ERROR,
            },
        }
    }


def _identity_ops(kind: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{kind}"}
    ok = {"description": f"The {kind.lower()}.", "content": {"application/json": {"schema": schema}}}
    return {
        "get": {
            "summary": f"Get a {kind.lower()} identity",
            "tags": ["registry"],
            "security": [{"sas": []}],
            "parameters": [*params, _API_VERSION],
            "responses": {"200": ok, "401": _ERROR, "404": _ERROR},
        },
        "put": {
            "summary": f"Create a {kind.lower()} identity, or update it with If-Match",
            "tags": ["registry"],
            "security": [{"sas": []}],
            "parameters": [*params, _IF_MATCH, _API_VERSION],
            "requestBody": {"required": False, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": ok,
                "400": _ERROR,
                "401": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
                "412": _ERROR,
            },
        },
        "delete": {
            "summary": f"Delete a {kind.lower()} identity",
            "tags": ["registry"],
            "security": [{"sas": []}],
            "parameters": [*params, _IF_MATCH, _API_VERSION],
            "responses": {"204": {"description": "Deleted."}, "401": _ERROR, "404": _ERROR, "412": _ERROR},
        },
    }


_AUTHENTICATION = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["sas", "selfSigned", "certificateAuthority"]},
        "symmetricKey": {
            "type": "object",
            "properties": {
                "primaryKey": {"type": ["string", "null"]},
                "secondaryKey": {"type": ["string", "null"]},
            },
        },
        "x509Thumbprint": {
            "type": "object",
            "description": "selfSigned: SHA-1 (40) or SHA-256 (64) hex digits, colons allowed",
            "properties": {
                "primaryThumbprint": {"type": ["string", "null"]},
                "secondaryThumbprint": {"type": ["string", "null"]},
            },
        },
    },
}
_IDENTITY_COMMON = {
    "deviceId": {"type": "string"},
    "generationId": {"type": "string"},
    "etag": {"type": "string"},
    "connectionState": {"type": "string", "enum": ["Connected", "Disconnected"]},
    "connectionStateUpdatedTime": {"type": "string"},
    "lastActivityTime": {"type": "string"},
    "cloudToDeviceMessageCount": {"type": "integer"},
    "authentication": _AUTHENTICATION,
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "methodhub",
        "version": __version__,
        "description": (
            "Synchronous cloud-to-device calls (Azure IoT Hub direct methods) and the device registry, "
            "in Azure IoT Hub's REST shapes. Authenticate with an Azure SAS token: "
            "`Authorization: SharedAccessSignature sr={hostname}&sig=...&se=...&skn={policy}`."
        ),
    },
    "paths": {
        "/": {"get": _POP_OPERATION, "post": _POP_OPERATION},
        "/twins/{deviceId}/methods": _invoke("Invoke a direct method on a device", [_DEVICE_ID]),
        "/twins/{deviceId}/modules/{moduleId}/methods": _invoke(
            "Invoke a direct method on a module", [_DEVICE_ID, _MODULE_ID]
        ),
        "/devices": {
            "get": {
                "summary": "List device identities",
                "tags": ["registry"],
                "security": [{"sas": []}],
                "parameters": [
                    {
                        "name": "top",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                    _API_VERSION,
                ],
                "responses": {
                    "200": {
                        "description": "Devices, ordered by id.",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}}
                            }
                        },
                    },
                    "401": _ERROR,
                },
            }
        },
        "/devices/{deviceId}": _identity_ops("Device", [_DEVICE_ID]),
        "/devices/{deviceId}/modules": {
            "get": {
                "summary": "List a device's module identities",
                "tags": ["registry"],
                "security": [{"sas": []}],
                "parameters": [_DEVICE_ID, _API_VERSION],
                "responses": {
                    "200": {
                        "description": "Modules, ordered by id.",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Module"}}
                            }
                        },
                    },
                    "401": _ERROR,
                    "404": _ERROR,
                },
            }
        },
        "/devices/{deviceId}/modules/{moduleId}": _identity_ops("Module", [_DEVICE_ID, _MODULE_ID]),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "description": "Every metric is described in docs/metrics.md. Open by default; with "
                "`serve --metrics-auth` it needs a service SAS token of a policy with RegistryRead, or "
                "the bearer token of `--metrics-token-file`.",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "`--metrics-auth` is on; no accepted credentials were sent."},
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness",
                "tags": ["operations"],
                "responses": {"200": {"description": "The hub is serving."}},
            }
        },
        "/console/events": {
            "get": {
                "summary": "Device connection changes on this node, as Server-Sent Events (docs/console.md)",
                "tags": ["console"],
                "security": [],
                "parameters": [
                    {
                        "name": "sas",
                        "in": "query",
                        "required": True,
                        "description": "A service SAS token with RegistryRead (EventSource sets no headers).",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "event: hello / connection, data: JSON; ': ping' every 15 s.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _ERROR,
                    "503": {"description": "Too many event streams on this node."},
                },
            }
        },
        "/console/session": {
            "get": {
                "summary": "The policy and rights of the caller's SAS token (the console's sign-in)",
                "tags": ["console"],
                "responses": {
                    "200": {
                        "description": "The policy.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "policy": {"type": "string"},
                                        "rights": {"type": "array", "items": {"type": "string"}},
                                        "node": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "401": _ERROR,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["operations"],
                "responses": {"200": {"description": "OpenAPI 3.1 document."}},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "sas": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "SharedAccessSignature sr=...&sig=...&se=...&skn=... "
                "(see `methodhub connection-string`).",
            }
        },
        "schemas": {
            "CloudToDeviceMethod": {
                "type": "object",
                "required": ["methodName"],
                "properties": {
                    "methodName": {"type": "string", "maxLength": 128},
                    "payload": {
                        "description": f"Any JSON value, at most {MAX_METHOD_PAYLOAD} bytes encoded."
                    },
                    "responseTimeoutInSeconds": {
                        "type": "integer",
                        "minimum": RESPONSE_TIMEOUT_RANGE[0],
                        "maximum": RESPONSE_TIMEOUT_RANGE[1],
                        "default": 30,
                    },
                    "connectTimeoutInSeconds": {
                        "type": "integer",
                        "minimum": CONNECT_TIMEOUT_RANGE[0],
                        "maximum": CONNECT_TIMEOUT_RANGE[1],
                        "default": 0,
                    },
                },
            },
            "CloudToDeviceMethodResult": {
                "type": "object",
                "properties": {
                    "status": {"type": "integer", "description": "The status the device answered with."},
                    "payload": {"description": "The JSON the device answered with (null if empty)."},
                },
            },
            "Device": {
                "type": "object",
                "properties": {
                    **_IDENTITY_COMMON,
                    "status": {"type": "string", "enum": ["enabled", "disabled"]},
                    "statusReason": {"type": ["string", "null"]},
                    "statusUpdatedTime": {"type": "string"},
                    "capabilities": {"type": "object", "properties": {"iotEdge": {"type": "boolean"}}},
                },
            },
            "Module": {
                "type": "object",
                "properties": {
                    **_IDENTITY_COMMON,
                    "moduleId": {"type": "string"},
                    "managedBy": {"type": ["string", "null"]},
                },
            },
            "ErrorBody": {
                "type": "object",
                "description": "Azure's error envelope: Message is a JSON-encoded string with errorCode, "
                "trackingId, message, info and timestampUtc.",
                "properties": {"Message": {"type": "string"}, "ExceptionMessage": {"type": "string"}},
            },
        },
        "responses": {
            "Error": {
                "description": "An error in Azure's shape; the header iothub-errorcode names it.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            }
        },
    },
}
