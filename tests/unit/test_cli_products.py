"""``methodhub product set-tsl|show-tsl``: a product's thing model from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from methodhub.cli.app import main
from methodhub.registry import SqliteRegistry

TSL = {"profile": {"productKey": "a1PK"}, "services": [{"identifier": "Echo", "callType": "async"}]}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def stored(data_dir: Path, product_key: str, module: str = "") -> str | None:
    async def read() -> str | None:
        registry = SqliteRegistry(data_dir / "registry.db")
        await registry.open()
        try:
            return await registry.get_product_tsl(product_key, module)
        finally:
            await registry.close()

    return asyncio.run(read())


def test_set_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "hub"
    tsl = tmp_path / "tsl.json"
    tsl.write_text(json.dumps(TSL))
    code, out, err = run(capsys, "--data-dir", str(data), "product", "set-tsl", "a1PK", str(tsl))
    assert (code, out) == (0, "")
    assert "1 services, asynchronous: Echo" in err and "called synchronously" in err
    assert stored(data, "a1PK") == json.dumps(TSL)
    code, out, _ = run(capsys, "--data-dir", str(data), "product", "show-tsl", "a1PK")
    assert (code, out) == (0, json.dumps(TSL) + "\n")
    code, _, err = run(
        capsys, "--data-dir", str(data), "product", "set-tsl", "a1PK", str(tsl), "--module", "Bat"
    )
    assert code == 0 and "module 'Bat'" in err
    assert stored(data, "a1PK", "Bat") == json.dumps(TSL)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{oops", "is not JSON"),
        ('{"properties": []}', 'no "services" list'),
        (
            '{"services": [{"identifier": "Echo", "callType": "later"}]}',
            'callType \'later\' must be "sync" or "async"',
        ),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_bad_tsl_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, words: str
) -> None:
    tsl = tmp_path / "tsl.json"
    tsl.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = run(capsys, "--data-dir", str(tmp_path / "hub"), "product", "set-tsl", "a1PK", str(tsl))
    assert (code, out) == (1, "")
    assert err.startswith(f"methodhub: error: {tsl}: ") and words in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "hub")
    code, _, err = run(
        capsys, "--data-dir", data, "product", "set-tsl", "a1PK", str(tmp_path / "missing.json")
    )
    assert code == 1 and "cannot read" in err and "missing.json" in err
    code, _, err = run(capsys, "--data-dir", data, "product", "set-tsl", "a1:PK", str(tmp_path / "x.json"))
    assert code == 2 and "ProductKey" in err
    code, _, err = run(capsys, "--data-dir", data, "product", "show-tsl", "a1PK", "--module", "no good")
    assert code == 2 and "FunctionBlockId" in err


def test_show_without_a_tsl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "hub"
    assert run(capsys, "--data-dir", str(data), "device", "create", "dev1", "--product", "a1PK")[0] == 0
    code, out, err = run(capsys, "--data-dir", str(data), "product", "show-tsl", "a1PK")
    assert (code, out) == (1, "")
    assert "has no thing model" in err and "methodhub product set-tsl a1PK FILE" in err
