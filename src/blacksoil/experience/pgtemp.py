"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and `blacksoil bench replay`.

Uses the installed server binaries (Debian's `postgresql` package) and never installs them: a missing server is
a clear error naming the package. Runs as the `postgres` user under root (initdb refuses root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from blacksoil.distributed import free_port
from blacksoil.errors import ConfigError, RetryableError


def find_bin_dir() -> Path | None:
    """Newest /usr/lib/postgresql/<ver>/bin that has initdb, or the directory of initdb on PATH."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
                          key=lambda p: int(p.name) if p.name.isdigit() else 0)
        if versions:
            return versions[-1] / "bin"
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


class TempPostgres:
    """Start with `start()`, connect with `url`, stop and delete with `stop()`."""

    def __init__(self, db: str = "blacksoil") -> None:
        self.db = db
        self.port = 0
        self.dir: Path | None = None
        self.bin: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.db}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RetryableError(f"{args[0]} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
        return res

    def start(self) -> TempPostgres:
        self.bin = find_bin_dir()
        if self.bin is None:
            raise ConfigError("the PostgreSQL server (initdb) is not installed: run `sudo apt-get install -y "
                              "postgresql`, or point at a running server with --pg-url")
        self.dir = Path(tempfile.mkdtemp(prefix="blacksoil-pg-"))
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data, sock = self.dir / "data", self.dir
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.port = free_port()
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=50"
        self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.db)
                break
            except RetryableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return self

    def new_database(self, name: str) -> str:
        """Create an empty database `name` on this cluster; returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"database name {name!r} must be letters, digits and underscores")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
