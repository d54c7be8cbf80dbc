"""The CLI's global options anywhere on the line, and a first-start banner whose commands work as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import methodhub.cli.app as cli
from methodhub.cli.app import build_parser, main
from methodhub.cli.options import global_flags
from methodhub.cli.tour import tour
from tests.unit.test_cli_registry import COMMANDS

ALL_COMMANDS = [*COMMANDS, ["ca-cert"], ["device", "create", "pump-1", "--product", "pk1"]]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_go_before_or_after_the_command(command: list[str], where: str) -> None:
    options = ["--data-dir", "/srv/hub", "--log-level", "debug", "--log-format", "json", "--debug"]
    argv = [*options, *command] if where == "before" else [*command, *options]
    args = build_parser().parse_args(argv)
    assert args.data_dir == Path("/srv/hub")
    assert (args.log_level, args.log_format, args.debug) == ("debug", "json", True)


def test_the_later_of_two_data_dirs_wins() -> None:
    args = build_parser().parse_args(["--data-dir", "/a", "device", "list", "--data-dir", "/b"])
    assert args.data_dir == Path("/b")


def _args(argv: list[str], data_dir: Path) -> object:
    """The namespace main() hands to the commands (global flags resolved)."""
    args = build_parser().parse_args(argv)
    args.registry_url = getattr(args, "registry", None)
    args.global_flags = global_flags(args, data_dir)
    return args


PLAIN_ONLY = {"hostname": "localhost", "mqtt": "127.0.0.1:1883", "http": "http://127.0.0.1:8080"}
WITH_TLS = {
    **PLAIN_ONLY,
    "mqtts": "127.0.0.1:18883",
    "amqps": "127.0.0.1:15671",
    "https": "https://127.0.0.1:18443",
    "ca": "/srv/my hub/tls/ca.pem",
}


def _printed_commands(banner: str) -> list[list[str]]:
    """The methodhub commands among the next steps, split as a shell would."""
    steps = banner.split("Next steps (in another terminal):\n", 1)[1].split("\nSee README")[0]
    commands = []
    for line in steps.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "methodhub":
            commands.append(words[1 : words.index(">")] if ">" in words else words[1:])
    return commands


def test_the_banner_next_steps_carry_the_data_dir_and_registry_they_were_given() -> None:
    data_dir = Path("/srv/my hub")
    registry = "postgresql://hub:pw@db:5432/hub"
    args = _args(["serve", "--data-dir", str(data_dir), "--registry", registry], data_dir)
    banner = tour(
        args, WITH_TLS, "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=k", data_dir
    )
    commands = _printed_commands(banner)
    assert [c[0] for c in commands] == ["device", "device", "invoke", "ca-cert"]
    for command in commands:  # each, run as printed, acts on the same data dir and registry
        parsed = build_parser().parse_args(command)
        assert parsed.data_dir == data_dir and parsed.registry == registry, command


def test_the_banner_without_options_prints_plain_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METHODHUB_DATA_DIR", raising=False)
    monkeypatch.delenv("METHODHUB_REGISTRY", raising=False)
    args = _args(["serve"], Path("/home/u/.local/share/methodhub"))
    banner = tour(args, PLAIN_ONLY, "cs", Path("/home/u/.local/share/methodhub"))
    assert "  methodhub device create pump-17  " in banner
    assert "  http://127.0.0.1:8080/console  " in banner and "the web console (a browser)" in banner
    assert "--data-dir" not in banner and "--registry" not in banner


def test_the_banner_names_only_the_listeners_that_are_on() -> None:
    data_dir = Path("/d")
    banner = tour(_args(["serve"], data_dir), PLAIN_ONLY, "cs", data_dir)
    assert "Listening: MQTT 127.0.0.1:1883, HTTP http://127.0.0.1:8080 (MQTT/TLS, AMQP/TLS, HTTPS" in banner
    assert "8883" not in banner and "8443" not in banner and "5671" not in banner
    assert "ca-cert" not in banner
    with_tls = tour(_args(["serve"], data_dir), WITH_TLS, "cs", data_dir)
    assert "MQTT/TLS 127.0.0.1:18883" in with_tls and "AMQP/TLS 127.0.0.1:15671" in with_tls
    assert "(MQTT/TLS 18883, AMQP/TLS 15671, HTTPS 18443)" in with_tls
    assert " off)" not in with_tls
    tls_only = {k: v for k, v in WITH_TLS.items() if k not in ("mqtt", "http")}
    banner = tour(_args(["serve"], data_dir), tls_only, "cs", data_dir)
    assert "device run pump-17 --tls" in banner  # the plain MQTT listener is off
    assert "curl --cacert '/srv/my hub/tls/ca.pem' https://127.0.0.1:18443/openapi.json" in banner


def test_an_unexpected_error_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(args: object, data_dir: Path) -> None:
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(cli, "_run_command", broken)
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(tmp_path), "device", "list"])
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "Traceback" not in err and err.count("\n") == 1
    assert "RuntimeError: something inside broke" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        main(["device", "list", "--debug", "--data-dir", str(tmp_path)])


def test_serve_takes_a_job_concurrency_of_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve", "--job-concurrency", "7"])
    assert args.job_concurrency == 7
    assert build_parser().parse_args(["serve"]).job_concurrency == 1000  # the documented default
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["serve", "--job-concurrency", "0"])
    assert refused.value.code == 2 and "--job-concurrency" in capsys.readouterr().err


def test_serve_records_the_call_history_unless_told_not_to() -> None:
    assert build_parser().parse_args(["serve"]).history == "on"  # the documented default
    assert build_parser().parse_args(["serve", "--history", "off"]).history == "off"
    from methodhub.config import HubConfig

    assert HubConfig(data_dir=Path("/d")).history is True
