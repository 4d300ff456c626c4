"""The `opsearch` command: a thin layer that parses flags and calls the library."""

from __future__ import annotations

from opsearch.cli._main import config_from_args, main

__all__ = [
    "config_from_args",
    "main",
]
