"""The daily-work commands' pieces that need no hub: token signing, call lines, time parsing, policies
on a data dir's SQLite registry, and the errors when no hub runs."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from methodhub.cli.app import main
from methodhub.cli.call_history import _matches, call_line, parse_time
from methodhub.cli.progress import Progress
from methodhub.dialects.azure.sas import SasToken


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([*args])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_token_is_signed_with_the_registry_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    run(capsys, *data, "connection-string")
    _, cs, _ = run(capsys, *data, "connection-string", "--policy", "service")
    key = cs.strip().rsplit("SharedAccessKey=", 1)[1]
    code, out, err = run(capsys, *data, "token", "--policy", "service", "--ttl", "2h")
    token = SasToken.parse(out.strip())
    assert code == 0 and token.verify(key) and token.key_name == "service"
    assert token.resource_decoded == "localhost" and 7190 <= token.expiry - time.time() <= 7210
    assert "valid until" in err and "SharedAccessSignature" not in err
    run(capsys, *data, "device", "create", "pump-1")
    run(capsys, *data, "device", "create", "pump-1", "--module", "m")
    _, shown, _ = run(capsys, *data, "device", "show", "pump-1", "--module", "m")
    module_key = json.loads(shown)["primaryKey"]
    _, out, _ = run(capsys, *data, "token", "--device", "pump-1", "--module", "m")
    token = SasToken.parse(out.strip())
    assert token.verify(module_key) and token.key_name is None
    assert token.resource_decoded == "localhost/devices/pump-1/modules/m"


def test_policies_on_the_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    run(capsys, *data, "connection-string")
    code, out, _ = run(capsys, *data, "policy", "create", "ops", "--rights", "RegistryRead")
    assert code == 0 and out.startswith("HostName=localhost;SharedAccessKeyName=ops;SharedAccessKey=")
    _, listed, _ = run(capsys, *data, "policy", "list", "--json")
    assert {"name": "ops", "rights": ["RegistryRead"], "builtIn": False} in json.loads(listed)
    code, _, err = run(capsys, *data, "policy", "create", "x", "--rights", "Root")
    assert code == 2 and "unknown right(s) Root" in err
    code, _, err = run(capsys, *data, "policy", "delete", "registryRead")
    assert code == 1 and "built-in" in err
    code, _, _ = run(capsys, *data, "policy", "delete", "ops")
    _, listed, _ = run(capsys, *data, "policy", "list")
    assert code == 0 and "ops" not in listed and "registryRead\tRegistryRead\tbuilt-in" in listed


def test_status_and_calls_without_a_hub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    run(capsys, *data, "connection-string")
    for command in (["status"], ["status", "--json"], ["calls"], ["calls", "--follow"]):
        code, out, err = run(capsys, *data, *command)
        assert code == 5 and out == "" and "no hub is running" in err and "methodhub serve" in err


def test_parse_time() -> None:
    assert parse_time("1970-01-01T00:01:00.5000000Z") == 60.5
    assert parse_time("2026-12-02T07:30:01Z") == 1796196601
    assert parse_time(None) is None and parse_time("yesterday") is None


def test_client_side_filters() -> None:
    call = {"methodName": "reboot", "createdTime": "1970-01-01T00:01:00.0000000Z"}
    assert _matches(call, "reboot", 59) and _matches(call, None, None)
    assert not _matches(call, "update", None)
    assert not _matches(call, None, 61)
    assert not _matches({"methodName": "reboot"}, None, 0)  # no time: not known to be recent


def test_call_line() -> None:
    call = {
        "callId": "c1",
        "deviceId": "pump-1",
        "moduleId": "m",
        "methodName": "reboot",
        "state": "failed",
        "createdTime": "2026-12-02T07:30:01.1234567Z",
        "error": {"errorCode": 404103, "message": "offline"},
    }
    assert call_line(call) == "2026-12-02 07:30:01\tpump-1/m\treboot\tfailed\terror 404103\tc1"
    done = {**call, "moduleId": None, "state": "succeeded", "outcome": {"status": 200}}
    del done["error"]
    assert call_line(done).split("\t")[1:5] == ["pump-1", "reboot", "succeeded", "status 200"]


class _Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_only_on_a_terminal() -> None:
    terminal = _Terminal(True)
    bar = Progress("measuring", 2.0, terminal)
    bar.update(1.0)
    assert terminal.getvalue() == "\rmeasuring [############............]  50%"
    bar.update(5.0)  # past the end: full, not more
    assert terminal.getvalue().endswith("[########################] 100%")
    bar.close()
    assert terminal.getvalue().endswith("\r" + " " * len("measuring [########################] 100%") + "\r")
    piped = _Terminal(False)
    bar = Progress("measuring", 2.0, piped)
    bar.update(1.0)
    bar.close()
    assert piped.getvalue() == ""
