"""scripts/check-structure: import cycles (type-only and function-local ones too), layer rules, module size,
each on a small package tree made for the test."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-structure"


def _load_checker() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("check_structure", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_structure", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_structure"] = module  # its dataclass looks its module up
    loader.exec_module(module)
    return module


checker = _load_checker()


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A src/ directory holding a ``methodhub`` package with these files (path -> source)."""
    src = root / "src"
    for name, text in {"methodhub/__init__.py": "", **files}.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for path in list(src.rglob("*")):  # every directory is a package
        if path.is_dir() and not (path / "__init__.py").exists():
            (path / "__init__.py").write_text("")
    return src


CLEAN = {
    "methodhub/errors.py": "class HubError(Exception): ...\n",
    "methodhub/mqtt/__init__.py": "from methodhub.mqtt.codec import decode\n",
    "methodhub/mqtt/codec.py": "from .errors import MqttError\n\ndef decode() -> None: ...\n",
    "methodhub/mqtt/errors.py": "class MqttError(Exception): ...\n",
    "methodhub/calls/__init__.py": """
        from methodhub.calls.engine import CallEngine
        from methodhub.calls.model import Call
        """,
    "methodhub/calls/model.py": "from methodhub.errors import HubError\n\nclass Call: ...\n",
    "methodhub/calls/engine.py": """
        from typing import TYPE_CHECKING

        from methodhub.calls.model import Call

        if TYPE_CHECKING:
            from methodhub.calls.ports import DevicePort

        class CallEngine: ...
        """,
    "methodhub/calls/ports.py": "from methodhub.calls.model import Call\n",
    "methodhub/gateway/__init__.py": "from methodhub.gateway.session import DeviceSession\n",
    "methodhub/gateway/session.py": """
        from methodhub.calls import Call
        from methodhub.mqtt import decode

        class DeviceSession:
            def close(self) -> None:
                from methodhub.errors import HubError
        """,
    "methodhub/process/__init__.py": "",
    "methodhub/process/hub.py": "from methodhub.gateway import DeviceSession\n",
    "methodhub/cli/__init__.py": "from methodhub.cli.app import main\n",
    "methodhub/cli/app.py": "from methodhub.process.hub import *\n\ndef main() -> None: ...\n",
    "methodhub/__main__.py": "from methodhub.cli.app import main\n",
}


def test_a_clean_tree_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path, CLEAN)
    assert checker.check(src) == []
    assert checker.main(["check-structure", str(src)]) == 0
    assert capsys.readouterr().err == ""


def test_the_imports_are_found_wherever_they_are(tmp_path: Path) -> None:
    src = _tree(tmp_path, CLEAN)
    found = {(i.importer, i.imported, i.where) for i in checker.find_imports(src)}
    assert ("methodhub.calls.engine", "methodhub.calls.ports", "under TYPE_CHECKING") in found
    assert ("methodhub.gateway.session", "methodhub.errors", "in a function") in found
    assert ("methodhub.mqtt.codec", "methodhub.mqtt.errors", "top level") in found  # a relative import
    assert ("methodhub.gateway.session", "methodhub.calls", "top level") in found  # the package itself
    assert ("methodhub.cli.app", "methodhub.process.hub", "top level") in found  # import *


def test_a_cycle_through_a_type_checking_import_is_found(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            **CLEAN,
            "methodhub/calls/ports.py": """
                from typing import TYPE_CHECKING

                from methodhub.calls.model import Call

                if TYPE_CHECKING:
                    from methodhub.calls.engine import CallEngine
                """,
        },
    )
    [violation] = checker.check(src)
    assert violation.startswith("import cycle in methodhub.calls among engine, ports\n")
    assert "e.g. engine -> ports -> engine" in violation
    assert "src/methodhub/calls/ports.py:7: methodhub.calls.ports imports methodhub.calls.engine" in violation
    assert "(under TYPE_CHECKING)" in violation


def test_a_cycle_through_a_function_local_import_is_found(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            **CLEAN,
            "methodhub/calls/model.py": """
                class Call:
                    def send(self) -> None:
                        from methodhub.calls.engine import CallEngine
                """,
        },
    )
    [violation] = checker.check(src)
    assert violation.startswith("import cycle in methodhub.calls among engine, model, ports\n")
    assert "e.g. engine -> model -> engine" in violation
    assert "methodhub.calls.model imports methodhub.calls.engine (in a function)" in violation


def test_from_a_package_import_a_submodule_is_an_import_of_the_submodule(tmp_path: Path) -> None:
    cycle = {**CLEAN, "methodhub/calls/model.py": "from methodhub.calls import engine\n"}
    [violation] = checker.check(_tree(tmp_path / "cycle", cycle))
    assert "import cycle in methodhub.calls among engine, model" in violation
    # a name the package defines (here, re-exports) is an import of the package: its __init__
    found = {(i.importer, i.imported) for i in checker.find_imports(_tree(tmp_path / "clean", CLEAN))}
    assert ("methodhub.gateway.session", "methodhub.mqtt") in found
    assert ("methodhub.gateway.session", "methodhub.mqtt.codec") not in found


def test_a_package_reexport_counts_as_an_import_of_the_package(tmp_path: Path) -> None:
    """calls/__init__ re-exports the engine; the engine (type-only) needs router/, router/ needs calls:
    no two modules import each other, but the packages calls/ and router/ do."""
    src = _tree(
        tmp_path,
        {
            **CLEAN,
            "methodhub/calls/engine.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from methodhub.router.base import Router
                """,
            "methodhub/router/base.py": "from methodhub.calls import Call\n",
        },
    )
    [violation] = checker.check(src)
    assert violation.startswith("import cycle in methodhub among calls/, router/\n")
    assert "methodhub.router.base imports methodhub.calls (top level)" in violation
    assert "methodhub.calls.engine imports methodhub.router.base (under TYPE_CHECKING)" in violation


def test_a_module_importing_the_package_that_reexports_it_is_a_cycle(tmp_path: Path) -> None:
    src = _tree(tmp_path, {**CLEAN, "methodhub/calls/engine.py": "from methodhub.calls import Call\n"})
    [violation] = checker.check(src)
    assert violation.startswith("import cycle in methodhub.calls among __init__, engine\n")


def test_layer_violations_are_found(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            **CLEAN,
            "methodhub/mqtt/errors.py": "from methodhub.errors import HubError\n",
            "methodhub/amqp/types.py": "from methodhub.mqtt.errors import MqttError\n",
            "methodhub/calls/ports.py": "def port() -> None:\n    import methodhub.gateway.session\n",
            "methodhub/errors.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from methodhub.process.hub import Hub
                """,
        },
    )
    violations = [v for v in checker.check(src) if v.startswith("layer:")]  # (they make cycles too)
    assert sorted(violations) == sorted(
        [
            "layer: mqtt/ imports nothing of methodhub outside mqtt/: src/methodhub/mqtt/errors.py:1: "
            "methodhub.mqtt.errors imports methodhub.errors (top level)",
            "layer: amqp/ imports nothing of methodhub outside amqp/: src/methodhub/amqp/types.py:1: "
            "methodhub.amqp.types imports methodhub.mqtt.errors (top level)",
            "layer: calls/, mqtt/ and http/ import nothing from gateway, dialects, api, process or cli: "
            "src/methodhub/calls/ports.py:2: methodhub.calls.ports imports methodhub.gateway.session "
            "(in a function)",
            "layer: the library imports nothing from methodhub.process or methodhub.cli: "
            "src/methodhub/errors.py:5: methodhub.errors imports methodhub.process.hub (under TYPE_CHECKING)",
        ]
    )


def test_a_module_over_800_lines_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(
        tmp_path,
        {**CLEAN, "methodhub/long.py": "x = 1\n" * 801, "methodhub/limit.py": "x = 1\n" * 800},
    )
    assert checker.check(src) == [
        "size: src/methodhub/long.py has 801 lines (limit 800): it does several jobs; split it by job"
    ]
    assert checker.main(["check-structure", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"check-structure: 1 violation(s) in {src}:\n  size: src/methodhub/long.py")
