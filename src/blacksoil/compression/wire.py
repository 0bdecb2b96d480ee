"""Counting the bytes that gradient averaging puts on the wire: per collective call, and from the kernel.

`CollectiveMeter` wraps torch.distributed's collectives (every DDP hook, torch's own included, calls them);
`loopback_bytes` reads the kernel's counters of the `lo` interface for a cross-check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class WireCount:
    """Bytes one rank handed to collectives, and what a ring algorithm sends for them."""

    #: Payload: the allreduced tensor's bytes; for allgather, ALL gathered bytes (own chunk included).
    payload: int = 0
    #: What this rank sends with ring algorithms: 2(p-1)/p * N for allreduce, (p-1) * chunk for allgather.
    ring_sent: float = 0.0
    calls: int = 0


def allgather_into(output: torch.Tensor, input: torch.Tensor, group: dist.ProcessGroup) -> Any:
    """Async allgather of equal chunks into one tensor (torch >= 2.12 names it all_gather_single)."""
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return fn(output, input, group=group, async_op=True)


def _gather_name() -> str:
    return "all_gather_single" if hasattr(dist, "all_gather_single") else "all_gather_into_tensor"


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@contextmanager
def collective_meter(count: WireCount) -> Iterator[WireCount]:
    """Within the block, every dist.all_reduce / allgather-into-tensor adds its bytes to `count`."""
    gather_name = _gather_name()
    orig_ar: Callable[..., Any] = dist.all_reduce
    orig_ag: Callable[..., Any] = getattr(dist, gather_name)

    def all_reduce(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        p = dist.get_world_size(kwargs.get("group"))
        count.payload += _nbytes(tensor)
        count.ring_sent += 2.0 * (p - 1) / p * _nbytes(tensor)
        count.calls += 1
        return orig_ar(tensor, *args, **kwargs)

    def all_gather_single(output: torch.Tensor, input: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        p = dist.get_world_size(kwargs.get("group"))
        count.payload += _nbytes(output)
        count.ring_sent += (p - 1) * _nbytes(input)
        count.calls += 1
        return orig_ag(output, input, *args, **kwargs)

    dist.all_reduce = all_reduce
    setattr(dist, gather_name, all_gather_single)
    try:
        yield count
    finally:
        dist.all_reduce = orig_ar
        setattr(dist, gather_name, orig_ag)


def loopback_bytes() -> int | None:
    """Bytes transmitted on `lo` so far, from /proc/net/dev (None where the file or interface is missing).

    On loopback every byte sent is also received, so tx alone is the traffic of all local processes.
    """
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    return int(rest.split()[8])
    except (OSError, ValueError, IndexError):
        return None
    return None
