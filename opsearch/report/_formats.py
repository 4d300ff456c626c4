"""The report's formats, named once. ``opsearch report --format`` offers these names without loading a renderer
(this module imports nothing); :data:`opsearch.report.RENDERERS` maps each to the function that renders it."""

from __future__ import annotations

FORMATS = ("text", "markdown", "csv", "json", "html")
