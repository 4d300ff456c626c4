"""A throwaway PostgreSQL server for the tests and the soak (``benchmarks/soak.py``): a cluster on a Unix socket in a
folder of its own, run as the ``postgres`` user when we are root (PostgreSQL refuses root), that the caller can stop
and start again as a maintenance restart or a crash would.

    with throwaway_postgres() as server:
        run(..., storage=server.url)
        server.stop()      # at once, as a crash: every connection drops
        server.start()

Where PostgreSQL cannot run (no server programs, no driver, root without runuser), :class:`NoPostgres` says why;
the tests skip with that message."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class NoPostgres(Exception):
    """PostgreSQL cannot run here; the message says why and what would fix it."""


class Postgres:
    """One cluster, made by :func:`throwaway_postgres`."""

    def __init__(self, bin_dir: Path, *, max_connections: int = 100) -> None:
        self.bin_dir, self.max_connections = bin_dir, max_connections
        # Not under pytest's own folder: under root that is closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="opsearch-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                shutil.rmtree(self.root, ignore_errors=True)
                raise NoPostgres("running as root without runuser: cannot start PostgreSQL as another user")
            self.run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@/opsearch?host={self.sock}&port={self.port}"  # as the README writes it

    def pg(self, program: str, *args: str) -> None:
        subprocess.run([*self.run_as, str(self.bin_dir / program), *args], check=True, capture_output=True, text=True)

    def start(self) -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
                f"-k {self.sock} -p {self.port} -c listen_addresses='' -c max_connections={self.max_connections}",
                "start")

    def stop(self, mode: str = "immediate", *, check: bool = False) -> None:
        """``immediate`` (the default) drops every connection at once, as a crash or a lost network would;
        ``fast`` is a maintenance shutdown."""
        subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       capture_output=True, check=check)


@contextlib.contextmanager
def throwaway_postgres(*, max_connections: int = 100) -> Iterator[Postgres]:
    """A running cluster with an empty database ``opsearch``, removed on leaving."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise NoPostgres("PostgreSQL server programs not found (/usr/lib/postgresql/*/bin/initdb): "
                         "apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise NoPostgres("psycopg is missing: pip install 'opsearch[postgres]'") from None
    server = Postgres(Path(found[-1]).parent, max_connections=max_connections)
    try:
        try:
            server.pg("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            server.start()
            server.pg("createdb", "-h", str(server.sock), "-p", str(server.port), "-U", "postgres", "opsearch")
        except subprocess.CalledProcessError as exc:
            raise NoPostgres(f"PostgreSQL could not start here: {exc.stderr.strip()[-300:]}") from None
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
