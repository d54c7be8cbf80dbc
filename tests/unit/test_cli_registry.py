"""``--registry URL`` / $METHODHUB_REGISTRY on every command that uses the registry."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
from pathlib import Path

import pytest

from methodhub.cli.app import build_parser, main
from methodhub.cli.options import ENV_REGISTRY
from methodhub.cli.registry import agreed_hostname
from tests.servers import create_database

URL = "postgresql://hub:pw@db.example:5432/methodhub"

COMMANDS = [
    ["serve"],
    ["connection-string"],
    ["device", "create", "pump-1"],
    ["device", "list"],
    ["device", "show", "pump-1"],
    ["device", "delete", "pump-1"],
    ["device", "run", "pump-1"],
    ["product", "set-tsl", "a1PK", "tsl.json"],
    ["product", "show-tsl", "a1PK"],
    ["invoke", "pump-1", "reboot"],
    ["token"],
    ["token", "--device", "pump-1"],
    ["device", "enable", "pump-1"],
    ["device", "disable", "pump-1"],
    ["device", "regenerate-key", "pump-1"],
    ["policy", "list"],
    ["policy", "create", "ops", "--rights", "ServiceConnect"],
    ["policy", "delete", "ops"],
    ["policy", "regenerate-key", "ops"],
    ["calls"],
    ["status"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_registry_option_before_or_after_the_command(command: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["--registry", URL, *command]).registry == URL
    assert parser.parse_args([*command, "--registry", URL]).registry == URL
    assert not hasattr(parser.parse_args(command), "registry")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_environment_variable_is_used_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv(ENV_REGISTRY, f"postgresql://hub:s3cret@127.0.0.1:{port}/methodhub")
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(tmp_path / "none"), "device", "list"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"cannot reach the registry at postgresql://hub@127.0.0.1:{port}/methodhub" in err
    assert "s3cret" not in err
    assert not (tmp_path / "none").exists()  # no data dir needed (or made) for a PostgreSQL registry


def test_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_REGISTRY, "postgresql://elsewhere/db")
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(tmp_path), "device", "list", "--registry", "mysql://root:pw@db/x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unsupported registry location 'mysql://root@db/x'" in err
    assert ":pw@" not in err


# -- the hub's hostname, recorded in the registry ---------------------------------------------------------

_databases = itertools.count(1)


@pytest.fixture
def registry_url(postgres_url: str) -> str:
    return create_database(postgres_url, f"cli_{os.getpid()}_{next(_databases)}")


def test_serve_records_its_hostname_for_every_node_and_cli(
    tmp_path: Path, registry_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        asyncio.run(agreed_hostname(tmp_path / "node1", registry_url, "hub.example.com")) == "hub.example.com"
    )
    # another node started without --hostname, on another machine, agrees
    assert asyncio.run(agreed_hostname(tmp_path / "node2", registry_url, None)) == "hub.example.com"
    # and so does a CLI elsewhere, in what it prints
    main(["--data-dir", str(tmp_path / "laptop"), "--registry", registry_url, "device", "create", "pump-1"])
    assert capsys.readouterr().out.startswith("HostName=hub.example.com;DeviceId=pump-1;")
    main(["--data-dir", str(tmp_path / "laptop"), "connection-string", "--registry", registry_url])
    assert capsys.readouterr().out.startswith("HostName=hub.example.com;SharedAccessKeyName=iothubowner;")
    # a node started with another --hostname records that one
    assert (
        asyncio.run(agreed_hostname(tmp_path / "node3", registry_url, "hub2.example.com"))
        == "hub2.example.com"
    )
    main(["--data-dir", str(tmp_path / "laptop"), "--registry", registry_url, "device", "show", "pump-1"])
    assert "HostName=hub2.example.com;DeviceId=pump-1;" in capsys.readouterr().out


def test_sqlite_hubs_keep_the_data_dirs_hostname(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data dir from before the registry recorded hostnames: settings.json still counts."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "settings.json").write_text(json.dumps({"hostname": "old.example.com"}))
    assert asyncio.run(agreed_hostname(data_dir, None, None)) == "old.example.com"
    main(["--data-dir", str(data_dir), "device", "create", "pump-1"])
    assert capsys.readouterr().out.startswith("HostName=old.example.com;")
