"""The one distributed launcher: a free port, the rendezvous address, and a process group that is torn down."""

from __future__ import annotations

import socket

import pytest

from blacksoil.distributed import Rendezvous, free_port, process_group


def test_free_port_can_be_bound() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_rendezvous_names_its_tcp_address() -> None:
    assert Rendezvous(29500, 2).init_method == "tcp://127.0.0.1:29500"


def test_local_rendezvous_takes_a_free_port() -> None:
    assert Rendezvous.local(2).port > 0


def test_process_group_is_up_inside_and_gone_after() -> None:
    import torch.distributed as dist

    with process_group(Rendezvous.local(1), rank=0):
        assert dist.is_initialized()
    assert not dist.is_initialized()


def test_process_group_is_torn_down_after_an_error() -> None:
    import torch.distributed as dist

    with pytest.raises(RuntimeError, match="boom"), process_group(Rendezvous.local(1), rank=0):
        raise RuntimeError("boom")
    assert not dist.is_initialized()
