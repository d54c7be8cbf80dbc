"""Drives Microsoft's official Azure IoT SDKs for the interop tests, inside their own venv.

``azure-iot-device`` pins ``paho-mqtt<2`` while methodhub's tests use paho 2, so the SDKs live in a
separate environment (see ``tests/interop/conftest.py``) and this script is their remote control:
one JSON request per line on stdin, one JSON answer per line on stdout. Only the SDKs' public API is
used — exactly what an application written for Azure IoT Hub does.

Device method handler: every request is answered from its own payload, so tests decide the answer
by what they send: ``{"sleep": S}`` waits S seconds first, ``{"status": N}`` answers with status N,
``{"return": X}`` answers with X; anything else is echoed as ``{"method": name, "payload": payload}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

from azure.iot.device import X509, IoTHubDeviceClient, IoTHubModuleClient, MethodResponse, ProxyOptions
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod

devices: dict[str, Any] = {}
events: dict[str, list[Any]] = {}
service: IoTHubRegistryManager | None = None
_connection_string = ""


def _handler(name: str, client: Any):  # type: ignore[no-untyped-def]
    def on_method(request: Any) -> None:
        events[name].append({"event": "method", "name": request.name, "time": time.time()})
        payload = request.payload
        status, answer = 200, {"method": request.name, "payload": payload}
        if isinstance(payload, dict):
            if "sleep" in payload:
                time.sleep(float(payload["sleep"]))
            status = int(payload.get("status", status))
            if "return" in payload:
                answer = payload["return"]
        client.send_method_response(MethodResponse.create_from_method_request(request, status, answer))

    return on_method


def device_connect(
    name: str,
    cs: str,
    ca: str,
    proxy: list[Any],
    websockets: bool = False,
    module: bool = False,
    sastoken_ttl: int = 3600,
    methods: bool = True,
    messages: bool = False,
    desired: bool = False,
) -> dict[str, Any]:
    cls = IoTHubModuleClient if module else IoTHubDeviceClient
    client = cls.create_from_connection_string(
        cs,
        server_verification_cert=ca,
        websockets=websockets,
        proxy_options=ProxyOptions(proxy_type="HTTP", proxy_addr=proxy[0], proxy_port=proxy[1]),
        sastoken_ttl=sastoken_ttl,
        connection_retry_interval=1,
    )
    events[name] = []

    def on_state_change() -> None:
        events[name].append(
            {"event": "connected" if client.connected else "disconnected", "time": time.time()}
        )

    client.on_connection_state_change = on_state_change
    devices[name] = client
    client.connect()
    if methods:
        client.on_method_request_received = _handler(name, client)
    if messages:
        client.on_message_received = lambda message: events[name].append({"event": "message"})
    if desired:
        client.on_twin_desired_properties_patch_received = lambda patch: events[name].append(
            {"event": "desired", "patch": patch, "time": time.time()}
        )
    return {"connected": client.connected}


def device_connect_x509(
    name: str,
    hostname: str,
    device_id: str,
    cert_file: str,
    key_file: str,
    ca: str,
    proxy: list[Any],
    websockets: bool = False,
    module_id: str | None = None,
) -> dict[str, Any]:
    """A device (or module) client authenticated with an X.509 certificate, as Azure's samples
    make one (``create_from_x509_certificate``); it answers methods like :func:`device_connect`'s."""
    x509 = X509(cert_file=cert_file, key_file=key_file)
    options: dict[str, Any] = {
        "x509": x509,
        "hostname": hostname,
        "device_id": device_id,
        "server_verification_cert": ca,
        "websockets": websockets,
        "proxy_options": ProxyOptions(proxy_type="HTTP", proxy_addr=proxy[0], proxy_port=proxy[1]),
        "connection_retry": False,
    }
    if module_id is not None:
        client: Any = IoTHubModuleClient.create_from_x509_certificate(module_id=module_id, **options)
    else:
        client = IoTHubDeviceClient.create_from_x509_certificate(**options)
    events[name] = []
    devices[name] = client
    client.connect()
    client.on_method_request_received = _handler(name, client)
    return {"connected": client.connected}


def device_events(name: str) -> list[Any]:
    return events[name]


def device_get_twin(name: str) -> Any:
    return devices[name].get_twin()


def device_patch_reported(name: str, patch: Any) -> None:
    devices[name].patch_twin_reported_properties(patch)


def device_shutdown(name: str) -> None:
    devices.pop(name).shutdown()


def service_open(cs: str, ca_file: str) -> None:
    global service
    global _connection_string
    _connection_string = cs
    service = IoTHubRegistryManager.from_connection_string(cs)
    service.protocol.config.connection.verify = ca_file
    service.protocol.config.connection.timeout = 310


def _service() -> IoTHubRegistryManager:
    assert service is not None, "call service_open first"
    return service


def _device_dict(device: Any) -> dict[str, Any]:
    auth = device.authentication
    return {
        "device_id": device.device_id,
        "module_id": getattr(device, "module_id", None),
        "status": getattr(device, "status", None),
        "etag": device.etag,
        "generation_id": device.generation_id,
        "primary_key": auth.symmetric_key.primary_key if auth and auth.symmetric_key else None,
        "secondary_key": auth.symmetric_key.secondary_key if auth and auth.symmetric_key else None,
        "connection_state": device.connection_state,
    }


def service_create_device(device_id: str, primary: str, secondary: str, status: str = "enabled") -> Any:
    return _device_dict(_service().create_device_with_sas(device_id, primary, secondary, status))


def service_create_device_x509(device_id: str, primary: str, secondary: str | None) -> Any:
    device = _service().create_device_with_x509(device_id, primary, secondary, "enabled")
    return {**_device_dict(device), "authentication": device.authentication.serialize()}


def service_create_device_ca(device_id: str) -> Any:
    device = _service().create_device_with_certificate_authority(device_id, "enabled")
    return {**_device_dict(device), "authentication": device.authentication.serialize()}


def service_create_module_x509(device_id: str, module_id: str, primary: str, secondary: str | None) -> Any:
    module = _service().create_module_with_x509(device_id, module_id, None, primary, secondary)
    return {**_device_dict(module), "authentication": module.authentication.serialize()}


def service_update_device(device_id: str, etag: str, primary: str, secondary: str, status: str) -> Any:
    return _device_dict(_service().update_device_with_sas(device_id, etag, primary, secondary, status))


def service_get_device(device_id: str) -> Any:
    return _device_dict(_service().get_device(device_id))


def service_delete_device(device_id: str) -> None:
    _service().delete_device(device_id)


def service_create_module(device_id: str, module_id: str, primary: str, secondary: str) -> Any:
    return _device_dict(_service().create_module_with_sas(device_id, module_id, None, primary, secondary))


def service_get_module(device_id: str, module_id: str) -> Any:
    return _device_dict(_service().get_module(device_id, module_id))


def service_delete_module(device_id: str, module_id: str) -> None:
    _service().delete_module(device_id, module_id)


def service_invoke(
    device_id: str,
    method: str,
    payload: Any = None,
    module_id: str | None = None,
    response_timeout: int | None = None,
    connect_timeout: int | None = None,
) -> Any:
    request = CloudToDeviceMethod(
        method_name=method,
        payload=payload,
        response_timeout_in_seconds=response_timeout,
        connect_timeout_in_seconds=connect_timeout,
    )
    if module_id:
        result = _service().invoke_device_module_method(device_id, module_id, request)
    else:
        result = _service().invoke_device_method(device_id, request)
    return {"status": result.status, "payload": result.payload}


def _twin_dict(twin: Any) -> dict[str, Any]:
    return {
        "device_id": twin.device_id,
        "module_id": twin.module_id,
        "etag": twin.etag,
        "version": twin.version,
        "tags": twin.tags,
        "desired": twin.properties.desired,
        "reported": twin.properties.reported,
        "connection_state": twin.connection_state,
        "status": twin.status,
    }


def _twin_model(tags: Any, desired: Any) -> Any:
    from azure.iot.hub.models import Twin, TwinProperties

    return Twin(tags=tags, properties=TwinProperties(desired=desired) if desired is not None else None)


def service_get_twin(device_id: str, module_id: str | None = None) -> Any:
    if module_id:
        return _twin_dict(_service().get_module_twin(device_id, module_id))
    return _twin_dict(_service().get_twin(device_id))


def service_update_twin(
    device_id: str,
    tags: Any = None,
    desired: Any = None,
    etag: str | None = None,
    module_id: str | None = None,
) -> Any:
    model = _twin_model(tags, desired)
    if module_id:
        return _twin_dict(_service().update_module_twin(device_id, module_id, model, etag or "*"))
    return _twin_dict(_service().update_twin(device_id, model, etag or "*"))


def service_replace_twin(
    device_id: str, tags: Any = None, desired: Any = None, etag: str | None = None
) -> Any:
    return _twin_dict(_service().replace_twin(device_id, _twin_model(tags, desired), etag or "*"))


def service_query(query: str, max_items: int | None = None, continuation: str | None = None) -> Any:
    from azure.iot.hub.models import QuerySpecification

    result = _service().query_iot_hub(QuerySpecification(query=query), continuation, max_items)
    items = [item.as_dict() if hasattr(item, "as_dict") else item for item in result.items]
    return {"items": items, "type": result.type, "continuation": result.continuation_token}


_jobs: Any = None


def _job_manager() -> Any:
    global _jobs
    if _jobs is None:
        from azure.iot.hub import IoTHubJobManager

        service = _service()
        _jobs = IoTHubJobManager.from_connection_string(_connection_string)
        _jobs.protocol.config.connection.verify = service.protocol.config.connection.verify
    return _jobs


def _job_dict(job: Any) -> dict[str, Any]:
    stats = job.device_job_statistics
    return {
        "job_id": job.job_id,
        "type": job.type,
        "status": job.status,
        "query_condition": job.query_condition,
        "statistics": stats.as_dict() if stats is not None else None,
    }


def service_create_job(
    job_id: str,
    condition: str,
    method: str | None = None,
    payload: Any = None,
    tags: Any = None,
    start_in: float = 0,
    max_seconds: int = 120,
) -> Any:
    import datetime as dt

    from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, Twin

    request = JobRequest()
    request.job_id = job_id
    request.query_condition = condition
    request.start_time = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=start_in)).isoformat()
    request.max_execution_time_in_seconds = max_seconds
    if method is not None:
        request.type = "scheduleDeviceMethod"
        request.cloud_to_device_method = CloudToDeviceMethod(
            method_name=method, payload=payload, response_timeout_in_seconds=30
        )
    else:
        request.type = "scheduleUpdateTwin"
        request.update_twin = Twin(tags=tags, etag="*")
    return _job_dict(_job_manager().create_scheduled_job(job_id, request))


def service_get_job(job_id: str) -> Any:
    return _job_dict(_job_manager().get_scheduled_job(job_id))


def service_cancel_job(job_id: str) -> Any:
    return _job_dict(_job_manager().cancel_scheduled_job(job_id))


OPERATIONS = {name: fn for name, fn in globals().items() if name.startswith(("device_", "service_"))}
_write_lock = threading.Lock()


def _answer(answer: dict[str, Any]) -> None:
    with _write_lock:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    _answer({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = OPERATIONS[request["op"]](**request.get("args", {}))
            _answer({"ok": True, "result": result})
        except Exception as exc:
            response = getattr(exc, "response", None)
            causes, cause = [], exc.__cause__ or exc.__context__
            while cause is not None and len(causes) < 10:
                causes.append(f"{type(cause).__name__}: {cause}")
                cause = cause.__cause__ or cause.__context__
            _answer(
                {
                    "ok": False,
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "status_code": getattr(response, "status_code", None),
                    "body": getattr(response, "text", None),
                    "causes": causes,
                    "traceback": traceback.format_exc(),
                }
            )


if __name__ == "__main__":
    main()
