"""Fail fast, with a useful message, when a hub id is given on a machine without the hub."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from opsearch.errors import HubUnreachableError

_PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def ensure_hub_reachable(*, what: str, kind: str) -> None:
    """Raise HubUnreachableError unless the hub answers a TCP connection within a few seconds.

    transformers and datasets retry for tens of seconds before giving up on an unreachable hub;
    one short probe turns that into an immediate, actionable error.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    endpoint = hub_endpoint()
    if not offline:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname or "", port), timeout=_PROBE_TIMEOUT_S):
                return
        except OSError as exc:
            reason = f"{endpoint} did not answer ({exc})"
    else:
        reason = "HF_HUB_OFFLINE is set"
    raise HubUnreachableError(
        f"{kind} {what!r} is not a local path, so it was taken as a Hugging Face Hub id, "
        f"but the hub cannot be reached: {reason}. "
        f"Pass a local {'folder' if kind == 'model' else 'file'} instead "
        f"(e.g. a checkpoint folder saved with save_pretrained, or a CSV/TSV/JSON/Parquet file)."
    )
