"""A seccomp-BPF filter for the sandbox, assembled by hand (no libseccomp needed), loaded by bubblewrap.

It refuses the system calls a sandboxed tool never needs and kernels have been attacked through.

What this protects, and what it does not (attack tests in blacksoil.security.redteam, run by
tests/security/test_sandbox_attacks.py):
- Protects: ptrace and process_vm_readv/writev (reading or steering another process) — attacks `ptrace_*`.
- Protects: new namespaces (unshare, setns, clone with CLONE_NEW* flags; clone3 answers ENOSYS so libc falls back
  to clone, whose flags are checked) — attacks `unshare_user`, `clone_newns`.
- Protects: mount, pivot_root, chroot, kernel modules, kexec, keyrings, bpf, perf_event_open, userfaultfd,
  io_uring, open_by_handle_at (the "shocker" escape) — attacks `mount_proc`, `open_by_handle`, `bpf`, ...
- Protects: the x32 ABI and foreign architectures (a 32-bit syscall table would bypass the numbers below) —
  attack `foreign_abi_syscall`.
- Does not protect: on machines that are not x86_64 (the filter is skipped there and the result says so); the
  namespaces, dropped capabilities and no_new_privs still apply.
- Does not protect: against kernel bugs reachable through the allowed calls (read, write, mmap, ...).
"""

from __future__ import annotations

import os
import platform
import struct

# seccomp_data offsets and BPF opcodes (linux/filter.h, linux/seccomp.h).
_NR, _ARCH, _ARG0 = 0, 4, 16
_LD_W_ABS = 0x20
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_RET_K = 0x06
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_CLONE_NS_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

# x86_64 system call numbers refused with EPERM.
DENIED_X86_64: dict[str, int] = {
    "ptrace": 101, "syslog": 103, "personality": 135, "pivot_root": 155, "adjtimex": 159, "chroot": 161,
    "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442,
}
_CLONE, _CLONE3 = 56, 435


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    assert 0 <= jt < 256 and 0 <= jf < 256, "BPF jump offsets are one byte"
    return struct.pack("=HBBI", code, jt, jf, k)


def supported() -> bool:
    """True where the filter below matches the machine's system call table."""
    return platform.machine() in ("x86_64", "AMD64")


def build_filter() -> bytes:
    """The BPF program: kill foreign-arch calls, refuse the denied list and namespace-creating clones."""
    denied = sorted(DENIED_X86_64.values())
    prog = [
        _stmt(_LD_W_ABS, _ARCH),
        _jump(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        _stmt(_RET_K, _RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, _NR),
        _jump(_JGE_K, _X32_BIT, 0, 1),
        _stmt(_RET_K, _RET_KILL_PROCESS),
    ]
    # Then: the deny checks, A: clone3?, B: clone?, C: allow, D: load flags, E: namespace flags?, F: EPERM,
    # G: allow, H: ENOSYS. A jump offset counts the instructions skipped after the jumping one.
    n = len(denied)
    for i, nr in enumerate(denied):
        prog.append(_jump(_JEQ_K, nr, (n - i - 1) + 5, 0))  # skip the other denies and A..E -> F
    prog += [
        _jump(_JEQ_K, _CLONE3, 6, 0),          # skip B..G -> H (ENOSYS)
        _jump(_JEQ_K, _CLONE, 1, 0),           # -> clone flag check
        _stmt(_RET_K, _RET_ALLOW),
        _stmt(_LD_W_ABS, _ARG0),
        _jump(_JSET_K, _CLONE_NS_FLAGS, 0, 1),  # namespace flag set -> EPERM, else allow
        _stmt(_RET_K, _RET_ERRNO | _EPERM),
        _stmt(_RET_K, _RET_ALLOW),
        _stmt(_RET_K, _RET_ERRNO | _ENOSYS),
    ]
    return b"".join(prog)


def filter_fd() -> int:
    """A file descriptor holding the compiled filter, positioned at 0, ready for `bwrap --seccomp FD`."""
    fd = os.memfd_create("blacksoil-seccomp", 0)
    os.write(fd, build_filter())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
