"""The one local launcher for torch.distributed process groups: a free port, the rendezvous, spawning the
ranks, a barrier before teardown, and the teardown itself.

The learner's DDP (learning/ddp.py) and the compression benchmark (compression/runner.py) both run gloo groups of
local processes. They used to carry their own copies of this, and a teardown fix (every rank meets at a barrier
before any destroys the group) had to be made in one of them; here it is made once. Layer 0: torch is imported
only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from blacksoil.errors import InternalError

__all__ = ["Rendezvous", "free_port", "process_group", "spawn"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nobody listened on a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of one group meet (picklable: it travels to every spawned rank)."""

    port: int
    world_size: int
    host: str = "127.0.0.1"
    backend: str = "gloo"
    """gloo on CPU; nccl for GPUs."""

    @classmethod
    def local(cls, world_size: int, backend: str = "gloo") -> Rendezvous:
        """A rendezvous on a free port of this machine."""
        return cls(free_port(), world_size, backend=backend)

    @property
    def init_method(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@contextmanager
def process_group(rdv: Rendezvous, rank: int) -> Iterator[None]:
    """This process as rank `rank` of the group, for the duration of the block.

    On a clean exit every rank meets at a barrier before the group is destroyed: a peer that tears gloo down while
    another is still in a collective aborts that process ("terminate called without an active exception", seen
    under load). On an error the barrier is skipped (the peers fail on their next collective) and the group is
    destroyed all the same.
    """
    import torch.distributed as dist

    dist.init_process_group(rdv.backend, init_method=rdv.init_method, rank=rank, world_size=rdv.world_size)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., None], rdv: Rendezvous, args: tuple[Any, ...] = (), *, label: str = "distributed") -> None:
    """Run `fn(rank, rdv, *args)` in `rdv.world_size` fresh processes and wait for all of them.

    A rank that raises becomes one InternalError ("a <label> rank failed: <its last error line>"; the traceback
    is on stderr).
    """
    import torch.multiprocessing as mp

    try:
        mp.spawn(fn, args=(rdv, *args), nprocs=rdv.world_size, join=True)
    except mp.ProcessRaisedException as e:
        raise InternalError(f"a {label} rank failed: {str(e).strip().splitlines()[-1]}") from None
