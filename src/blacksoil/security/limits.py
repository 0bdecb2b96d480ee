"""Resource limits of one sandboxed call: rlimits per process, cgroups for the whole process tree, a fresh uid.

Applied in the child between fork and exec of bubblewrap (`preexec`), so every process of the call inherits them.

What this protects, and what it does not (attacks in blacksoil.security.redteam, run by
tests/security/test_sandbox_attacks.py):
- Protects: CPU spinning (RLIMIT_CPU kills it) — attack `cpu_spin`; the wall-clock limit in the sandbox kills a
  sleeper — attack `sleep_forever`.
- Protects: memory bombs, one process (RLIMIT_AS) — `memory_bomb`; many processes (memory cgroup, where the
  machine lets us create one) — `memory_bomb_forked`.
- Protects: fork bombs (RLIMIT_NPROC counted for a uid no other process uses, and the pids cgroup) —
  `fork_bomb`.
- Protects: huge files (RLIMIT_FSIZE) — `disk_fill_one_file`; fd exhaustion (RLIMIT_NOFILE) — `fd_exhaustion`.
- Protects: when blacksoil runs as root, the call runs as an unused uid (>= 100000) outside the sandbox too, so a
  namespace escape lands as nobody in particular — `setuid_binary`, `write_outside_workspace`.
- Does not protect: when blacksoil runs as an ordinary user, RLIMIT_NPROC counts all of that user's processes
  (the limit is raised by the current count) and no cgroup can be created; rlimits per process still hold.
- Does not protect: disk bandwidth or page cache use (no I/O cgroup).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_UID_BASE, _UID_SPAN = 100_000, 800_000
_V1 = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """The limits of one call, in plain units."""

    cpu_s: int
    memory_mb: int
    max_pids: int
    file_mb: int
    open_files: int


def sandbox_uid(workspace: Path) -> int | None:
    """A uid no one else uses, stable per workspace (its files keep one owner); None when we are not root."""
    if os.geteuid() != 0:
        return None
    digest = hashlib.sha256(str(workspace.resolve()).encode()).digest()
    return _UID_BASE + int.from_bytes(digest[:4], "big") % _UID_SPAN


class CgroupLimiter:
    """A pids + memory cgroup (v1 or v2) for one call's process tree, when this machine lets us create it."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.dirs: list[Path] = []
        if os.geteuid() != 0:
            return
        mem = limits.memory_mb * 2**20 * 2  # the tree may use twice one process's address-space limit
        v1 = [(_V1 / "pids", {"pids.max": str(limits.max_pids)}),
              (_V1 / "memory", {"memory.limit_in_bytes": str(mem), "memory.swappiness": "0"})]
        v2 = _V1 / "cgroup.controllers"
        if all(os.access(root, os.W_OK) for root, _ in v1):
            for root, files in v1:
                self._make(root / "blacksoil" / name, files, parent=root / "blacksoil")
        elif v2.is_file() and {"pids", "memory"} <= set(v2.read_text().split()) and os.access(_V1, os.W_OK):
            parent = _V1 / "blacksoil"
            self._make(parent, {}, parent=None)
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+pids +memory")
            self._make(parent / name, {"pids.max": str(limits.max_pids), "memory.max": str(mem),
                                       "memory.swap.max": "0"}, parent=None)

    def _make(self, path: Path, files: dict[str, str], parent: Path | None) -> None:
        try:
            if parent is not None:
                parent.mkdir(exist_ok=True)
            path.mkdir(exist_ok=True)
            for f, v in files.items():
                with contextlib.suppress(FileNotFoundError):  # memory.swap.* only exists with swap accounting
                    (path / f).write_text(v)
            self.dirs.append(path)
        except OSError:
            self.close()

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs if d.name != "blacksoil"]

    def close(self) -> None:
        """Remove the cgroups (their processes are dead by now; retry briefly while the kernel reaps them)."""
        for d in reversed(self.dirs):
            if d.name == "blacksoil":
                continue
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
        self.dirs = []


def preexec(limits: Limits, uid: int | None, cgroup_procs: list[str]) -> Callable[[], None]:
    """The function run in the child before exec: join the cgroups, set the rlimits, drop to the sandbox uid."""
    mb = 2**20
    nproc = limits.max_pids if uid is not None else limits.max_pids + _own_process_count()

    def apply() -> None:
        pid = str(os.getpid()).encode()
        for f in cgroup_procs:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


def _own_process_count() -> int:
    uid = os.getuid()
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    n += 1
    return n
