"""methodhub's fuzz harness: ``python -m fuzz`` (see docs/fuzzing.md).

Structure-aware mutation of MQTT 3.1.1 / 5 packet sequences over plain TCP, TLS and WebSocket, bad
HTTP requests and WebSocket handshakes and frames, against a hub subprocess (or a running hub),
with a canary device answering calls throughout. It reports connections the hub does not close in
time, tracebacks in the hub's log, canary failures and RSS / file-descriptor growth.
"""
