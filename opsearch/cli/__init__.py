"""The `opsearch` command: a thin layer that parses flags and calls the library."""

from __future__ import annotations

from opsearch.cli._main import main
from opsearch.cli._run import config_from_args

__all__ = [
    "config_from_args",
    "main",
]
