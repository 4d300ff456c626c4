"""Writing a folder whole or not at all (a half-written export, fused graph or quantized model is never reused),
and saying so plainly when the disk is full."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opsearch.errors import DiskFull


@contextmanager
def atomic_folder(target: Path, *, prefix: str, needs_bytes: int | None = None) -> Iterator[Path]:
    """A new temporary folder beside ``target`` to fill; when the block ends without an error it replaces
    ``target`` in one rename, and otherwise it is removed and ``target`` is left as it was. A write that finds the
    disk full raises :class:`DiskFull`, naming ``target`` and ``needs_bytes`` (about what the folder takes)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as exc:
        raise disk_full_error(exc, where=target, needed_bytes=needs_bytes) or exc from exc
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except Exception as exc:
        full = disk_full_error(exc, where=target, needed_bytes=needs_bytes)
        if full is not None:
            raise full from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` under a temporary name beside it and rename it into place: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        full = disk_full_error(exc, where=path, needed_bytes=len(text.encode()))
        if full is not None:
            raise full from exc
        raise


def disk_full_error(exc: BaseException, *, where: Path, needed_bytes: int | None) -> DiskFull | None:
    """A :class:`DiskFull` for an exception that is (or was caused by) ENOSPC or EDQUOT, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            break
        if "No space left on device" in str(cause) or "disk is full" in str(cause):  # native code's own errors
            break
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    return DiskFull(describe_disk_full(where, needed_bytes))


def describe_disk_full(where: Path, needed_bytes: int | None) -> str:
    where = Path(where)
    probe = next((p for p in (where, *where.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free
    need = f"; it needs about {needed_bytes / 2**20:.1f} MB" if needed_bytes else ""
    return (f"no space left on the disk that holds {str(where)!r} ({free / 2**20:.1f} MB free{need}). Free some "
            "space, or move the study elsewhere with --storage")
