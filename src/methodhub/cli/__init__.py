"""The ``methodhub`` command."""

from methodhub.cli.app import main

__all__ = ["main"]
