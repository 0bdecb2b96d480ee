"""Settings of the security pillar: policy files, sandbox limits, the audit and approval store.

One frozen model, grouped under the root settings object (blacksoil.config.Settings.security).
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from blacksoil.configbase import ComponentConfig

__all__ = ["SecurityConfig"]


class SecurityConfig(ComponentConfig):
    """Policies, sandbox limits, approvals and audit."""

    policy_files: tuple[str, ...] = ()
    """Extra Cedar policy files (paths) loaded after the shipped default policies; empty = shipped ones only."""
    store_file: str = "security/audit.sqlite"
    """Audit log and approval store path relative to settings().home (file name)."""
    bwrap_path: str = "bwrap"
    """The bubblewrap executable (name on PATH or absolute path); `apt-get install bubblewrap` provides it."""
    sandbox_cpu_s: PositiveInt = 10
    """CPU time limit of one sandboxed call (seconds of CPU, RLIMIT_CPU)."""
    sandbox_memory_mb: PositiveInt = 1024
    """Address-space limit of one sandboxed call (MiB, RLIMIT_AS)."""
    sandbox_max_pids: PositiveInt = 64
    """Process/thread limit of the sandbox user (count, RLIMIT_NPROC inside its own user namespace)."""
    sandbox_file_mb: PositiveInt = 64
    """Largest file the sandbox may write (MiB, RLIMIT_FSIZE)."""
    sandbox_open_files: PositiveInt = 256
    """Open file descriptor limit (count, RLIMIT_NOFILE)."""
    sandbox_wall_s: PositiveFloat = 30.0
    """Wall-clock limit of one sandboxed call (seconds); the whole process tree is killed after it."""
    sandbox_output_kb: PositiveInt = 256
    """Stdout/stderr kept per sandboxed call (KiB each); the rest is cut and flagged."""

