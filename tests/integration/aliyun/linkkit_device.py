"""A device on Alibaba's official Link SDK for Python (``aliyun-iot-linkkit``), unmodified.

Runs in the side venv (linkkit needs ``paho-mqtt<2``). Usage: ``python linkkit_device.py CONFIG_JSON``
with ``host``, ``port``, ``product_key``, ``device_name``, ``device_secret``, ``mode`` (``echo``:
answer everything, after ``delay`` seconds if given, with ``say_name`` its name too; ``silent``:
answer nothing), optional ``rrpc_topics`` (custom RRPC topics to subscribe with
``subscribe_rrpc_topic``), ``tsl`` (a TSL file for ``thing_setup``), ``ca`` (PEM text: connect with
TLS and trust it) and ``check_hostname``.

Prints one JSON object per line on stdout: ``{"event": "ready"}`` once connected and subscribed,
then one line per request it receives. Exits when stdin closes.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading

from linkkit import linkkit

config = json.loads(sys.argv[1])
lock = threading.Lock()


def emit(event: str, **fields: object) -> None:
    with lock:
        print(json.dumps({"event": event, **fields}), flush=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


lk = linkkit.LinkKit(
    host_name="cn-shanghai",
    product_key=config["product_key"],
    device_name=config["device_name"],
    device_secret=config["device_secret"],
)
tls = "ca" in config
lk.config_mqtt(
    port=config["port"],
    secure="TLS" if tls else "",
    endpoint=config["host"],
    keep_alive=60,
    **({"cadata": config["ca"], "check_hostname": config.get("check_hostname", True)} if tls else {}),
)
if "tsl" in config:
    lk.thing_setup(config["tsl"])
echo = config["mode"] == "echo"
ready_topic = f"/{config['product_key']}/{config['device_name']}/user/ready"


def on_connect(session_flag: int, rc: int, userdata: object) -> None:
    topics = config.get("rrpc_topics") or []
    if topics:
        rc, _ = lk.subscribe_rrpc_topic(topics)
        emit("subscribe_rrpc_topic", rc=rc)
    # SUBACKs come back in order: once this one is in, the RRPC subscription above is in too.
    lk.subscribe_topic(ready_topic, 0)


def on_subscribe_topic(mid: int, granted_qos: object, userdata: object) -> None:
    emit("ready", granted=list(granted_qos))  # type: ignore[call-overload]


def on_topic_message(topic: str, payload: bytes, qos: int, userdata: object) -> None:
    if topic.startswith("/ext/rrpc/"):
        return  # linkkit also passes custom RRPC requests here (wire doc §1.7); handled below
    emit("message", topic=topic, payload=b64(payload), qos=qos)
    if echo and "/rrpc/request/" in topic:
        lk.publish_topic(topic.replace("/rrpc/request/", "/rrpc/response/"), b"pong:" + payload, qos=0)


def on_topic_rrpc_message(rrpc_id: str, topic: str, payload: bytes, qos: int, userdata: object) -> None:
    emit("rrpc", id=rrpc_id, topic=topic, payload=b64(payload))
    if echo:
        lk.thing_answer_rrpc(rrpc_id, b"custom:" + payload)


def on_thing_call_service(identifier: str, request_id: str, params: object, userdata: object) -> None:
    emit("service", identifier=identifier, request_id=request_id, params=params)
    if echo:
        code = 460 if identifier == "Fail" else 200
        reply = {"echo": params, "identifier": identifier}
        if config.get("say_name"):  # which device answered (calls to many devices)
            reply["device"] = config["device_name"]
        answer = lambda: lk.thing_answer_service(identifier, request_id, code, reply)  # noqa: E731
        if config.get("delay"):  # a slow device: answers after `delay` seconds
            threading.Timer(config["delay"], answer).start()
        else:
            answer()


def on_disconnect(rc: int, userdata: object) -> None:
    emit("disconnected", rc=rc)


lk.on_connect = on_connect
lk.on_subscribe_topic = on_subscribe_topic
lk.on_topic_message = on_topic_message
lk.on_topic_rrpc_message = on_topic_rrpc_message
lk.on_thing_call_service = on_thing_call_service
lk.on_disconnect = on_disconnect
lk.connect_async()
sys.stdin.read()
lk.disconnect()
os._exit(0)  # linkkit's worker threads are not daemons
